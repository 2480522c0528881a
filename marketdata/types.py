"""Column types shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes.

    SQLite has no time-zone type: SQLAlchemy stores the wall-clock time and drops the offset,
    and reads back naive values. Normalising to UTC on the way in and tagging UTC on the way
    out gives the same instants and the same aware values on SQLite and PostgreSQL. Naive
    values are refused because their meaning differs by driver (asyncpg reads them as local
    time, SQLite stores them verbatim).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # Only SQLite returns naive values, and they were stored as UTC.
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
