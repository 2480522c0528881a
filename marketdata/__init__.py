"""The market-data application's data layer: declarative base, mixins, models, async sessions.

Importing the package installs two session-wide ORM hooks: soft-deleted rows are left out of
ORM queries (:mod:`marketdata.softdelete`) and deleting a parent that still has children
raises :class:`ParentHasChildren` (:mod:`marketdata.integrity`).

The analytics read path (:mod:`marketdata.analytics`: ``fetch_price_columns`` and the numpy
calculations) is loaded on first use, so numpy is needed only by code that uses it.
"""

import importlib
from typing import TYPE_CHECKING, Any

from marketdata import integrity, softdelete
from marketdata.base import NAMING_CONVENTION, Base
from marketdata.db import create_app_engine, get_db_session
from marketdata.errors import MarketDataError, ParentHasChildren
from marketdata.ingest import (
    IngestRefused,
    IngestResult,
    InvalidRows,
    insert_alerts,
    insert_alerts_sync,
    insert_ticks,
    insert_ticks_sync,
)
from marketdata.mixins import SoftDeleteMixin, TimestampMixin
from marketdata.models import AlertLog, AlertRule, Instrument, MarketData
from marketdata.prices import format_price
from marketdata.softdelete import INCLUDE_DELETED, IncludeDeleted
from marketdata.types import FourPlaceDecimal, Price, UTCDateTime

if TYPE_CHECKING:
    from marketdata import analytics
    from marketdata.analytics import UnsupportedSchema, fetch_price_columns

__all__ = [
    "INCLUDE_DELETED",
    "NAMING_CONVENTION",
    "AlertLog",
    "AlertRule",
    "Base",
    "FourPlaceDecimal",
    "IncludeDeleted",
    "IngestRefused",
    "IngestResult",
    "Instrument",
    "InvalidRows",
    "MarketData",
    "MarketDataError",
    "ParentHasChildren",
    "Price",
    "SoftDeleteMixin",
    "TimestampMixin",
    "UTCDateTime",
    "UnsupportedSchema",
    "analytics",
    "create_app_engine",
    "fetch_price_columns",
    "format_price",
    "get_db_session",
    "insert_alerts",
    "insert_alerts_sync",
    "insert_ticks",
    "insert_ticks_sync",
    "integrity",
    "softdelete",
]

_ANALYTICS = frozenset({"UnsupportedSchema", "analytics", "fetch_price_columns"})


def __getattr__(name: str) -> Any:
    if name in _ANALYTICS:  # imports marketdata.analytics, and numpy, on first use
        module = importlib.import_module("marketdata.analytics")
        return module if name == "analytics" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
