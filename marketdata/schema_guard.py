"""Keep pooled connections correct across a migration run by another process.

asyncpg caches prepared statements per connection (SQLAlchemy's adapter keeps up to 100).
After ``ALTER COLUMN ... TYPE`` their plans are stale, and the first use on each pooled
connection fails with ``InvalidCachedStatementError`` ("cached statement plan is invalid due
to a database schema or configuration change"); psycopg's automatic prepare fails the same
way. The guard reads ``alembic_version`` when a connection is checked out of the pool; when
the revision differs from the one that connection last saw, the dialect's prepared-statement
caches are invalidated (and asyncpg's column-type cache, which its COPY encodes by, is
reloaded) before any statement runs, so nothing fails. The same read asks whether a
schemagen runner holds its lock (a migration is running); while one does, every checkout
invalidates, so no stale plan can meet a DDL that commits while its query waits. The read runs
in autocommit: a connection leaves the pool with no transaction open. The cost is one small
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

from generator.guard import KEY_CLASS

log = logging.getLogger(__name__)
_KEY = "schema_guard_revision"
_MISSING = "(no alembic_version)"
# What the guard records while a schemagen runner holds its lock on this database: never a
# revision, so the first checkout after the run sees the revision move and invalidates again.
_MIGRATING = "(migration running)"
# One round trip: the revision, and whether a schemagen runner holds its advisory lock here.
_STATE_SQL = (
    "SELECT v.version_num, EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' "
    f"AND l.classid = {KEY_CLASS} AND l.granted AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database())) "
    "FROM (SELECT 1) AS one LEFT JOIN alembic_version AS v ON true"
)


def _read_revision(dbapi_connection: Any) -> str:
    """The revision, or :data:`_MIGRATING` while a migration runner holds its lock.

    While a migration runs, a statement prepared before its DDL can be run after it commits
    (the connection was checked out before the commit, its query waited for the DDL's lock):
    asyncpg then fails with InvalidCachedStatementError. So while a runner holds its lock,
    every checkout starts with no prepared statement: a statement prepared inside the
    checkout's transaction holds its table's lock until the transaction ends, and no DDL can
    change the table under it."""
    # In autocommit, so the read opens no transaction: the connection leaves the pool idle,
    # as its user expects (a raw-driver BEGIN, a COPY, SET LOCAL all start from there).
    before = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(_STATE_SQL)
        row = cursor.fetchone()
        if row and row[1]:
            return _MIGRATING
        return str(row[0]) if row and row[0] is not None else _MISSING
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
        if revision == _MIGRATING or (seen is not None and seen != revision):
            log.info("schema revision %s -> %s: invalidating prepared statements", seen, revision)
            # SQLAlchemy's asyncpg dialect re-prepares every cached statement older than this
            # mark (the same call it makes itself after an InvalidCachedStatementError).
            invalidate = getattr(dialect, "_invalidate_schema_cache", None)
            if invalidate is not None:
                invalidate()
            _reload_driver_types(dbapi_connection)
        record.info[_KEY] = revision
