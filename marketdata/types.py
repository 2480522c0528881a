"""Column types shared by the models."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Double, Float, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine


def sqlite_timestamp_text(value: datetime) -> str:
    """An aware UTC datetime as SQLAlchemy stores a ``DateTime`` on SQLite.

    ``YYYY-MM-DD HH:MM:SS.ffffff``, always with microseconds: the text of
    ``sqlite.DATETIME``'s default storage format, built by the C ``isoformat`` (the stock
    processor fills a dict and a %-format per value, about 5x slower).
    """
    return value.isoformat(" ", "microseconds")[:26]


def _naive_error(value: datetime) -> ValueError:
    return ValueError(f"naive datetime {value!r}: give a timezone-aware value")


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
            raise _naive_error(value)
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, one function from the aware value to the stored text.

        The same text as :meth:`process_bind_param` followed by ``sqlite.DATETIME``'s own
        processor (a test compares them), in one call instead of three: every row of an
        INSERT binds three timestamps, and this was the largest part of SQLAlchemy's
        per-row work on SQLite (``docs/performance.md``).
        """
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None or value.utcoffset() is None:
                raise _naive_error(value)
            return sqlite_timestamp_text(value.astimezone(UTC))

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # Only SQLite returns naive values, and they were stored as UTC.
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# decimal(12,4) held at most 8 integer digits; the FLOAT columns keep that domain with CHECK
# constraints (-10^8 < value < 10^8, which NaN and both infinities fail).
PRICE_LIMIT = 100_000_000
_FOUR_PLACES = Decimal("0.0001")


class Price(TypeDecorator[float]):
    """A price: ``DOUBLE PRECISION`` on PostgreSQL, ``FLOAT`` on SQLite (REAL affinity).

    Values are checked before they are sent: finite and inside ``ck_<table>_<column>_range``
    (-10^8 < value < 10^8). The database enforces the same CHECK; checking here as well gives
    the same clear error on both dialects, where SQLite would otherwise store NaN as NULL.
    """

    impl = Double()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # The plain type, not dialect.type_descriptor(): DDL compiles what this returns, and
        # PostgreSQL's driver-level adaptation of Double would print as FLOAT.
        return Float() if dialect.name == "sqlite" else Double()

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        return _checked_price(value)

    def bind_processor(self, dialect: Dialect) -> Any:
        """The check alone, as one function: it already returns the ``float`` the impl's
        processor would make (SQLite's ``to_float``; none on PostgreSQL), so the
        TypeDecorator's wrapper around the two is skipped (six prices per tick)."""
        return _checked_price


def _checked_price(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number) or not -PRICE_LIMIT < number < PRICE_LIMIT:
        raise ValueError(
            f"price {value!r} out of range: must be finite and strictly between "
            f"-{PRICE_LIMIT} and {PRICE_LIMIT}"
        )
    return number

    def process_result_value(self, value: Any, dialect: Dialect) -> float | None:
        return None if value is None else float(value)


class FourPlaceDecimal(TypeDecorator[Decimal]):
    """``NUMERIC(12,4)`` that hands back ``Decimal`` values with exactly 4 places.

    PostgreSQL has a native decimal. SQLite stores NUMERIC values as integers or doubles,
    and SQLAlchemy's ``Numeric`` warns about that on every read (an error under this
    project's warning filter). Here SQLite reads the stored number without the warning and
    converts it through its shortest repr, which is exact for the 12 significant digits a
    decimal(12,4) holds. Values are checked on the way in: finite, at most 8 integer digits,
    rounded to 4 places (half away from zero, as PostgreSQL rounds a numeric cast).
    """

    impl = Numeric(12, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return Numeric(12, 4, asdecimal=False)  # read as stored; converted below
        return Numeric(12, 4)

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        number = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
        if not number.is_finite():
            raise ValueError(f"decimal(12,4) value {value!r} is not finite")
        number = number.quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)
        if abs(number) >= PRICE_LIMIT:
            raise ValueError(f"decimal(12,4) value {value!r} has more than 8 integer digits")
        # SQLite gets the nearest double (exact for 12 significant digits once read back
        # through its repr).
        return number

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, float):
            value = repr(value)
        return Decimal(value).quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)
