"""Async engine and session factory of the application."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

# The SQLite connection setup is the migration tool's (the application depends on the tool).
from generator.sqlite import SQLITE_CACHE_KIB as SQLITE_CACHE_KIB
from generator.sqlite import install_sqlite_listeners as install_sqlite_listeners
from marketdata.schema_guard import install_schema_guard

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///marketdata.db"

# Driver to use for each (backend, driver) form accepted; "" is a URL without a driver.
# Sync forms map to their async counterpart so the app can share the migration tool's URL.
_ASYNC_DRIVERS = {
    ("sqlite", ""): "aiosqlite",
    ("sqlite", "pysqlite"): "aiosqlite",
    ("sqlite", "aiosqlite"): "aiosqlite",
    ("postgresql", ""): "asyncpg",
    ("postgresql", "psycopg"): "asyncpg",
    ("postgresql", "psycopg2"): "asyncpg",
    ("postgresql", "asyncpg"): "asyncpg",
}


def to_async_url(url: str | URL) -> URL:
    """The async-driver form of a SQLite or PostgreSQL URL (sync or async)."""
    url = make_url(url)
    backend, _, driver = url.drivername.partition("+")
    async_driver = _ASYNC_DRIVERS.get((backend, driver))
    if async_driver is None:
        raise ValueError(
            f"unsupported database URL {url!r}: expected sqlite[+pysqlite|+aiosqlite] or "
            "postgresql[+psycopg|+psycopg2|+asyncpg]"
        )
    return url.set(drivername=f"{backend}+{async_driver}")


def create_app_engine(
    url: str | URL, *, schema_guard: bool = True, multirow_inserts: bool = True, **kwargs: Any
) -> AsyncEngine:
    """An async engine for ``url``; keyword arguments go to ``create_async_engine``.

    On SQLite, foreign keys are enforced and transactions really begin at BEGIN (so DDL,
    SAVEPOINTs and rollbacks behave as on PostgreSQL). On PostgreSQL the pool survives a
    migration run by another process (``schema_guard``, see marketdata.schema_guard), and
    an INSERT of many rows (``conn.execute(insert(t), rows)``) is sent as multi-row
    ``INSERT ... VALUES (...), (...)`` statements of up to ``insertmanyvalues_page_size``
    (1,000) rows each (``multirow_inserts``, SQLAlchemy's "insertmanyvalues" without
    RETURNING) instead of one executor run per row: PostgreSQL prepares a table's CHECK
    constraints once per statement, so per-row statements paid the six price range checks on
    every tick (40k against 155k rows/s measured, docs/performance.md); a multi-row statement
    pays them once per batch.
    """
    url = to_async_url(url)
    if url.get_backend_name() != "sqlite":
        engine = create_async_engine(url, **kwargs)
        if multirow_inserts:
            # a per-engine dialect instance: this engine only
            engine.sync_engine.dialect.use_insertmanyvalues_wo_returning = True
        if schema_guard:
            install_schema_guard(engine)
        return engine

    # The BEGIN listener only sees execution options, so an engine-wide AUTOCOMMIT given as
    # ``isolation_level=`` is moved there (the dialect-level parameter would be invisible).
    if kwargs.get("isolation_level") == "AUTOCOMMIT":
        del kwargs["isolation_level"]
        kwargs["execution_options"] = {
            **kwargs.get("execution_options", {}),
            "isolation_level": "AUTOCOMMIT",
        }
    engine = create_async_engine(url, **kwargs)
    install_sqlite_listeners(engine.sync_engine)
    return engine


_default_engine: AsyncEngine | None = None


def get_default_engine() -> AsyncEngine:
    """The process-wide engine for ``$DATABASE_URL``, created on first use."""
    global _default_engine
    if _default_engine is None:
        _default_engine = create_app_engine(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    return _default_engine


async def dispose_default_engine() -> None:
    """Close the default engine's connections (at shutdown); the next use makes a new one."""
    global _default_engine
    if _default_engine is not None:
        engine, _default_engine = _default_engine, None
        await engine.dispose()


@asynccontextmanager
async def get_db_session(engine: AsyncEngine | None = None) -> AsyncIterator[AsyncSession]:
    """A session that commits when the block succeeds and rolls back when it raises.

    ``engine`` defaults to :func:`get_default_engine`. Objects stay loaded after the commit
    (``expire_on_commit=False``) so they can be used once the session is closed.
    """
    session = AsyncSession(engine or get_default_engine(), expire_on_commit=False)
    try:
        yield session
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    finally:
        await session.close()
