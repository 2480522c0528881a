"""Experiment behind the one-step binds of ``UTCDateTime`` and ``Price`` (docs/performance.md,
notes): the application's Core insert path on SQLite at head, with the types as they are
against the same types bound the stock way (``process_bind_param``, then the impl's own
processor through TypeDecorator's wrapper: sqlite.DATETIME's %-format for timestamps).

20,000 ticks in 1,000-row batches into a pre-filled head database, alternating rounds,
medians, through :func:`marketdata.create_app_engine` (aiosqlite).

    python -m benchmarks.experiments.bind_cost [PREFILL]
"""

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

from benchmarks import data
from benchmarks.databases import Databases
from benchmarks.timing import Progress, alternate
from marketdata import create_app_engine
from marketdata.types import Price, UTCDateTime

prefill = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
ROWS, BATCH, ROUNDS = 20_000, 1_000, 7


class StockUTCDateTime(UTCDateTime):
    bind_processor = TypeDecorator.bind_processor
    cache_ok = True


class StockPrice(Price):
    bind_processor = TypeDecorator.bind_processor
    cache_ok = True


def stock_table(head: sa.Table) -> sa.Table:
    columns = []
    for column in head.columns:
        kind = column.type
        if isinstance(kind, UTCDateTime):
            kind = StockUTCDateTime()
        elif isinstance(kind, Price):
            kind = StockPrice()
        columns.append(sa.Column(column.name, kind, default=column.default))
    return sa.Table(head.name, sa.MetaData(), *columns)


async def one_round(
    engine: AsyncEngine, table: sa.Table, batches: list[list[dict[str, Any]]]
) -> float:
    statement = sa.insert(table)
    async with engine.connect() as conn:
        started = time.perf_counter()
        for batch in batches:
            await conn.execute(statement, batch)
            await conn.commit()
        return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dbs = Databases("sqlite", workdir=Path(tmp))
        dbs.build(prefill, prefill // 2, lambda line: print(line, file=sys.stderr), ("head",))
        bench = dbs.get("head", "filled")
        head = data.TABLES["head"]["market_data"]
        tables = {"one-step binds": head, "stock binds": stock_table(head)}
        rows = data.rows_for("market_data", prefill + 1, ROWS, as_decimal=False)
        batches = list(data.iter_batches(rows, BATCH))
        engine = create_app_engine(bench.async_url)
        raw = sqlite3.connect(bench.sqlite_path, isolation_level=None)
        with asyncio.Runner() as aio:

            def runner(table: sa.Table) -> Callable[[], float]:
                def round_() -> float:
                    took = aio.run(one_round(engine, table, batches))
                    raw.execute(f"DELETE FROM market_data WHERE id > {prefill}")
                    return took

                return round_

            runners = {name: runner(table) for name, table in tables.items()}
            samples = alternate(runners, ROUNDS, 1, Progress(enabled=False), "bind_cost")
            aio.run(engine.dispose())
        raw.close()
        stock = statistics.median(samples["stock binds"])
        print(f"{ROWS:,} ticks into {prefill:,} (SQLite, Core path), medians of {ROUNDS}:")
        for name, xs in samples.items():
            m = statistics.median(xs)
            print(f"  {name:15s} {m * 1000:7.1f} ms  {ROWS / m:9,.0f} rows/s  {m / stock:6.1%}")
        dbs.drop()


main()
