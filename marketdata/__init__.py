"""The market-data application's data layer: declarative base, mixins, models, async sessions.

Importing the package installs two session-wide ORM hooks: soft-deleted rows are left out of
ORM queries (:mod:`marketdata.softdelete`) and deleting a parent that still has children
raises :class:`ParentHasChildren` (:mod:`marketdata.integrity`).
"""

from marketdata import integrity, softdelete
from marketdata.base import NAMING_CONVENTION, Base
from marketdata.db import create_app_engine, get_db_session
from marketdata.errors import MarketDataError, ParentHasChildren
from marketdata.mixins import SoftDeleteMixin, TimestampMixin
from marketdata.models import AlertLog, AlertRule, Instrument, MarketData
from marketdata.prices import format_price
from marketdata.softdelete import INCLUDE_DELETED, IncludeDeleted
from marketdata.types import FourPlaceDecimal, Price, UTCDateTime

__all__ = [
    "INCLUDE_DELETED",
    "NAMING_CONVENTION",
    "AlertLog",
    "AlertRule",
    "Base",
    "FourPlaceDecimal",
    "IncludeDeleted",
    "Instrument",
    "MarketData",
    "MarketDataError",
    "ParentHasChildren",
    "Price",
    "SoftDeleteMixin",
    "TimestampMixin",
    "UTCDateTime",
    "create_app_engine",
    "format_price",
    "get_db_session",
    "integrity",
    "softdelete",
]
