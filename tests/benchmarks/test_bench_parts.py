"""The benchmark's parts: the same rows from every path, calculations that agree, plan
parsing, and the per-query time limit."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from benchmarks import calc, cli, data, insert, query
from benchmarks.databases import MIGRATIONS, BenchDatabase
from generator import db, migrate

TICKS, ALERTS = 60, 36


def _stored(url: str, table: str) -> list[tuple[object, ...]]:
    """The rows as stored (raw driver values), without id and the audit columns."""
    columns = ", ".join(f'"{c}"' for c in data.columns_for(table) if c not in data.AUDIT_COLUMNS)
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            return [
                tuple(r) for r in conn.exec_driver_sql(f"SELECT {columns} FROM {table} ORDER BY id")
            ]
    finally:
        engine.dispose()


@pytest.mark.db
@pytest.mark.parametrize("revision", ["baseline", "head"])
def test_every_path_writes_the_same_rows(db_url: str, revision: str) -> None:
    """Rows 1..n loaded in SQL, then the same rows through the Core path and the raw driver:
    three identical thirds, at both revisions, on both dialects."""
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, data.REVISIONS[revision])
    engine = db.make_engine(url)
    with engine.begin() as conn:
        data.reference_rows(conn)
        data.load_ticks(conn, TICKS, revision)
        data.load_alerts(conn, ALERTS, revision)
        for table in ("market_data", "alert_logs"):
            data.reset_identity(conn, table)
    as_decimal = revision == "baseline"
    with engine.begin() as conn:
        for table, n in (("market_data", TICKS), ("alert_logs", ALERTS)):
            conn.execute(
                sa.insert(data.TABLES[revision][table]),
                data.rows_for(table, 1, n, as_decimal=as_decimal),
            )
    engine.dispose()

    now = datetime.now(UTC)
    bench = BenchDatabase(url.get_backend_name(), revision, "filled", url)
    raw_rows = {
        table: data.driver_tuples(
            table, data.rows_for(table, 1, n, as_decimal=as_decimal), bench.dialect, now
        )
        for table, n in (("market_data", TICKS), ("alert_logs", ALERTS))
    }
    if bench.dialect == "sqlite":
        raw = sqlite3.connect(bench.sqlite_path, isolation_level=None)
        for table, rows in raw_rows.items():
            insert._sqlite_round(raw, insert._insert_sql(table, "sqlite"), [rows])
        raw.close()
    else:

        async def go() -> None:
            pg = await asyncpg.connect(bench.asyncpg_dsn())
            try:
                for table, rows in raw_rows.items():
                    sql = insert._insert_sql(table, "postgresql")
                    await insert._asyncpg_round(pg, table, sql, [rows], copy=False)
            finally:
                await pg.close()

        asyncio.run(go())

    for table, n in (("market_data", TICKS), ("alert_logs", ALERTS)):
        stored = _stored(db_url, table)
        assert len(stored) == 3 * n
        assert stored[:n] == stored[n : 2 * n] == stored[2 * n :], table
    ticks = _stored(db_url, "market_data")
    assert {r[0] for r in ticks} == set(range(1, 7))  # every instrument
    assert any(r[3] is None for r in ticks) and any(r[3] is not None for r in ticks)


def test_the_three_calculations_agree() -> None:
    rows = [(n % 3 + 1, Decimal(data.price_units(n)).scaleb(-4), n % 7 + 1) for n in range(1, 301)]
    decimal = calc.compute_decimal(rows, 20)
    as_float = [(i, float(p), v) for i, p, v in rows]
    assert calc.worst_difference(decimal, calc.compute_float(as_float, 20)) < 1e-12
    assert calc.worst_difference(decimal, calc.compute_numpy(as_float, 20)) < 1e-12
    # A hand-checked case: prices 1, 2, 3, 4 with volumes 1, 1, 1, 3; window 2.
    tiny = [(1, 1.0, 1), (1, 2.0, 1), (1, 3.0, 1), (1, 4.0, 3)]
    vwap, mean, returns, moving, count = calc.compute_float(tiny, 2)[1]
    assert (vwap, mean, moving, count) == (3.0, 2.5, 3.5, 3)
    assert returns == pytest.approx(1.0 + 0.5 + 1 / 3)
    assert calc.compute_numpy(tiny, 2)[1] == pytest.approx((vwap, mean, returns, moving, count))
    # Fewer ticks than the window: the average of what there is.
    assert calc.compute_float(tiny[:1], 20)[1][3] == 1.0


def test_plan_summaries() -> None:
    sqlite_plan = [
        "SCAN md USING INDEX ix_market_data_instrument_price",
        "CORRELATED SCALAR SUBQUERY 1",
        "  SCAN last USING COVERING INDEX ix_market_data_latest",
        "  USE TEMP B-TREE FOR RIGHT PART OF ORDER BY",
        "SEARCH instruments USING INTEGER PRIMARY KEY (rowid=?)",
        "SCAN alert_logs",
    ]
    assert query.plan_summary(sqlite_plan, "sqlite") == {
        "indexes": ["(rowid)", "ix_market_data_instrument_price", "ix_market_data_latest"],
        "full_scans": ["alert_logs"],
    }
    pg_plan = [
        "Nested Loop  (cost=0.13..1020486.10 rows=5000 width=43)",
        "  ->  Index Scan using pk_instruments on instruments  (cost=0.13..12.22 rows=6 width=9)",
        "        ->  Seq Scan on market_data md  (cost=0.00..1020011.37 rows=5000 width=38)",
        "  ->  Index Scan Backward using ix_market_data_timestamp on market_data last  (cost=1)",
        "  ->  Index Only Scan using ix_alert_logs_status on alert_logs  (cost=1)",
        "  ->  Bitmap Index Scan on ix_alert_logs_instrument  (cost=1)",
    ]
    assert query.plan_summary(pg_plan, "postgresql") == {
        "indexes": [
            "ix_alert_logs_instrument",
            "ix_alert_logs_status",
            "ix_market_data_timestamp",
            "pk_instruments",
        ],
        "full_scans": ["market_data"],
    }


SLOW = {
    "sqlite": "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s) "
    "SELECT max(n) FROM s",
    "postgresql": "SELECT pg_sleep(5)",
}


@pytest.mark.db
def test_a_query_over_the_time_limit_is_stopped(db_url: str, dialect: str, tmp_path: Path) -> None:
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, "head")
    session = query._Session(BenchDatabase(dialect, "head", "filled", url), timeout_s=0.2)
    try:
        assert session.live_only is True
        with pytest.raises(query.QueryTimeout):
            session.run(lambda: session.conn.exec_driver_sql(SLOW[dialect]).all())
        # The connection is usable afterwards.
        assert session.run(lambda: session.conn.exec_driver_sql("SELECT 1").scalar()) == 1
    finally:
        session.close()


@pytest.mark.db
def test_settle_disk_waits_for_writes_to_stop(tmp_path: Path) -> None:
    """settle_disk returns once the disk has had no write for its quiet time: not before
    (a writer keeps it busy), and soon after the writer stops."""
    import os
    import threading
    import time

    from benchmarks.databases import _disk_activity, postgres_admin_url, settle_disk

    if _disk_activity() is None:
        pytest.skip("no /proc/diskstats (not Linux): settle_disk only checkpoints and syncs")
    stop = threading.Event()

    def writer() -> None:  # a file written and synced every 50 ms for 1.5 s
        path = tmp_path / "busy"
        started = time.perf_counter()
        while not stop.is_set() and time.perf_counter() - started < 1.5:
            with open(path, "wb") as f:
                f.write(os.urandom(1 << 16))
                f.flush()
                os.fsync(f.fileno())
            time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        waited = settle_disk(postgres_admin_url(None), quiet_s=0.5, most_s=30)
    finally:
        stop.set()
        thread.join()
    assert 1.5 + 0.5 <= waited < 30, waited  # the writes, then half a second of quiet


def test_a_missing_workdir_is_an_error_naming_it_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as raised:
        cli.main(["--quick", "--dialect", "sqlite", "--suite", "calc", "--workdir", str(missing)])
    assert str(raised.value) == f"error: --workdir {missing}: no such directory"
    assert not missing.exists()
