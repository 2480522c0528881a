"""The analytics read path (marketdata.analytics): the columns it fetches are the rows the
database holds (soft-deleted ones left out, filters and order respected), and its numpy
calculations agree with exact Decimal arithmetic on the same 4-place prices. SQLite and
PostgreSQL.

Tolerance: each value within 1e-12 of the Decimal result, relative, plus 1e-14 absolute for
returns (a return near 0 is a difference of two prices that floats hold only to 1 ulp).
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from marketdata_support import T0, sync_engine, upgrade
from support import ROOT

from marketdata import MarketData, UnsupportedSchema, analytics, create_app_engine
from marketdata.analytics import fetch_price_columns

RTOL, RETURNS_ATOL = 1e-12, 1e-14
WINDOW = 5
TICKS = 240
N_INSTRUMENTS = 3
EDGE = [Decimal("99999999.9999"), Decimal("0.0001"), Decimal("-12.5"), Decimal("12345678.9012")]


@dataclass(frozen=True)
class Tick:
    id: int
    instrument_id: int
    timestamp: datetime
    price: Decimal
    bid: Decimal | None
    volume: int | None
    deleted: bool


def _ticks() -> list[Tick]:
    out = []
    for n in range(1, TICKS + 1):
        units = 1_0000 + n * 2654435761 % 4294967296 % 4999_0000
        instrument = (n - 1) % N_INSTRUMENTS + 1
        price = Decimal(units).scaleb(-4)
        if instrument == 3 and n // N_INSTRUMENTS % 10 < len(EDGE):
            price = EDGE[n // N_INSTRUMENTS % 10]
        # Microseconds that change per tick; every 25th tick arrives out of time order.
        ts = T0 + timedelta(seconds=n, microseconds=7 * n)
        if n % 25 == 0:
            ts -= timedelta(seconds=40)
        out.append(
            Tick(
                id=n,
                instrument_id=instrument,
                timestamp=ts,
                price=price,
                bid=None if n % 4 == 0 else price - Decimal("0.0001"),
                volume=None if n % 5 == 0 else n * 48271 % 999_999_999,
                deleted=n % 9 == 0,
            )
        )
    return out


TICK_ROWS = _ticks()


def _seed(db_url: str) -> None:
    upgrade(db_url, "head")
    engine = sync_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO instruments (id, symbol, name) VALUES (:id, :s, :s)"),
                [{"id": i, "s": f"I{i}"} for i in range(1, N_INSTRUMENTS + 2)],  # one unused
            )
            conn.execute(
                sa.insert(MarketData.__table__),
                [
                    {
                        "id": t.id,
                        "instrument_id": t.instrument_id,
                        "timestamp": t.timestamp,
                        "price": float(t.price),
                        "bid": None if t.bid is None else float(t.bid),
                        "volume": t.volume,
                        "deleted_at": T0 if t.deleted else None,
                    }
                    for t in TICK_ROWS
                ],
            )
    finally:
        engine.dispose()


def _fetch(async_db_url: str, **kw: Any) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        engine = create_app_engine(async_db_url)
        try:
            async with engine.connect() as conn:
                return await fetch_price_columns(conn, **kw)
        finally:
            await engine.dispose()

    return asyncio.run(main())


@pytest.fixture
def seeded(db_url: str, async_db_url: str) -> Iterator[str]:
    _seed(db_url)
    yield async_db_url


def _expected(*, order: str = "timestamp", live_only: bool = True) -> list[Tick]:
    """The seeded ticks the fetch should return, in its order."""
    rows = [t for t in TICK_ROWS if not (live_only and t.deleted)]
    key = (lambda t: (t.timestamp, t.id)) if order == "timestamp" else (lambda t: t.id)
    return sorted(rows, key=key)


def _as_datetimes(values: np.ndarray[Any, Any]) -> list[datetime]:
    return [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(v)) for v in values]


# --- fetching ------------------------------------------------------------------------------


@pytest.mark.db
def test_columns_are_the_stored_rows(seeded: str) -> None:
    cols = _fetch(seeded, columns=analytics.TICK_COLUMNS, order_by="id", live_only=False)
    assert list(cols) == list(analytics.TICK_COLUMNS)
    for name, values in cols.items():
        assert values.dtype == analytics.DTYPES[name], name
        assert values.shape == (TICKS,), name
    rows = _expected(order="id", live_only=False)
    assert cols["id"].tolist() == [t.id for t in rows]
    assert cols["instrument_id"].tolist() == [t.instrument_id for t in rows]
    assert _as_datetimes(cols["timestamp"].astype(np.int64)) == [t.timestamp for t in rows]
    assert cols["price"].tolist() == [float(t.price) for t in rows]  # exactly
    assert cols["volume"].tolist() == [t.volume or 0 for t in rows]  # NULL volume: 0
    bid = cols["bid"]
    assert np.isnan(bid).tolist() == [t.bid is None for t in rows]  # NULL price: NaN
    assert bid[~np.isnan(bid)].tolist() == [float(t.bid) for t in rows if t.bid is not None]
    assert np.isnan(cols["ask"]).all()  # never written


@pytest.mark.db
def test_soft_deleted_rows_are_left_out(seeded: str) -> None:
    live = _fetch(seeded, columns=("id",))
    assert live["id"].tolist() == [t.id for t in _expected()]
    assert not {t.id for t in TICK_ROWS if t.deleted} & set(live["id"].tolist())
    every = _fetch(seeded, columns=("id",), live_only=False)
    assert sorted(every["id"].tolist()) == list(range(1, TICKS + 1))


@pytest.mark.db
def test_filters_and_order(seeded: str) -> None:
    # Time order (the default) differs from id order: some ticks arrived late.
    by_time = _fetch(seeded, columns=("id", "timestamp"))["id"].tolist()
    by_id = _fetch(seeded, columns=("id",), order_by="id")["id"].tolist()
    assert by_time == [t.id for t in _expected()] != by_id == [t.id for t in _expected(order="id")]

    only = _fetch(seeded, columns=("id", "instrument_id"), instrument_ids=[1, 3])
    assert only["id"].tolist() == [t.id for t in _expected() if t.instrument_id in (1, 3)]
    assert set(only["instrument_id"].tolist()) == {1, 3}

    # Half-open window: a tick exactly at start is in, one exactly at end is out.
    start, end = TICK_ROWS[29].timestamp, TICK_ROWS[119].timestamp
    window = _fetch(seeded, columns=("id",), start=start, end=end, live_only=False)
    inside = [t.id for t in _expected(live_only=False) if start <= t.timestamp < end]
    assert window["id"].tolist() == inside
    assert 30 in inside and 120 not in inside
    # The bounds may be in any time zone.
    east = start.astimezone(timezone(timedelta(hours=5)))
    assert _fetch(seeded, columns=("id",), start=east, end=end, live_only=False)["id"].tolist() == (
        inside
    )

    first = _fetch(seeded, columns=("id",), instrument_ids=[2], limit=7)["id"].tolist()
    assert first == [t.id for t in _expected() if t.instrument_id == 2][:7]
    combined = _fetch(seeded, columns=("id",), instrument_ids=[2], start=start, limit=3)
    assert (
        combined["id"].tolist()
        == [t.id for t in _expected() if t.instrument_id == 2 and t.timestamp >= start][:3]
    )


@pytest.mark.db
def test_empty_results(seeded: str) -> None:
    cases: list[dict[str, Any]] = [
        {"end": T0 - timedelta(days=1)},  # before every tick
        {"instrument_ids": []},
        {"instrument_ids": [4]},  # an instrument without ticks
        {"limit": 0},
    ]
    for kw in cases:
        cols = _fetch(seeded, columns=analytics.TICK_COLUMNS, **kw)
        assert list(cols) == list(analytics.TICK_COLUMNS), kw
        for name, values in cols.items():
            assert values.shape == (0,) and values.dtype == analytics.DTYPES[name], (kw, name)
        ids, prices, volumes = cols["instrument_id"], cols["price"], cols["volume"]
        assert analytics.vwap(ids, prices, volumes) == {}
        assert analytics.mean(ids, prices) == {}
        assert analytics.returns(ids, prices) == {}
        assert analytics.moving_average(ids, prices, WINDOW) == {}


@pytest.mark.db
def test_reads_inside_the_connections_transaction(db_url: str, async_db_url: str) -> None:
    _seed(db_url)

    async def main() -> tuple[int, int]:
        engine = create_app_engine(async_db_url)
        try:
            async with engine.connect() as conn:
                await conn.execute(
                    sa.insert(MarketData.__table__),
                    {"id": TICKS + 1, "instrument_id": 1, "timestamp": T0, "price": 1.5},
                )
                inside = await fetch_price_columns(conn, columns=("id",))
                await conn.rollback()
                after = await fetch_price_columns(conn, columns=("id",))
                return len(inside["id"]), len(after["id"])
        finally:
            await engine.dispose()

    live = len(_expected())
    assert asyncio.run(main()) == (live + 1, live)


@pytest.mark.db
def test_the_baseline_schema_is_refused(db_url: str, async_db_url: str) -> None:
    upgrade(db_url, "0000")
    with pytest.raises(UnsupportedSchema, match="not FLOAT"):
        _fetch(async_db_url, live_only=False)
    with pytest.raises(UnsupportedSchema):
        _fetch(async_db_url)
    # Columns without prices read at the baseline too (no deleted_at there: live_only=False).
    assert _fetch(async_db_url, columns=("id", "volume"), live_only=False)["id"].size == 0


def test_bad_arguments() -> None:
    async def main(**kw: Any) -> None:
        engine = create_app_engine("sqlite+aiosqlite://")
        try:
            async with engine.connect() as conn:
                await fetch_price_columns(conn, **kw)
        finally:
            await engine.dispose()

    for kw in (
        {"columns": ("price", "nope")},
        {"columns": ()},
        {"columns": ("price", "price")},
        {"limit": -1},
        {"order_by": "price"},
        {"start": datetime(2026, 1, 1)},  # naive
    ):
        with pytest.raises(ValueError):
            asyncio.run(main(**kw))
    with pytest.raises(UnsupportedSchema, match="no market_data"):
        asyncio.run(main())


def test_importing_marketdata_does_not_import_numpy() -> None:
    code = "import sys, marketdata; assert 'numpy' not in sys.modules; marketdata.analytics"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- calculations against Decimal ----------------------------------------------------------


def _reference(rows: list[Tick], window: int) -> dict[int, dict[str, Any]]:
    """VWAP, mean, returns and moving averages per instrument in exact Decimal arithmetic."""
    out: dict[int, dict[str, Any]] = {}
    for instrument in sorted({t.instrument_id for t in rows}):
        ticks = [t for t in rows if t.instrument_id == instrument]
        p = [t.price for t in ticks]
        v = [t.volume or 0 for t in ticks]
        total = sum(v)
        out[instrument] = {
            "vwap": sum((a * b for a, b in zip(p, v, strict=True)), Decimal(0)) / total,
            "mean": sum(p, Decimal(0)) / len(p),
            "returns": [b / a - 1 for a, b in pairwise(p)],
            "moving": [
                sum(p[i : i + window], Decimal(0)) / window for i in range(len(p) - window + 1)
            ],
        }
    return out


def _close(got: Any, expected: Decimal | list[Decimal], atol: float = 0.0) -> bool:
    want = np.array([float(x) for x in (expected if isinstance(expected, list) else [expected])])
    have = np.atleast_1d(np.asarray(got, dtype=np.float64))
    return have.shape == want.shape and bool(
        np.all(np.abs(have - want) <= RTOL * np.abs(want) + atol)
    )


def _check(ids: Any, prices: Any, volumes: Any, rows: list[Tick], window: int) -> None:
    ref = _reference(rows, window)
    groups = analytics.group_by_instrument(ids)
    for key in (ids, groups):  # the ids, or the grouping done once
        vwap = analytics.vwap(key, prices, volumes)
        mean = analytics.mean(key, prices)
        rets = analytics.returns(key, prices)
        moving = analytics.moving_average(key, prices, window)
        assert list(vwap) == list(mean) == list(rets) == list(moving) == list(ref)
        for i, r in ref.items():
            assert _close(vwap[i], r["vwap"]), i
            assert _close(mean[i], r["mean"]), i
            assert _close(rets[i], r["returns"], RETURNS_ATOL), i
            assert _close(moving[i], r["moving"]), i


@pytest.mark.db
def test_calculations_agree_with_decimal(seeded: str) -> None:
    cols = _fetch(seeded)
    rows = _expected()
    assert cols["price"].size == len(rows)
    # The edge prices (8 integer digits next to 0.0001) are in there.
    assert {float(e) for e in EDGE} <= set(cols["price"].tolist())
    _check(cols["instrument_id"], cols["price"], cols["volume"], rows, WINDOW)
    by_id = _fetch(seeded, order_by="id", instrument_ids=[1, 2])
    _check(
        by_id["instrument_id"],
        by_id["price"],
        by_id["volume"],
        [t for t in _expected(order="id") if t.instrument_id in (1, 2)],
        WINDOW,
    )


def test_calculations_without_a_database() -> None:
    # Prices 1, 2, 3, 4 with volumes 1, 1, 1, 3; window 2 (hand-checked).
    ids, p, v = [7, 7, 7, 7], [1.0, 2.0, 3.0, 4.0], [1, 1, 1, 3]
    assert analytics.vwap(ids, p, v) == {7: 3.0}
    assert analytics.mean(ids, p) == {7: 2.5}
    assert analytics.returns(ids, p)[7].tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert analytics.moving_average(ids, p, 2)[7].tolist() == [1.5, 2.5, 3.5]
    # Fewer rows than the window: no moving average; one row: no return.
    assert analytics.moving_average(ids, p, 5)[7].size == 0
    assert analytics.returns([1], [5.0])[1].size == 0
    # No volume at all: no VWAP. A zero price: an infinite return, without a warning.
    assert math.isnan(analytics.vwap([1, 1], [1.0, 2.0], [0, 0])[1])
    assert analytics.returns([1, 1], [0.0, 2.0])[1].tolist() == [math.inf]
    # Any ids (large, negative), interleaved rows keep their order within an instrument.
    big = [2**40, -3, 2**40, -3, 2**40]
    assert {
        k: a.tolist() for k, a in analytics.returns(big, [1.0, 10.0, 2.0, 5.0, 3.0]).items()
    } == {
        -3: [-0.5],
        2**40: pytest.approx([1.0, 0.5]),
    }
    with pytest.raises(ValueError):
        analytics.moving_average(ids, p, 0)
    with pytest.raises(ValueError):
        analytics.mean(ids, p[:3])


@pytest.mark.parametrize("window", [1, 20, 256, 257, 1000])
def test_moving_average_both_methods_agree_with_decimal(window: int) -> None:
    """Windows up to 256 rows are summed directly, wider ones from running sums."""
    n = 30_000
    ids = np.arange(n) % 2 + 1
    units = [1_0000 + k * 2654435761 % 4294967296 % 4999_0000 for k in range(n)]
    decimals = [Decimal(u).scaleb(-4) for u in units]
    moving = analytics.moving_average(ids, np.array(units) / 10_000, window)
    for i in (1, 2):
        p = decimals[i - 1 :: 2]
        running = sum(p[:window], Decimal(0))
        expected = [running / window]
        for k in range(window, len(p)):
            running += p[k] - p[k - window]
            expected.append(running / window)
        assert _close(moving[i], expected), (window, i)
