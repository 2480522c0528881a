"""Keep pooled connections correct across a migration run by another process.

asyncpg caches prepared statements per connection (SQLAlchemy's adapter keeps up to 100).
After ``ALTER COLUMN ... TYPE``, or a contract that drops a column and renames another into its
place, their plans are stale, and the next use fails with ``InvalidCachedStatementError``
("cached statement plan is invalid due to a database schema or configuration change");
PostgreSQL aborts the transaction it ran in, so the statement cannot simply be run again
there. psycopg's automatic prepare fails the same way. The guard has two parts:

1. **At the start of every transaction** (SQLAlchemy's ``begin`` event, so a connection held
   across a migration is covered, not only a fresh checkout) it reads ``alembic_version`` and
   whether a schemagen runner holds its lock, in one round trip, in autocommit (the read opens
   no transaction). When the revision differs from the one this connection saw last, or a
   runner is at work, the dialect's prepared-statement caches are invalidated (and asyncpg's
   column-type cache, which its COPY encodes by, is reloaded) before any statement runs: a
   statement prepared inside the transaction holds its table's lock until the transaction
   ends, so no DDL can change the table under it.
2. **The first statement of a transaction runs again once** (asyncpg only) when it fails with
   ``InvalidCachedStatementError``: the transaction the adapter opened for it has done nothing
   else, so it is rolled back, the statement prepared again and run in a new transaction, which
   is indistinguishable from running it once. This closes the window between the read of part 1
   and the statement (a swap committed in between). A statement after the first one of a
   transaction is never retried: the transaction has done work and PostgreSQL has aborted it.

What remains (docs/pools.md): a transaction that was already open, without having touched the
changed table, before a runner started, and that reaches the table only after the runner's
swap committed. Both parts cost nothing on SQLite, which re-prepares after a schema change by
itself: the guard is installed on PostgreSQL only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_cursor,
    AsyncAdapt_asyncpg_ss_cursor,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_only

from generator.guard import KEY_CLASS

log = logging.getLogger(__name__)
_KEY = "schema_guard_revision"
_MISSING = "(no alembic_version)"
# What the guard records while a schemagen runner holds its lock on this database: never a
# revision, so the first transaction after the run sees the revision move and invalidates again.
_MIGRATING = "(migration running)"
# One round trip: the revision, and whether a schemagen runner holds its advisory lock here.
_STATE_SQL = (
    "SELECT v.version_num, EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' "
    f"AND l.classid = {KEY_CLASS} AND l.granted AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database())) "
    "FROM (SELECT 1) AS one LEFT JOIN alembic_version AS v ON true"
)


def _read_revision(dbapi_connection: Any) -> str:
    """The revision, or :data:`_MIGRATING` while a migration runner holds its lock."""
    # In autocommit, so the read opens no transaction: the transaction the caller is about to
    # begin starts after it (a raw-driver BEGIN, a COPY, SET LOCAL all start from there).
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


def _invalidate(dialect: Dialect) -> None:
    # SQLAlchemy's asyncpg dialect re-prepares every cached statement older than this mark
    # (the same call it makes itself after an InvalidCachedStatementError).
    invalidate = getattr(dialect, "_invalidate_schema_cache", None)
    if invalidate is not None:
        invalidate()


class _RetryFirstStatement:
    """Runs a transaction's first statement again once after a stale cached plan."""

    __slots__ = ()
    _guard_dialect: Dialect

    async def _prepare_and_execute(self, operation: Any, parameters: Any) -> None:
        cursor: Any = self  # an AsyncAdapt_asyncpg_cursor (the class this is mixed into)
        adapt: Any = cursor._adapt_connection
        # Not in a transaction block on the server: this statement opens one (or runs in
        # autocommit), so nothing before it can be lost by rolling back.
        first = not adapt._connection.is_in_transaction()
        try:
            await super()._prepare_and_execute(operation, parameters)  # type: ignore[misc]
        except adapt.dbapi.InvalidCachedStatementError:
            if not first:
                raise
            log.info("stale cached plan on a transaction's first statement: running it again")
            if adapt._transaction is not None:
                await adapt._call_and_discard(adapt._transaction.rollback)
            _invalidate(self._guard_dialect)
            # newer than every cached statement: prepared again, asyncpg's types reloaded
            cursor._invalidate_schema_cache_asof = time.time()
            await super()._prepare_and_execute(operation, parameters)  # type: ignore[misc]


def _guarded_connection_class(dialect: Dialect) -> type[AsyncAdapt_asyncpg_connection]:
    """The adapter's connection class with cursors that retry a first statement (per engine:
    the retry invalidates that engine's dialect caches)."""

    class Cursor(_RetryFirstStatement, AsyncAdapt_asyncpg_cursor):
        __slots__ = ()
        _guard_dialect = dialect

    class ServerSideCursor(_RetryFirstStatement, AsyncAdapt_asyncpg_ss_cursor):
        __slots__ = ()
        _guard_dialect = dialect

    class GuardedConnection(AsyncAdapt_asyncpg_connection):
        __slots__ = ()
        _cursor_cls = Cursor
        _ss_cursor_cls = ServerSideCursor

    return GuardedConnection


def install_schema_guard(engine: AsyncEngine | Engine) -> None:
    """Invalidate prepared-statement caches when the schema revision has moved, at the start
    of every transaction; on asyncpg, also run a transaction's first statement again once when
    its cached plan turned out stale. Install it before the engine's first connection."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if sync_engine.dialect.name != "postgresql":
        return
    dialect = sync_engine.dialect

    if sync_engine.dialect.driver == "asyncpg":
        guarded = _guarded_connection_class(dialect)

        @event.listens_for(sync_engine, "connect")
        def _retrying(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            if type(dbapi_connection) is AsyncAdapt_asyncpg_connection:
                dbapi_connection.__class__ = guarded

    @event.listens_for(sync_engine, "begin")
    def _check(conn: Connection) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        revision = _read_revision(dbapi_connection)
        info = conn.connection.info  # the pool entry's: kept while the connection is pooled
        seen = info.get(_KEY)
        if revision == _MIGRATING or (seen is not None and seen != revision):
            log.info("schema revision %s -> %s: invalidating prepared statements", seen, revision)
            _invalidate(dialect)
            _reload_driver_types(dbapi_connection)
        info[_KEY] = revision
