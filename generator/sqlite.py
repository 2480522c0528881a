"""SQLite connection setup shared by the tool and any application that uses it: foreign keys
on, real transactions, a page cache sized for tables of millions of rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.pool import ConnectionPoolEntry

# SQLite's page cache per connection, in KiB. SQLite's default is 2,000 KiB (500 pages of
# 4 KiB): a query reading more table pages than that reads them all again from the OS on every
# execution. On a million ticks the market-data catalogue's `rule_alerts` reads about 500
# pages, right at that edge, and was up to 1.3x slower for one byte more per row; with this
# cache the page set stays in memory (docs/performance.md, notes). The cache fills only as
# pages are read, so a small database costs no more memory than before.
SQLITE_CACHE_KIB = 32_768


def install_sqlite_listeners(engine: Engine) -> None:
    """Foreign keys on, real transactions and a 32 MiB page cache (:data:`SQLITE_CACHE_KIB`),
    for any SQLite engine (the migration tool's and the application's)."""
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    # Stop the sqlite3 module's own transaction handling: it begins lazily, only before DML,
    # so DDL and SELECTs would otherwise run outside the transaction. _sqlite_on_begin
    # emits BEGIN instead.
    dbapi_connection.isolation_level = None
    # Foreign keys are off per connection by default and the pragma is a no-op inside a
    # transaction, so it is set here, once per new connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # negative: KiB, not pages
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        conn.exec_driver_sql("BEGIN")
