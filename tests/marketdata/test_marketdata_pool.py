"""A connection pool opened before a migration keeps serving queries after it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from support import ROOT

from generator import db, migrate
from marketdata import demo
from marketdata.db import create_app_engine

MIGRATIONS = ROOT / "generated_migrations"
POOL = 3
QUERIES = [
    "SELECT id, price, bid, ask FROM market_data WHERE instrument_id = :i ORDER BY id LIMIT 5",
    "SELECT id, trigger_value, threshold_value, status FROM alert_logs "
    "WHERE instrument_id = :i ORDER BY id LIMIT 5",
]
pytestmark = pytest.mark.db


async def _on_every_connection(engine: AsyncEngine) -> list[list[tuple[Any, ...]]]:
    """Run the queries on POOL connections held at once, so each pooled connection is used."""
    conns = [await engine.connect() for _ in range(POOL)]
    try:
        out = []
        for conn in conns:
            for sql in QUERIES:
                rows = (await conn.execute(sa.text(sql), {"i": 1})).all()
                out.append([tuple(r) for r in rows])
        return out
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


def _norm(results: list[list[tuple[Any, ...]]]) -> list[list[tuple[Any, ...]]]:
    return [
        [
            tuple(f"{v:.4f}" if isinstance(v, float) or hasattr(v, "quantize") else v for v in r)
            for r in rows
        ]
        for rows in results
    ]


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


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004"])
def test_a_pool_opened_before_each_migration_serves_queries_after_it(
    db_url: str, async_db_url: str, revision: str
) -> None:
    url = _seeded(db_url)
    previous = f"{int(revision) - 1:04d}"
    migrate.upgrade(MIGRATIONS, url, previous)

    async def go() -> tuple[list[list[tuple[Any, ...]]], list[list[tuple[Any, ...]]]]:
        engine = create_app_engine(async_db_url, pool_size=POOL)  # guarded by default
        before = await _on_every_connection(engine)
        await asyncio.to_thread(migrate.upgrade, MIGRATIONS, url, revision)
        after = await _on_every_connection(engine)  # must not raise
        again = await _on_every_connection(engine)
        await engine.dispose()
        assert _norm(after) == _norm(again)
        return before, after

    before, after = asyncio.run(go())
    assert _norm(before) == _norm(after)
