"""Calculation suite: fetch ticks and compute VWAP, mean, returns and a moving average.

Per instrument over ``calc_rows`` ticks by id (starting after the last tick soft-deleted at
head, so that both revisions read the same rows and they are all live at head; ``first_id``
in the results): the volume-weighted average price, the mean price, the simple returns
``p[i] / p[i-1] - 1`` and the ``ma_window``-tick moving average. The rows come through the
application's async engine and column types, so the baseline hands back ``Decimal``
(DECIMAL(12,4), :class:`marketdata.types.FourPlaceDecimal`) and head hands back ``float``
(:class:`marketdata.types.Price`). The baseline computes in ``Decimal`` arithmetic, as code
holding DECIMAL rows does; head computes once in plain ``float`` and once with numpy (the
conversion of the fetched rows into arrays included).

Each round fetches, then computes, timing both. The cases: ``fetch`` (DECIMAL rows against
FLOAT rows), ``compute float`` and ``compute numpy`` (Decimal arithmetic against float /
numpy), and ``fetch + compute`` for both (per-round sums): the same SQLAlchemy fetch on both
sides, the like-for-like comparison of the column types.

The ``analytics`` cases are the application's analytics path at head against what the
baseline application does: the same ticks read with
:func:`marketdata.analytics.fetch_price_columns` (numpy columns, no SQLAlchemy rows) and
computed with its numpy functions, against the DECIMAL rows through SQLAlchemy and
``Decimal`` arithmetic. ``analytics fetch + compute`` is the calculation goal
(:data:`GOAL_SPEEDUP`). The analytics path is a third side of the same alternating rounds.

The results of the four computations agree within 1e-9 (relative), checked every run.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks import data
from benchmarks.databases import BenchDatabase, Databases
from benchmarks.settings import Settings
from benchmarks.timing import Progress, alternate, case, clock, side
from marketdata import analytics, create_app_engine

# Per instrument: (vwap, mean, sum of returns, last moving average, count of returns).
Summary = dict[int, tuple[float, float, float, float, int]]
GOAL_SPEEDUP = 3.0  # the calculation goal: fetch + compute at least 3x faster at head
GOAL_CASE = "analytics fetch + compute"
ANALYTICS_COLUMNS = ("instrument_id", "price", "volume")


def _series(rows: Sequence[Any]) -> dict[int, tuple[list[Any], list[int]]]:
    out: dict[int, tuple[list[Any], list[int]]] = {}
    for instrument, price, volume in rows:
        prices, volumes = out.setdefault(instrument, ([], []))
        prices.append(price)
        volumes.append(volume)
    return out


def compute_decimal(rows: Sequence[Any], window: int) -> Summary:
    out: Summary = {}
    one = Decimal(1)
    for instrument, (prices, volumes) in _series(rows).items():
        window = min(window, len(prices))
        w = Decimal(window)
        pv = sum((p * v for p, v in zip(prices, volumes, strict=True)), Decimal(0))
        vwap = pv / sum(volumes)
        mean = sum(prices, Decimal(0)) / len(prices)
        returns = [b / a - one for a, b in itertools.pairwise(prices)]
        running = sum(prices[:window], Decimal(0))
        moving = [running / w]
        for i in range(window, len(prices)):
            running += prices[i] - prices[i - window]
            moving.append(running / w)
        out[instrument] = (
            float(vwap),
            float(mean),
            float(sum(returns)),
            float(moving[-1]),
            len(returns),
        )
    return out


def compute_float(rows: Sequence[Any], window: int) -> Summary:
    out: Summary = {}
    for instrument, (prices, volumes) in _series(rows).items():
        window = min(window, len(prices))
        pv = math.fsum(p * v for p, v in zip(prices, volumes, strict=True))
        vwap = pv / sum(volumes)
        mean = math.fsum(prices) / len(prices)
        returns = [b / a - 1.0 for a, b in itertools.pairwise(prices)]
        running = math.fsum(prices[:window])
        moving = [running / window]
        for i in range(window, len(prices)):
            running += prices[i] - prices[i - window]
            moving.append(running / window)
        out[instrument] = (vwap, mean, math.fsum(returns), moving[-1], len(returns))
    return out


def compute_numpy(rows: Sequence[Any], window: int) -> Summary:
    # Converting the fetched rows into arrays is part of the cost.
    n = len(rows)
    instruments = np.fromiter((r[0] for r in rows), np.int64, n)
    prices = np.fromiter((r[1] for r in rows), np.float64, n)
    volumes = np.fromiter((r[2] for r in rows), np.float64, n)
    out: Summary = {}
    for instrument in np.unique(instruments):
        mask = instruments == instrument
        p, v = prices[mask], volumes[mask]
        w = min(window, len(p))
        vwap = float(np.dot(p, v) / v.sum())
        returns = p[1:] / p[:-1] - 1.0
        cumulative = np.cumsum(np.concatenate(([0.0], p)))
        moving = (cumulative[w:] - cumulative[:-w]) / w
        out[int(instrument)] = (
            vwap,
            float(p.mean()),
            float(returns.sum()),
            float(moving[-1]),
            len(returns),
        )
    return out


def compute_analytics(columns: dict[str, Any], window: int) -> Summary:
    """The summary from the columns of :func:`marketdata.analytics.fetch_price_columns`."""
    groups = analytics.group_by_instrument(columns["instrument_id"])
    prices, volumes = columns["price"], columns["volume"]
    vwap = analytics.vwap(groups, prices, volumes)
    mean = analytics.mean(groups, prices)
    returns = analytics.returns(groups, prices)
    # Fewer ticks than the window: the other computations average what there is.
    moving = analytics.moving_average(groups, prices, window)
    return {
        key: (
            vwap[key],
            mean[key],
            float(returns[key].sum()),
            float(moving[key][-1]) if moving[key].size else mean[key],
            len(returns[key]),
        )
        for key in vwap
    }


def worst_difference(a: Summary, b: Summary) -> float:
    """The largest relative difference between two summaries (inf if their shapes differ)."""
    if a.keys() != b.keys():
        return math.inf
    worst = 0.0
    for key, left in a.items():
        for x, y in zip(left, b[key], strict=True):
            worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1.0))
    return worst


async def _fetch(engine: AsyncEngine, statement: sa.Select[Any]) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(statement)).all())


async def _fetch_columns(engine: AsyncEngine, rows: int) -> dict[str, Any]:
    """The first ``rows`` live ticks by id, as numpy columns: the rows of :func:`_statement`
    when no tick after its ``after`` is soft-deleted (see :func:`after_soft_deleted`)."""
    async with engine.connect() as conn:
        return await analytics.fetch_price_columns(
            conn, columns=ANALYTICS_COLUMNS, limit=rows, order_by="id"
        )


def after_soft_deleted(bench: BenchDatabase) -> int:
    """The id of the last soft-deleted tick at head (0 if none): every later tick is live."""
    engine = bench.engine()
    try:
        with engine.connect() as conn:
            last = conn.execute(
                sa.text("SELECT max(id) FROM market_data WHERE deleted_at IS NOT NULL")
            ).scalar()
    finally:
        engine.dispose()
    return int(last or 0)


def _statement(revision: str, after: int, rows: int) -> sa.Select[Any]:
    md = data.TABLES[revision]["market_data"]
    return (
        sa.select(md.c.instrument_id, md.c.price, sa.func.coalesce(md.c.volume, 0))
        .where(md.c.id > after, md.c.id <= after + rows)
        .order_by(md.c.id)
    )


def run(dbs: Databases, s: Settings, progress: Progress) -> list[dict[str, Any]]:
    base_db, head_db = dbs.get("baseline", "filled"), dbs.get("head", "filled")
    after = after_soft_deleted(head_db)
    n = min(s.calc_rows, base_db.ticks - after)
    label = f"{dbs.dialect} calc {n:,} rows"
    times: dict[str, list[float]] = {
        k: [] for k in ("fetch_b", "fetch_h", "decimal", "float", "numpy", "fetch_a", "analytics")
    }
    summaries: dict[str, Summary] = {}

    with asyncio.Runner() as aio:
        engines = {
            "baseline": create_app_engine(base_db.async_url),
            "head": create_app_engine(head_db.async_url),
        }
        try:

            def fetch(revision: str) -> tuple[list[Any], float]:
                started = clock()
                rows = aio.run(_fetch(engines[revision], _statement(revision, after, n)))
                return rows, clock() - started

            def timed(
                fn: Callable[[Sequence[Any], int], Summary], rows: list[Any], key: str
            ) -> float:
                started = clock()
                summaries[key] = fn(rows, s.ma_window)
                return clock() - started

            def baseline() -> float:
                rows, fetched = fetch("baseline")
                assert isinstance(rows[0][1], Decimal), type(rows[0][1])
                times["fetch_b"].append(fetched)
                times["decimal"].append(timed(compute_decimal, rows, "decimal"))
                return 0.0

            def head() -> float:
                rows, fetched = fetch("head")
                assert isinstance(rows[0][1], float), type(rows[0][1])
                times["fetch_h"].append(fetched)
                times["float"].append(timed(compute_float, rows, "float"))
                times["numpy"].append(timed(compute_numpy, rows, "numpy"))
                return 0.0

            def head_analytics() -> float:
                started = clock()
                columns = aio.run(_fetch_columns(engines["head"], n))
                times["fetch_a"].append(clock() - started)
                assert len(columns["price"]) == n, len(columns["price"])
                started = clock()
                summaries["analytics"] = compute_analytics(columns, s.ma_window)
                times["analytics"].append(clock() - started)
                return 0.0

            alternate(
                {"baseline": baseline, "head": head, "analytics": head_analytics},
                s.rounds + s.warmup,
                0,
                progress,
                label,
            )
        finally:
            for engine in engines.values():
                aio.run(engine.dispose())

    # The warm-up rounds were timed like the others; drop them here.
    t = {k: v[s.warmup :] for k, v in times.items()}
    worst = max(
        worst_difference(summaries["decimal"], summaries[k])
        for k in ("float", "numpy", "analytics")
    )
    agree = {"results_close": worst < 1e-9, "worst_relative_difference": worst}

    def total(*keys: str) -> list[float]:
        return [sum(xs) for xs in zip(*(t[k] for k in keys), strict=True)]

    # (case, the 0000 side's timings, head's, whether results are compared): a side of
    # several timings is their per-round sum (fetch + compute).
    spec: list[tuple[str, tuple[str, ...], tuple[str, ...], bool]] = [
        ("fetch", ("fetch_b",), ("fetch_h",), False),
        ("compute float", ("decimal",), ("float",), True),
        ("compute numpy", ("decimal",), ("numpy",), True),
        ("fetch + compute float", ("fetch_b", "decimal"), ("fetch_h", "float"), True),
        ("fetch + compute numpy", ("fetch_b", "decimal"), ("fetch_h", "numpy"), True),
        # The application paths: the baseline's against head's analytics read path.
        ("analytics fetch", ("fetch_b",), ("fetch_a",), False),
        ("analytics compute", ("decimal",), ("analytics",), True),
        (GOAL_CASE, ("fetch_b", "decimal"), ("fetch_a", "analytics"), True),
    ]
    cases = [
        case(
            "calc",
            name,
            side(total(*base), rows=n),
            side(total(*head), rows=n),
            rows=n,
            **(agree if compared else {}),
        )
        for name, base, head, compared in spec
    ]
    goal = cases[-1]
    goal["goal_speedup"] = GOAL_SPEEDUP
    goal["goal_met"] = 1 / goal["ratio"] >= GOAL_SPEEDUP and agree["results_close"]
    for c in cases:
        c["first_id"] = after + 1
        progress.note(f"{label}: {c['name']}: head/baseline {c['ratio']:.3f}")
    return cases
