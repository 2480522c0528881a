"""A connection pool opened before a migration keeps serving queries after it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from marketdata_support import catalogue
from sqlalchemy.ext.asyncio import AsyncEngine
from support import ROOT

from generator import db, migrate
from marketdata import demo
from marketdata.db import create_app_engine

MIGRATIONS = ROOT / "generated_migrations"
POOL = 3
pytestmark = pytest.mark.db


async def _on_every_connection(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Run the query catalogue on POOL connections held at once, so each one is used.

    The catalogue reads prices as they are (no live_only filter), so results compare across
    revisions; prices come back formatted to 4 places, as the API serves them.
    """
    conns = [await engine.connect() for _ in range(POOL)]
    try:
        return [await conn.run_sync(catalogue, live_only=False) for conn in conns]
    finally:
        for conn in conns:
            await conn.close()


def _seeded(db_url: str) -> sa.URL:
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, "0000")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=60, alerts=30)
    engine.dispose()
    return url


def test_without_the_guard_asyncpg_fails_once_per_pooled_connection(pg_database: str) -> None:
    from conftest import pg_url_for

    url = _seeded(pg_url_for(pg_database))
    migrate.upgrade(MIGRATIONS, url, "0002")

    async def go() -> int:
        engine = create_app_engine(
            pg_url_for(pg_database, "asyncpg"), pool_size=POOL, schema_guard=False
        )
        await _on_every_connection(engine)
        await asyncio.to_thread(migrate.upgrade, MIGRATIONS, url, "0003")
        failures = 0
        try:
            await _on_every_connection(engine)
        except sa.exc.DBAPIError as exc:
            assert "InvalidCachedStatementError" in str(exc)
            failures += 1
        await _on_every_connection(engine)  # the dialect has invalidated its caches by now
        await engine.dispose()
        return failures

    assert asyncio.run(go()) == 1


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004", "0005"])
def test_a_pool_opened_before_each_migration_serves_queries_after_it(
    db_url: str, async_db_url: str, revision: str
) -> None:
    url = _seeded(db_url)
    previous = f"{int(revision) - 1:04d}"
    migrate.upgrade(MIGRATIONS, url, previous)

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        engine = create_app_engine(async_db_url, pool_size=POOL)  # guarded by default
        before = await _on_every_connection(engine)
        await asyncio.to_thread(migrate.upgrade, MIGRATIONS, url, revision)
        after = await _on_every_connection(engine)  # must not raise
        again = await _on_every_connection(engine)
        await engine.dispose()
        assert after == again
        return before, after

    before, after = asyncio.run(go())
    assert before == after


def test_a_pool_opened_before_the_type_change_bulk_ingests_after_it(pg_database: str) -> None:
    """asyncpg caches column types for COPY per connection: after 0003 turned the prices
    into float8, a pooled connection's next COPY sent numeric-encoded data ("incorrect
    binary data format"). The guard reloads asyncpg's schema state with the prepared
    statements when the revision moves; the checkout read leaves no transaction open."""
    from conftest import pg_url_for

    from marketdata import ingest, insert_ticks

    url = _seeded(pg_url_for(pg_database))
    migrate.upgrade(MIGRATIONS, url, "0002")
    engine = db.make_engine(url)
    with engine.begin() as conn:  # the demo rows carry their ids
        conn.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('market_data', 'id'), "
            "(SELECT max(id) FROM market_data))"
        )
    engine.dispose()
    tick = {
        "instrument_id": 1,
        "timestamp": demo.START,
        "price": 101.25,
        "bid": 101.0,
        "ask": 101.5,
        "volume": 10,
    }

    async def go() -> int:
        engine = create_app_engine(pg_url_for(pg_database, "asyncpg"), pool_size=POOL)
        conns = [await engine.connect() for _ in range(POOL)]
        for conn in conns:  # each connection copies into market_data at 0002 (numeric)
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None and not raw.is_in_transaction()
            await conn.exec_driver_sql("SELECT 1")
            # the column list insert_ticks copies: asyncpg caches its introspection per list
            columns = ingest.TICKS.targets
            record = {"instrument_id": 1, "timestamp": demo.START, "price": Decimal("100")}
            record |= {"created_at": demo.START, "updated_at": demo.START}
            await raw.copy_records_to_table(
                "market_data",
                records=[tuple(record.get(c) for c in columns)],
                columns=columns,
            )
            await conn.rollback()
            await conn.close()
        await asyncio.to_thread(migrate.upgrade, MIGRATIONS, url, "head")
        inserted = 0
        conns = [await engine.connect() for _ in range(POOL)]
        for conn in conns:
            result = await insert_ticks(conn, [tick])
            await conn.commit()
            inserted += result.inserted
            await conn.close()
        await engine.dispose()
        return inserted

    assert asyncio.run(go()) == POOL


def test_a_query_that_waited_for_a_running_migration_runs_after_it(pg_database: str) -> None:
    """The race a checkout-time guard alone loses: the connection is checked out while the
    migration's DDL holds its lock (the revision still reads 0002), its query waits for the
    lock, and the DDL commits. Its cached statement plan is stale by then; the guard sees the
    runner's lock at checkout and starts the connection with no prepared statement."""
    from conftest import pg_url_for

    from generator.guard import KEY_CLASS

    url = _seeded(pg_url_for(pg_database))
    migrate.upgrade(MIGRATIONS, url, "0002")
    runner_engine = sa.create_engine(url)

    async def go() -> list[dict[str, Any]]:
        engine = create_app_engine(pg_url_for(pg_database, "asyncpg"), pool_size=POOL)
        await _on_every_connection(engine)  # every statement prepared and cached at 0002
        runner = runner_engine.connect()
        try:
            # what a schemagen runner does: its session lock, then the type change, open
            runner.exec_driver_sql(f"SELECT pg_advisory_lock({KEY_CLASS}, 1)")
            runner.exec_driver_sql(
                "ALTER TABLE market_data ALTER COLUMN price TYPE double precision"
            )
            runner.exec_driver_sql("UPDATE alembic_version SET version_num = '0003'")
            waiting = asyncio.create_task(_on_every_connection(engine))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # the queries wait for the DDL's lock
            await asyncio.to_thread(runner.commit)
            after = await waiting  # must not raise InvalidCachedStatementError
        finally:
            runner.close()
            await engine.dispose()
        return after

    after = asyncio.run(go())
    runner_engine.dispose()
    assert after and all(result == after[0] for result in after)
