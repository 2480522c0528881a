"""Price formatting for API responses: exactly 4 decimal places, DECIMAL or FLOAT alike.

The requirements keep the API contract through the DECIMAL(12,4) -> FLOAT conversion:
"API responses maintain 4-decimal precision despite FLOAT storage". Every decimal(12,4)
value has at most 12 significant digits and a double carries 15, so a float read from the
database converts back through its shortest ``repr`` to the very decimal it came from, and
both print the same 4-place string (proven for the whole decimal(12,4) range by
tests/marketdata/test_marketdata_prices.py).

Rounding, for values that are not already on the 4-place grid (prices computed in Python,
such as 0.1 + 0.2): the float's shortest repr is rounded half away from zero, as PostgreSQL
rounds when it casts to numeric(12,4). Zero is always ``"0.0000"``, never ``"-0.0000"``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, overload

PLACES = 4
_QUANTUM = Decimal(1).scaleb(-PLACES)

PriceValue = Decimal | float | int


def to_price_decimal(value: PriceValue) -> Decimal:
    """``value`` as a Decimal with exactly 4 places (see the module's rounding rule)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | float | int):
        raise TypeError(f"a price must be a Decimal, float or int, not {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"price {value!r} is not finite")
        number = Decimal(repr(value))
    else:
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError(f"price {value!r} is not finite")
    # Enough precision for every digit left of the point plus the 4 after it.
    context = Context(prec=max(28, number.adjusted() + PLACES + 2))
    rounded = number.quantize(_QUANTUM, rounding=ROUND_HALF_UP, context=context)
    return rounded.copy_abs() if rounded.is_zero() else rounded


@overload
def format_price(value: None) -> None: ...
@overload
def format_price(value: PriceValue) -> str: ...
def format_price(value: PriceValue | None) -> str | None:
    """The API form of a price: a string with exactly 4 decimal places (None stays None)."""
    if value is None:
        return None
    return format(to_price_decimal(value), "f")


def serialise(row: Mapping[Any, Any], prices: Collection[str] = ()) -> dict[str, Any]:
    """One response object: the ``prices`` fields formatted by :func:`format_price`,
    datetimes as ISO 8601 in UTC, every other value as it is."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in prices:
            out[key] = format_price(value)
        elif isinstance(value, datetime):
            out[key] = value.astimezone(UTC).isoformat()
        else:
            out[key] = value
    return out


# The price fields of each model's responses (alert_rules.threshold is decimal(12,4)).
PRICE_FIELDS: dict[str, frozenset[str]] = {
    "market_data": frozenset({"price", "bid", "ask", "open_price", "high_price", "low_price"}),
    "alert_logs": frozenset({"trigger_value", "threshold_value"}),
    "alert_rules": frozenset({"threshold"}),
}


def to_response(obj: Any) -> dict[str, Any]:
    """The response form of a model object: its column attributes, serialised."""
    from sqlalchemy import inspect

    mapper = inspect(obj).mapper
    table = mapper.local_table.name
    row = {attr.key: getattr(obj, attr.key) for attr in mapper.column_attrs}
    return serialise(row, PRICE_FIELDS.get(table, frozenset()))
