"""drop_column keep_data: the cost of the two ways to keep a dropped column's values, measured
on PostgreSQL and SQLite with 1M rows (docs/authoring.md, generator/ops/drop_column.py).

A: renamed aside in place (catalogue only; NOT NULL, default and its index dropped).
B: copied with the primary key into an archive table, then dropped (exact only while writes
   wait: LOCK TABLE ... IN SHARE MODE for the copy).

For each: the upgrade's wall time, how long writers are blocked (ACCESS EXCLUSIVE or SHARE
held), and the downgrade's wall time. Run: python -m benchmarks.experiments.drop_column_cost
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time

import psycopg

ROWS = int(os.environ.get("ROWS", "1000000"))
PG = os.environ.get("PG_DSN", "host=127.0.0.1 user=postgres dbname=postgres")


def _pg_setup(cur: psycopg.Cursor) -> None:
    cur.execute("DROP TABLE IF EXISTS t, archive")
    cur.execute("CREATE TABLE t (id bigint PRIMARY KEY, a integer NOT NULL DEFAULT 0, b text)")
    cur.execute(f"INSERT INTO t SELECT g, g % 1000, 'x' || g FROM generate_series(1, {ROWS}) g")
    cur.execute("CREATE INDEX ix_t_a ON t (a)")
    cur.execute("VACUUM ANALYZE t")


def _timed(conn: psycopg.Connection, *statements: str) -> float:
    start = time.perf_counter()
    with conn.transaction():
        for s in statements:
            conn.execute(s)
    return time.perf_counter() - start


def postgresql() -> None:
    with psycopg.connect(PG, autocommit=True) as conn:
        cur = conn.cursor()
        db = "drop_column_cost"
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute(f"CREATE DATABASE {db}")
    with psycopg.connect(PG.replace("dbname=postgres", f"dbname={db}"), autocommit=True) as conn:
        cur = conn.cursor()
        _pg_setup(cur)
        # A: the index is dropped CONCURRENTLY first (nobody blocked), then the catalogue.
        start = time.perf_counter()
        conn.execute("DROP INDEX CONCURRENTLY ix_t_a")
        index = time.perf_counter() - start
        up = _timed(
            conn,
            "ALTER TABLE t RENAME COLUMN a TO _dropped_0001_a",
            "ALTER TABLE t ALTER COLUMN _dropped_0001_a DROP NOT NULL, "
            "ALTER COLUMN _dropped_0001_a DROP DEFAULT",
        )
        down = _timed(
            conn,
            "UPDATE t SET _dropped_0001_a = 0 WHERE _dropped_0001_a IS NULL",
            "ALTER TABLE t RENAME COLUMN _dropped_0001_a TO a",
            "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0, ALTER COLUMN a SET NOT NULL",
        )
        start = time.perf_counter()
        conn.execute("CREATE INDEX CONCURRENTLY ix_t_a ON t (a)")
        reindex = time.perf_counter() - start
        print(
            f"postgresql A rename aside: upgrade writers blocked {up * 1000:.1f} ms "
            f"(ACCESS EXCLUSIVE, catalogue), index drop concurrently {index * 1000:.1f} ms "
            f"(nobody blocked); downgrade {down * 1000:.1f} ms under ACCESS EXCLUSIVE "
            f"(SET NOT NULL scans), index build concurrently {reindex * 1000:.0f} ms"
        )
        _pg_setup(cur)
        up = _timed(
            conn,
            "LOCK TABLE t IN SHARE MODE",
            "CREATE TABLE archive AS SELECT id, a FROM t",
            "ALTER TABLE archive ADD PRIMARY KEY (id)",
            "DROP INDEX ix_t_a",
            "ALTER TABLE t DROP COLUMN a",
        )
        down = _timed(
            conn,
            "ALTER TABLE t ADD COLUMN a integer DEFAULT 0",
            "UPDATE t SET a = archive.a FROM archive WHERE archive.id = t.id",
            "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
            "DROP TABLE archive",
        )
        size = cur.execute("SELECT pg_size_pretty(pg_total_relation_size('t'))").fetchone()
        print(
            f"postgresql B archive copy: upgrade writers blocked {up * 1000:.1f} ms (SHARE "
            f"for the copy, then ACCESS EXCLUSIVE); downgrade {down * 1000:.1f} ms (UPDATE of "
            f"every row: the table grows to {size[0] if size else '?'})"
        )
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")


def _sqlite_setup(path: str) -> sqlite3.Connection:
    if os.path.exists(path):
        os.unlink(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER NOT NULL DEFAULT 0, b TEXT)")
    conn.execute(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
        "INSERT INTO t SELECT n, n % 1000, 'x' || n FROM g",
        (ROWS,),
    )
    conn.execute("CREATE INDEX ix_t_a ON t (a)")
    return conn


def _sqlite_timed(conn: sqlite3.Connection, *statements: str) -> float:
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for s in statements:
        conn.execute(s)
    conn.execute("COMMIT")
    return time.perf_counter() - start


def sqlite() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.db")
        conn = _sqlite_setup(path)
        # A with a NOT NULL column: the rebuild batch mode does (copy into a new table).
        up = _sqlite_timed(
            conn,
            "DROP INDEX ix_t_a",
            "CREATE TABLE t_new (id INTEGER PRIMARY KEY, _dropped_0001_a INTEGER, b TEXT)",
            "INSERT INTO t_new SELECT id, a, b FROM t",
            "DROP TABLE t",
            "ALTER TABLE t_new RENAME TO t",
        )
        conn.close()
        conn = _sqlite_setup(path)
        conn.execute("DROP INDEX ix_t_a")
        conn.execute("CREATE TABLE t2 AS SELECT * FROM t")  # a nullable column, no default
        rename = _sqlite_timed(conn, "ALTER TABLE t2 RENAME COLUMN b TO _dropped_0001_b")
        conn.close()
        conn = _sqlite_setup(path)
        copy = _sqlite_timed(
            conn,
            "CREATE TABLE archive AS SELECT id, a FROM t",
            "DROP INDEX ix_t_a",
            "ALTER TABLE t DROP COLUMN a",
        )
        conn.close()
        print(
            f"sqlite A rename aside: {rename * 1000:.1f} ms for a nullable column without "
            f"default (RENAME COLUMN), {up * 1000:.0f} ms when NOT NULL or a default must go "
            f"(rebuild); B archive copy + DROP COLUMN: {copy * 1000:.0f} ms"
        )


if __name__ == "__main__":
    postgresql()
    sqlite()
