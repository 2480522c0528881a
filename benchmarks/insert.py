"""INSERT suite: ticks and alert logs, baseline against head, empty and pre-filled tables.

Three paths write the same rows (:mod:`benchmarks.data`) in batches of ``batch`` rows, one
transaction per batch:

``core``    the application's path: SQLAlchemy Core ``insert(table)`` executemany on the
            application's async engine (:func:`marketdata.create_app_engine`: aiosqlite /
            asyncpg), with the application's column types (DECIMAL(12,4) at the baseline,
            FLOAT at head) and its Python defaults for ``created_at`` / ``updated_at``
``driver``  the raw driver, the ceiling of an executemany: ``sqlite3`` ``executemany`` /
            asyncpg ``executemany``, with values already in the driver's form
``copy``    PostgreSQL only: asyncpg ``copy_records_to_table`` (COPY), the bulk ceiling

A round inserts ``insert_rows`` rows into one database and is timed from the first batch to
the last commit. Between rounds (untimed) the table is put back: emptied (TRUNCATE on
PostgreSQL) or cut back to its pre-filled rows, the identity reset and, on PostgreSQL, the
table vacuumed, so every round starts from the same state.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks import data
from benchmarks.databases import FILLS, TIME_SERIES, BenchDatabase, Databases
from benchmarks.settings import Settings
from benchmarks.timing import SIDES, Progress, alternate, case, clock, side
from marketdata import create_app_engine

PATHS = {"sqlite": ("core", "driver"), "postgresql": ("core", "driver", "copy")}


class _Connections:
    """Per database: the application's async engine and a raw driver connection."""

    def __init__(self, aio: asyncio.Runner, dbs: Databases) -> None:
        self.aio = aio
        self.engines: dict[tuple[str, str], AsyncEngine] = {}
        self.sqlite: dict[tuple[str, str], sqlite3.Connection] = {}
        self.asyncpg: dict[tuple[str, str], asyncpg.Connection] = {}
        for key, bench in dbs.all.items():
            self.engines[key] = create_app_engine(bench.async_url)
            if bench.dialect == "sqlite":
                raw = sqlite3.connect(bench.sqlite_path, isolation_level=None)
                raw.execute("PRAGMA foreign_keys=ON")  # as the application's engine has it
                self.sqlite[key] = raw
            else:
                self.asyncpg[key] = aio.run(asyncpg.connect(bench.asyncpg_dsn()))

    def close(self) -> None:
        for engine in self.engines.values():
            self.aio.run(engine.dispose())
        for raw in self.sqlite.values():
            raw.close()
        for pg in self.asyncpg.values():
            self.aio.run(pg.close())


async def _core_round(engine: AsyncEngine, table: sa.Table, batches: list[list[Any]]) -> float:
    statement = sa.insert(table)
    async with engine.connect() as conn:
        started = clock()
        for batch in batches:
            await conn.execute(statement, batch)
            await conn.commit()
        return clock() - started


def _sqlite_round(raw: sqlite3.Connection, sql: str, batches: list[list[Any]]) -> float:
    started = clock()
    for batch in batches:
        raw.execute("BEGIN")
        raw.executemany(sql, batch)
        raw.execute("COMMIT")
    return clock() - started


async def _asyncpg_round(
    pg: asyncpg.Connection, table: str, sql: str, batches: list[list[Any]], copy: bool
) -> float:
    columns = list(data.columns_for(table))
    started = clock()
    for batch in batches:
        async with pg.transaction():
            if copy:
                await pg.copy_records_to_table(table, records=batch, columns=columns)
            else:
                await pg.executemany(sql, batch)
    return clock() - started


def _insert_sql(table: str, dialect: str) -> str:
    columns = data.columns_for(table)
    marks = (
        ", ".join("?" for _ in columns)
        if dialect == "sqlite"
        else ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def _restore(conns: _Connections, bench: BenchDatabase, table: str, keep: int) -> None:
    key = (bench.revision, bench.fill)
    if bench.dialect == "sqlite":
        conns.sqlite[key].execute(f"DELETE FROM {table} WHERE id > {keep}")
        return
    pg = conns.asyncpg[key]

    async def go() -> None:
        if keep == 0:
            await pg.execute(f"TRUNCATE {table} RESTART IDENTITY")
            return
        await pg.execute(f"DELETE FROM {table} WHERE id > {keep}")
        await pg.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {keep + 1}, false)"
        )
        await pg.execute(f"VACUUM {table}")

    conns.aio.run(go())


def _runner(
    conns: _Connections, bench: BenchDatabase, table: str, path: str, s: Settings
) -> tuple[Callable[[], float], int]:
    """The round of one side, and how many rows were there before it."""
    keep = 0 if bench.fill == "empty" else bench.ticks if table == "market_data" else bench.alerts
    key = (bench.revision, bench.fill)
    rows = data.rows_for(table, keep + 1, s.insert_rows, as_decimal=bench.revision == "baseline")
    if path == "core":
        target = data.TABLES[bench.revision][table]
        batches = list(data.iter_batches(rows, s.batch))

        def timed() -> float:
            return conns.aio.run(_core_round(conns.engines[key], target, batches))

    else:
        now = datetime.now(UTC)
        tuples = data.driver_tuples(table, rows, bench.dialect, now)
        raw_batches = list(data.iter_batches(tuples, s.batch))
        sql = _insert_sql(table, bench.dialect)
        if bench.dialect == "sqlite":

            def timed() -> float:
                return _sqlite_round(conns.sqlite[key], sql, raw_batches)

        else:

            def timed() -> float:
                pg = conns.asyncpg[key]
                return conns.aio.run(_asyncpg_round(pg, table, sql, raw_batches, path == "copy"))

    def round_() -> float:
        try:
            return timed()
        finally:
            _restore(conns, bench, table, keep)

    return round_, keep


def run(dbs: Databases, s: Settings, progress: Progress) -> list[dict[str, Any]]:
    results = []
    with asyncio.Runner() as aio:
        conns = _Connections(aio, dbs)
        try:
            for table in TIME_SERIES:
                for fill in FILLS:
                    for path in PATHS[dbs.dialect]:
                        label = f"{dbs.dialect} insert {table} {path} {fill}"
                        runners, before = {}, 0
                        for revision in SIDES:
                            runners[revision], before = _runner(
                                conns, dbs.get(revision, fill), table, path, s
                            )
                        samples = alternate(runners, s.rounds, s.warmup, progress, label)
                        batches = -(-s.insert_rows // s.batch)
                        result = case(
                            "insert",
                            f"{table} {path} {fill}",
                            side(samples["baseline"], rows=s.insert_rows, per=batches),
                            side(samples["head"], rows=s.insert_rows, per=batches),
                            table=table,
                            path=path,
                            fill=fill,
                            rows_before=before,
                            batch=s.batch,
                        )
                        results.append(result)
                        progress.note(f"{label}: head/baseline {result['ratio']:.2f}")
        finally:
            conns.close()
    return results
