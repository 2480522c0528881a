"""The response serialiser prints a DECIMAL(12,4) value and its FLOAT conversion alike.

The API contract of the requirements: "API responses maintain 4-decimal precision despite
FLOAT storage". Proven here over the whole decimal(12,4) range: every n/10^4 with
|n| <= 999999999999.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketdata import AlertRule, MarketData, format_price
from marketdata.prices import serialise, to_price_decimal, to_response

LIMIT = 999_999_999_999  # the largest unscaled decimal(12,4) value


def _decimal(n: int) -> Decimal:
    return Decimal(n).scaleb(-4)


def _expected(n: int) -> str:
    """n/10^4 written out by integer arithmetic alone (no Decimal, no float)."""
    sign = "-" if n < 0 else ""
    whole, frac = divmod(abs(n), 10_000)
    return f"{sign}{whole}.{frac:04d}"


@settings(max_examples=3000, deadline=None)
@given(st.integers(min_value=-LIMIT, max_value=LIMIT))
@example(LIMIT)
@example(-LIMIT)
@example(1)
@example(-1)
@example(5)  # 0.0005
@example(10_005)  # 1.0005
@example(123_456_789_012)  # 12345678.9012
@example(999_999_999_995)
def test_decimal_and_its_float_conversion_format_the_same(n: int) -> None:
    value = _decimal(n)
    as_float = float(value)
    assert format_price(value) == format_price(as_float) == _expected(n)
    # The float is also what the database hands back at head; a 4-place decimal survives it.
    assert to_price_decimal(as_float) == value


def test_every_value_near_zero_and_near_the_limits() -> None:
    # Exhaustive where it is cheap: the largest magnitudes are where a double has the least
    # room to spare (ulp(10^8) is about 1.5e-8, against a rounding margin of 5e-5).
    for start, stop in ((-LIMIT, -LIMIT + 40_000), (-20_000, 20_000), (LIMIT - 40_000, LIMIT)):
        for n in range(start, stop + 1):
            value = _decimal(n)
            assert format_price(value) == format_price(float(value)) == _expected(n)


def test_zero_is_never_negative() -> None:
    assert _expected(0) == "0.0000"
    for zero in (Decimal("0"), Decimal("-0.0000"), Decimal("0E-4"), 0.0, -0.0, 0, -0.00001):
        assert format_price(zero) == "0.0000"


def test_exactly_four_places_for_every_input_kind() -> None:
    assert format_price(Decimal("1")) == "1.0000"
    assert format_price(Decimal("1.5")) == "1.5000"
    assert format_price(12) == "12.0000"  # SQLite hands integral NUMERIC values back as int
    assert format_price(1e-4) == "0.0001"
    assert format_price(99999999.9999) == "99999999.9999"
    assert format_price(-99999999.9999) == "-99999999.9999"
    assert format_price(None) is None


def test_values_off_the_grid_round_half_away_from_zero() -> None:
    # Prices computed in floating point: the float's shortest repr is rounded.
    assert format_price(0.1 + 0.2) == "0.3000"
    assert format_price(1.00005) == "1.0001"
    assert format_price(-1.00005) == "-1.0001"
    assert format_price(Decimal("2.00004999")) == "2.0000"
    assert format_price(1e17) == "100000000000000000.0000"
    assert format_price(Decimal("1E+40")) == "1" + "0" * 40 + ".0000"


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("Infinity")]
)
def test_non_finite_values_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="not finite"):
        format_price(bad)  # type: ignore[call-overload]


@pytest.mark.parametrize("bad", [True, "1.0", [1]])
def test_other_types_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        format_price(bad)  # type: ignore[call-overload]


def test_serialise_formats_prices_and_datetimes_only() -> None:
    when = datetime(2026, 1, 5, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    row = {"id": 7, "price": Decimal("1.5"), "bid": None, "ts": when, "note": "x"}
    assert serialise(row, {"price", "bid"}) == {
        "id": 7,
        "price": "1.5000",
        "bid": None,
        "ts": "2026-01-05T09:30:00+00:00",
        "note": "x",
    }


def test_model_responses_use_the_serialiser() -> None:
    tick = MarketData(
        id=1,
        instrument_id=2,
        timestamp=datetime(2026, 1, 5, tzinfo=UTC),
        price=float(Decimal("12345678.9012")),
        bid=0.1 + 0.2,
        volume=5,
    )
    response = to_response(tick)
    assert response["price"] == "12345678.9012"
    assert response["bid"] == "0.3000"
    assert response["ask"] is None
    assert response["timestamp"] == "2026-01-05T00:00:00+00:00"
    assert response["volume"] == 5
    rule = AlertRule(id=1, instrument_id=2, name="r", condition="price_above")
    rule.threshold = Decimal("7.5")
    assert to_response(rule)["threshold"] == "7.5000"
