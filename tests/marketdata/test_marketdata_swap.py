"""The application's pooled asyncpg engine across a schema swap: 0 failed queries.

Two swaps of market_data.price at 0002 (decimal(12,4)), each run the way a schemagen runner
runs it (its advisory lock held across the run, the swap in one short transaction, the
revision stamped in it):

- ``type``: ``ALTER COLUMN price TYPE double precision`` (the blocking path of 0003);
- ``contract``: what the online path's contract does: a shadow ``price__new double precision``
  kept equal by a trigger and backfilled first, then in one transaction ``DROP COLUMN price``
  and ``RENAME COLUMN price__new TO price``.

Real concurrent clients on one pool: connections checked out before the run and held across it
(a transaction after another), connections checked out per transaction (before, while the
runner holds its lock, and after), a writer. The same run without the guard fails queries (the
test can fail). PostgreSQL only: SQLite re-prepares a statement after a schema change itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from support import ROOT

from generator import db, migrate
from generator.guard import KEY_CLASS
from marketdata import demo, queries
from marketdata.db import create_app_engine

MIGRATIONS = ROOT / "generated_migrations"
pytestmark = pytest.mark.db

EXPAND = [
    "ALTER TABLE market_data ADD COLUMN price__new double precision",
    "CREATE FUNCTION market_data_price__new() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN NEW.price__new := NEW.price; RETURN NEW; END $$",
    "CREATE TRIGGER market_data_price__new BEFORE INSERT OR UPDATE ON market_data "
    "FOR EACH ROW EXECUTE FUNCTION market_data_price__new()",
]
BACKFILL = "UPDATE market_data SET price__new = price WHERE price__new IS NULL"
CONTRACT = [
    "ALTER TABLE market_data DROP COLUMN price",
    "ALTER TABLE market_data RENAME COLUMN price__new TO price",
    "DROP TRIGGER market_data_price__new ON market_data",
    "DROP FUNCTION market_data_price__new()",
]
TYPE_CHANGE = ["ALTER TABLE market_data ALTER COLUMN price TYPE double precision"]
WINDOW = (demo.START, demo.START + timedelta(days=1))
INSERT = sa.text(
    "INSERT INTO market_data (instrument_id, timestamp, price, created_at, updated_at) "
    "VALUES (:i, :t, :p, now(), now())"
)


def _seeded(pg_database: str) -> sa.URL:
    from conftest import pg_url_for

    url = sa.make_url(pg_url_for(pg_database))
    migrate.upgrade(MIGRATIONS, url, "0000")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=60, alerts=30)
        conn.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('market_data', 'id'), "
            "(SELECT max(id) FROM market_data))"
        )
    engine.dispose()
    migrate.upgrade(MIGRATIONS, url, "0002")
    return url


class Runner:
    """A schemagen-like run on its own connection: the runner lock for the whole run (while
    it is held the guard sees a migration running), the swap in one short transaction."""

    def __init__(self, url: sa.URL, swap: str) -> None:
        self.url, self.swap = url, swap
        self.phase = "before"

    def run(self) -> None:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({KEY_CLASS}, 1)")
                conn.commit()
                self.phase = "during"
                time.sleep(0.3)  # a runner's start: checkouts meet its lock
                if self.swap == "contract":
                    for sql in EXPAND:
                        conn.exec_driver_sql(sql)
                    conn.commit()
                    time.sleep(0.2)  # clients write through the trigger
                    conn.exec_driver_sql(BACKFILL)
                    conn.commit()
                conn.exec_driver_sql("SET lock_timeout = '2s'")
                for sql in CONTRACT if self.swap == "contract" else TYPE_CHANGE:
                    conn.exec_driver_sql(sql)
                conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'swapped'")
                conn.commit()
                time.sleep(0.3)  # the runner's end: after the swap, still locked
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({KEY_CLASS}, 1)")
                conn.commit()
                self.phase = "after"
        finally:
            engine.dispose()


async def _read(conn: AsyncConnection, n: int) -> None:
    def unit(c: sa.Connection) -> None:
        queries.ticks_in_window(c, n % 6 + 1, *WINDOW, live_only=False)
        queries.latest_ticks(c, live_only=False)

    await conn.run_sync(unit)


async def _write(conn: AsyncConnection, n: int) -> None:
    await conn.execute(INSERT, {"i": n % 6 + 1, "t": demo.START, "p": 100 + n / 8})


async def _clients(engine: AsyncEngine, runner: Runner) -> tuple[Counter[str], list[str]]:
    """Run the clients until the runner is done and 0.3 s after; checkouts by kind and phase,
    and the failures."""
    done = threading.Event()
    units: Counter[str] = Counter()
    failures: list[str] = []

    async def unit(conn: AsyncConnection, work: Any, n: int, kind: str) -> None:
        phase = runner.phase
        try:
            await work(conn, n)
            await conn.commit()
            units[f"{kind} {phase}"] += 1
        except sa.exc.DBAPIError as exc:
            failures.append(f"{kind} {phase}: {str(exc).splitlines()[0]}")
            await conn.rollback()

    async def held(work: Any, kind: str) -> None:
        async with engine.connect() as conn:  # checked out before the run, held across it
            n = 0
            while not done.is_set():
                await unit(conn, work, n, kind)
                n += 1
                await asyncio.sleep(0.005)

    async def fresh(work: Any, kind: str) -> None:
        n = 0
        while not done.is_set():
            async with engine.connect() as conn:  # one checkout per unit of work
                await unit(conn, work, n, kind)
            n += 1
            await asyncio.sleep(0.005)

    async def run_runner() -> None:
        await asyncio.sleep(0.3)  # the clients' "before"
        await asyncio.to_thread(runner.run)
        await asyncio.sleep(0.3)  # their "after"
        done.set()

    await asyncio.gather(
        held(_read, "held read"),
        held(_write, "held write"),
        fresh(_read, "fresh read"),
        fresh(_write, "fresh write"),
        run_runner(),
    )
    return units, failures


def _run(pg_database: str, swap: str, guard: bool) -> tuple[Counter[str], list[str]]:
    from conftest import pg_url_for

    runner = Runner(_seeded(pg_database), swap)

    async def go() -> tuple[Counter[str], list[str]]:
        engine = create_app_engine(
            pg_url_for(pg_database, "asyncpg"), pool_size=4, max_overflow=0, schema_guard=guard
        )
        try:
            for _ in range(4):  # every pooled connection caches its statements at 0002
                async with engine.connect() as conn:
                    await _read(conn, 0)
            return await _clients(engine, runner)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.mark.parametrize("swap", ["type", "contract"])
def test_no_application_query_fails_across_a_swap(pg_database: str, swap: str) -> None:
    units, failures = _run(pg_database, swap, guard=True)
    assert failures == []
    for kind in ("held read", "held write", "fresh read", "fresh write"):
        for phase in ("before", "during", "after"):
            assert units[f"{kind} {phase}"] > 0, (kind, phase, units)


def test_without_the_guard_the_swap_fails_queries(pg_database: str) -> None:
    _, failures = _run(pg_database, "contract", guard=False)
    assert failures and all("InvalidCachedStatementError" in f for f in failures), failures


async def _swap_between(
    engine: AsyncEngine, url: sa.URL, statements: list[str], work: Any
) -> list[Any]:
    """Begin a transaction (the guard reads the revision), commit a swap on another
    connection, then run ``work`` on the held transaction."""
    runner = sa.create_engine(url)
    try:
        async with engine.connect() as conn:
            await _read(conn, 0)
            await conn.commit()
            await conn.begin()
            with runner.begin() as other:
                for sql in statements:
                    other.exec_driver_sql(sql)
            return await work(conn)
    finally:
        runner.dispose()


@pytest.mark.parametrize("swap", ["type", "contract"])
def test_a_first_statement_after_a_swap_runs_again(pg_database: str, swap: str) -> None:
    """The swap commits after the transaction's guard read, before its first statement: the
    statement fails on its stale plan, and runs again once in a fresh transaction."""
    from conftest import pg_url_for

    url = _seeded(pg_database)
    if swap == "contract":
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for sql in [*EXPAND, BACKFILL]:
                conn.exec_driver_sql(sql)
        engine.dispose()
    statements = CONTRACT if swap == "contract" else TYPE_CHANGE

    async def work(conn: AsyncConnection) -> list[Any]:
        rows = await conn.run_sync(queries.latest_ticks, live_only=False)
        await conn.commit()
        return rows

    async def go() -> list[Any]:
        engine = create_app_engine(pg_url_for(pg_database, "asyncpg"), pool_size=1)
        try:
            return await _swap_between(engine, url, statements, work)
        finally:
            await engine.dispose()

    assert len(asyncio.run(go())) == 6


def test_a_later_statement_is_never_run_again(pg_database: str) -> None:
    """After a transaction did work, a stale plan fails it (PostgreSQL aborted it; running
    the statement again would lose what came before): the residual case of docs/pools.md."""
    from conftest import pg_url_for

    url = _seeded(pg_database)

    async def work(conn: AsyncConnection) -> None:
        await conn.exec_driver_sql("SELECT count(*) FROM instruments")
        await conn.run_sync(queries.latest_ticks, live_only=False)

    async def go() -> None:
        engine = create_app_engine(pg_url_for(pg_database, "asyncpg"), pool_size=1)
        try:
            await _swap_between(engine, url, TYPE_CHANGE, work)
        finally:
            await engine.dispose()

    with pytest.raises(sa.exc.DBAPIError, match="InvalidCachedStatementError"):
        asyncio.run(go())
