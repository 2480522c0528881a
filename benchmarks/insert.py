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
``bulk``    head only: the application's bulk-ingest path (:func:`marketdata.insert_ticks` /
            :func:`marketdata.insert_alerts`, every row validated, then COPY / executemany),
            one call per batch (each call its own transaction)

Besides the per-path cases (each path at baseline against head), one ``bulk`` case per
(table, fill) runs three sides in alternating rounds: baseline ``core`` (the end-to-end
starting point), head ``bulk``, and head's raw-driver ceiling (:data:`CEILING`). Its ``ratio``
is head bulk / baseline core (time), and ``fraction_of_ceiling`` the ceiling median / the bulk
median (1.0: the bulk path is as fast as the raw driver).

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
from marketdata import create_app_engine, insert_alerts, insert_ticks
from marketdata.db import SQLITE_CACHE_KIB

PATHS = {"sqlite": ("core", "driver"), "postgresql": ("core", "driver", "copy")}
BULK = "bulk"
PLAIN = "plain"  # PostgreSQL: SQLAlchemy Core without the application's multi-row inserts
CEILING = {"sqlite": "driver", "postgresql": "copy"}  # the bulk path's raw-driver ceiling


class _Connections:
    """Per database: the application's async engine and a raw driver connection."""

    def __init__(self, aio: asyncio.Runner, dbs: Databases) -> None:
        self.aio = aio
        self.engines: dict[tuple[str, str], AsyncEngine] = {}
        # PostgreSQL at 0000: plain SQLAlchemy, as the application inserted before this work
        # (an executemany of one statement per row): the end-to-end starting point
        self.plain: dict[tuple[str, str], AsyncEngine] = {}
        self.sqlite: dict[tuple[str, str], sqlite3.Connection] = {}
        self.asyncpg: dict[tuple[str, str], asyncpg.Connection] = {}
        for key, bench in dbs.all.items():
            self.engines[key] = create_app_engine(bench.async_url)
            if bench.dialect == "postgresql" and bench.revision == "baseline":
                self.plain[key] = create_app_engine(bench.async_url, multirow_inserts=False)
            if bench.dialect == "sqlite":
                raw = sqlite3.connect(bench.sqlite_path, isolation_level=None)
                # as the application's engine has them (marketdata.db)
                raw.execute("PRAGMA foreign_keys=ON")
                raw.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                self.sqlite[key] = raw
            else:
                self.asyncpg[key] = aio.run(asyncpg.connect(bench.asyncpg_dsn()))

    def close(self) -> None:
        for engine in [*self.engines.values(), *self.plain.values()]:
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


async def _bulk_round(engine: AsyncEngine, table: str, batches: list[list[Any]]) -> float:
    ingest = insert_ticks if table == "market_data" else insert_alerts
    async with engine.connect() as conn:
        started = clock()
        for batch in batches:
            await ingest(conn, batch)  # outside a transaction: the call commits its own
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
    if path in ("core", PLAIN):
        target = data.TABLES[bench.revision][table]
        batches = list(data.iter_batches(rows, s.batch))
        engine = conns.plain[key] if path == PLAIN else conns.engines[key]

        def timed() -> float:
            return conns.aio.run(_core_round(engine, target, batches))

    elif path == BULK:
        bulk_batches = list(data.iter_batches(rows, s.batch))

        def timed() -> float:
            return conns.aio.run(_bulk_round(conns.engines[key], table, bulk_batches))

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


def _bulk_case(
    conns: _Connections, dbs: Databases, table: str, fill: str, s: Settings, progress: Progress
) -> dict[str, Any]:
    """0000 -> head bulk end to end, and head bulk against head's ceiling, in the same rounds.

    The end-to-end start is "the baseline schema with plain SQLAlchemy inserts" (the issue):
    on PostgreSQL the `plain` path (one statement per row, as before this work), with the
    application's `core` path at 0000 (multi-row statements, this work's engine) measured
    beside it as the stricter comparison; on SQLite the two are the same path."""
    ceiling = CEILING[dbs.dialect]
    label = f"{dbs.dialect} insert {table} {BULK} {fill}"
    core, before = _runner(conns, dbs.get("baseline", fill), table, "core", s)
    names = {"baseline core": core}
    if dbs.dialect == "postgresql":
        names["baseline plain"], _ = _runner(conns, dbs.get("baseline", fill), table, PLAIN, s)
    names[f"head {BULK}"], _ = _runner(conns, dbs.get("head", fill), table, BULK, s)
    names[f"head {ceiling}"], _ = _runner(conns, dbs.get("head", fill), table, ceiling, s)
    samples = alternate(names, s.rounds, s.warmup, progress, label)
    batches = -(-s.insert_rows // s.batch)
    sides = {name: side(x, rows=s.insert_rows, per=batches) for name, x in samples.items()}
    start = sides.get("baseline plain", sides["baseline core"])
    bulk, top = sides[f"head {BULK}"], sides[f"head {ceiling}"]
    result = case(
        "insert",
        f"{table} {BULK} {fill}",
        start,
        bulk,
        table=table,
        path=BULK,
        fill=fill,
        rows_before=before,
        batch=s.batch,
        start_path=PLAIN if "baseline plain" in sides else "core",
        core=sides["baseline core"],
        core_ratio=bulk["median_s"] / sides["baseline core"]["median_s"],
        ceiling_path=ceiling,
        ceiling=top,
        fraction_of_ceiling=top["median_s"] / bulk["median_s"],
    )
    progress.note(
        f"{label}: {1 / result['ratio']:.2f}x baseline {result['start_path']}, "
        f"{1 / result['core_ratio']:.2f}x baseline core, "
        f"{result['fraction_of_ceiling']:.0%} of the {ceiling} ceiling"
    )
    return result


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
                        # the application's path also at 0004: change 0005's trade, side by side
                        revisions = [*SIDES]
                        if path == "core" and ("phase1", fill) in dbs.all:
                            revisions.insert(1, "phase1")
                        for revision in revisions:
                            runners[revision], before = _runner(
                                conns, dbs.get(revision, fill), table, path, s
                            )
                        samples = alternate(runners, s.rounds, s.warmup, progress, label)
                        batches = -(-s.insert_rows // s.batch)
                        sides = {
                            r: side(samples[r], rows=s.insert_rows, per=batches) for r in revisions
                        }
                        extra: dict[str, Any] = {}
                        if "phase1" in sides:
                            extra["phase1"] = sides["phase1"]
                            extra["phase1_ratio"] = (
                                sides["phase1"]["median_s"] / sides["baseline"]["median_s"]
                            )
                        result = case(
                            "insert",
                            f"{table} {path} {fill}",
                            sides["baseline"],
                            sides["head"],
                            table=table,
                            path=path,
                            fill=fill,
                            rows_before=before,
                            batch=s.batch,
                            **extra,
                        )
                        results.append(result)
                        progress.note(
                            f"{label}: head/baseline {result['ratio']:.2f}"
                            + (f", 0004/baseline {extra['phase1_ratio']:.2f}" if extra else "")
                        )
                    results.append(_bulk_case(conns, dbs, table, fill, s, progress))
        finally:
            conns.close()
    return results
