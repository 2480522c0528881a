"""Keep pooled connections correct across a migration run by another process.

asyncpg caches prepared statements per connection (SQLAlchemy's adapter keeps up to 100).
After ``ALTER COLUMN ... TYPE`` their plans are stale, and the first use on each pooled
connection fails with ``InvalidCachedStatementError`` ("cached statement plan is invalid due
to a database schema or configuration change"); psycopg's automatic prepare fails the same
way. The guard reads ``alembic_version`` when a connection is checked out of the pool; when
the revision differs from the one that connection last saw, the dialect's prepared-statement
caches are invalidated (and asyncpg's column-type cache, which its COPY encodes by, is
reloaded) before any statement runs, so nothing fails. The read runs in autocommit: a
connection leaves the pool with no transaction open. The cost is one small
query per checkout (measured in docs/pools.md). SQLite re-prepares on a schema change by
itself, so the guard is installed on PostgreSQL only.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import await_only

log = logging.getLogger(__name__)
_KEY = "schema_guard_revision"
_MISSING = "(no alembic_version)"


def _read_revision(dbapi_connection: Any) -> str:
    # In autocommit, so the read opens no transaction: the connection leaves the pool idle,
    # as its user expects (a raw-driver BEGIN, a COPY, SET LOCAL all start from there).
    before = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT version_num FROM alembic_version")
        row = cursor.fetchone()
        return str(row[0]) if row else _MISSING
    except Exception:  # no alembic_version table: an unmanaged database
        return _MISSING
    finally:
        cursor.close()
        dbapi_connection.autocommit = before


def _reload_driver_types(dbapi_connection: Any) -> None:
    """asyncpg also caches column types (its COPY encodes by them): reload them."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    reload = getattr(driver, "reload_schema_state", None)
    if reload is not None:
        await_only(reload())


def install_schema_guard(engine: AsyncEngine | Engine) -> None:
    """Invalidate prepared-statement caches when the schema revision has moved."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if sync_engine.dialect.name != "postgresql":
        return
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "checkout")
    def _check(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        revision = _read_revision(dbapi_connection)
        seen = record.info.get(_KEY)
        if seen is not None and seen != revision:
            log.info("schema revision %s -> %s: invalidating prepared statements", seen, revision)
            # SQLAlchemy's asyncpg dialect re-prepares every cached statement older than this
            # mark (the same call it makes itself after an InvalidCachedStatementError).
            invalidate = getattr(dialect, "_invalidate_schema_cache", None)
            if invalidate is not None:
                invalidate()
            _reload_driver_types(dbapi_connection)
        record.info[_KEY] = revision
