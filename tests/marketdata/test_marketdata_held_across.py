"""A pooled connection checked out before a migration starts and held across it (a long
request, a worker's session), on PostgreSQL with asyncpg.

The schema guard (marketdata/schema_guard.py) reads the revision at the start of every
transaction, not only at checkout: a connection checked out before the runner took its lock and
held across 0003's type change starts its next transaction with its prepared statements
invalidated, so nothing fails (it failed once with InvalidCachedStatementError when the guard
acted at checkout only). 0004 (a new column, and the queries' deleted_at detection that locks
the table before asking the catalogue) passes, up and down (docs/pools.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from marketdata_support import catalogue
from support import ROOT

from generator import db, migrate
from marketdata import demo
from marketdata.db import create_app_engine

MIGRATIONS = ROOT / "generated_migrations"
pytestmark = pytest.mark.db


def _seeded(db_url: str, at: str) -> sa.URL:
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, "0000")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=60, alerts=30)
    engine.dispose()
    migrate.upgrade(MIGRATIONS, url, at)
    return url


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0002", "0003"),
        ("0003", "0002"),  # the downgrade's type change back to decimal
        ("0003", "0004"),
        ("0004", "0003"),  # the downgrade drops deleted_at under the held connection
    ],
)
def test_a_connection_held_across_a_migration(pg_database: str, start: str, end: str) -> None:
    from conftest import pg_url_for

    url = _seeded(pg_url_for(pg_database), start)

    async def go() -> list[Any]:
        engine = create_app_engine(pg_url_for(pg_database, "asyncpg"), pool_size=1)
        results = []
        try:
            async with engine.connect() as conn:
                results.append(await conn.run_sync(catalogue, live_only=False))
                await conn.commit()
                run = migrate.upgrade if end > start else migrate.downgrade
                await asyncio.to_thread(run, MIGRATIONS, url, end)
                results.append(await conn.run_sync(catalogue, live_only=False))
        finally:
            await engine.dispose()
        return results

    before, after = asyncio.run(go())
    assert before == after
