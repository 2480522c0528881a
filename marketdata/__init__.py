"""The market-data application's data layer: declarative base, mixins and async sessions."""

from marketdata.base import NAMING_CONVENTION, Base
from marketdata.db import create_app_engine, get_db_session
from marketdata.mixins import TimestampMixin
from marketdata.types import UTCDateTime

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "TimestampMixin",
    "UTCDateTime",
    "create_app_engine",
    "get_db_session",
]
