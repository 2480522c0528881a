"""Experiment behind change 0005: index variants of head's market_data and alert_logs on
copies of one pre-filled database (A: as 0004 specifies; B: plus (instrument_id, timestamp);
C: that index replacing ix_market_data_instrument_price; D: C with partial deleted_at
indexes; E: C without deleted_at indexes): raw-driver INSERT rate (20,000 rows, 1,000-row
batches, alternating rounds, medians) and the latency of the queries the change is about.

    python -m benchmarks.experiments.index_variants sqlite|postgresql [PREFILL]
"""

import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from benchmarks import data
from benchmarks.databases import Databases, analyse
from generator import migrate

dialect = sys.argv[1]
prefill = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
ROWS, BATCH, ROUNDS = 20_000, 1_000, 5
P = "" if dialect == "sqlite" else " CONCURRENTLY"
VARIANTS = {
    "A_head": [],
    "B_add_it": ["CREATE INDEX ix_md_it ON market_data (instrument_id, timestamp)"],
    "C_replace": [
        "CREATE INDEX ix_md_it ON market_data (instrument_id, timestamp)",
        "DROP INDEX ix_market_data_instrument_price",
    ],
    "D_replace_partial": [
        "CREATE INDEX ix_md_it ON market_data (instrument_id, timestamp)",
        "DROP INDEX ix_market_data_instrument_price",
        "DROP INDEX ix_market_data_deleted_at",
        "CREATE INDEX ix_market_data_deleted_at ON market_data (deleted_at) WHERE deleted_at IS NOT NULL",
        "DROP INDEX ix_alert_logs_deleted_at",
        "CREATE INDEX ix_alert_logs_deleted_at ON alert_logs (deleted_at) WHERE deleted_at IS NOT NULL",
    ],
    "E_no_deleted_idx": [
        "CREATE INDEX ix_md_it ON market_data (instrument_id, timestamp)",
        "DROP INDEX ix_market_data_instrument_price",
        "DROP INDEX ix_market_data_deleted_at",
        "DROP INDEX ix_alert_logs_deleted_at",
    ],
}
dbs = Databases(dialect, "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def say(t: str) -> None:
    print(t, file=sys.stderr, flush=True)


base = dbs._create("head", "empty")
migrate.upgrade(Path("generated_migrations"), base.url, "head")
with base.engine().begin() as c:
    data.reference_rows(c)
    data.load_ticks(c, prefill, "head")
    data.load_alerts(c, prefill // 2, "head")
    for t in ("market_data", "alert_logs"):
        data.reset_identity(c, t)
    if dialect == "postgresql":
        for t in ("market_data", "alert_logs"):
            c.exec_driver_sql(f"ALTER TABLE {t} SET (autovacuum_enabled=false)")
say("loaded")
benches = {}
for name, stmts in VARIANTS.items():
    b = dbs._clone(base, name)
    e = sa.create_engine(b.url, isolation_level="AUTOCOMMIT")
    with e.connect() as c:
        for s in stmts:
            c.exec_driver_sql(s)
    e.dispose()
    analyse(b)
    benches[name] = b
say("variants built")
now = datetime.now(UTC)


def tuples(table: str, keep: int) -> list[list[tuple[Any, ...]]]:
    rows = data.rows_for(table, keep + 1, ROWS, as_decimal=False)
    return list(data.iter_batches(data.driver_tuples(table, rows, dialect, now), BATCH))


def sql(table: str) -> str:
    cols = data.columns_for(table)
    marks = ", ".join("?" for _ in cols) if dialect == "sqlite" else ", ".join("%s" for _ in cols)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"


sqlite_conns: dict[str, sqlite3.Connection] = {}
pg_conns: dict[str, psycopg.Connection[Any]] = {}
for n, b in benches.items():
    if dialect == "sqlite":
        sqlite_conns[n] = sqlite3.connect(b.sqlite_path, isolation_level=None)
    else:
        pg_conns[n] = psycopg.connect(b.asyncpg_dsn(), autocommit=True)


def round_(n: str, table: str, keep: int, batches: list[list[tuple[Any, ...]]]) -> float:
    s = sql(table)
    t0 = time.perf_counter()
    if dialect == "sqlite":
        lite = sqlite_conns[n]
        for bt in batches:
            lite.execute("BEGIN")
            lite.executemany(s, bt)
            lite.execute("COMMIT")
        el = time.perf_counter() - t0
        lite.execute(f"DELETE FROM {table} WHERE id > {keep}")
        return el
    pg = pg_conns[n]
    for bt in batches:
        with pg.transaction(), pg.cursor() as cur:
            cur.executemany(s, bt)
    el = time.perf_counter() - t0
    pg.execute(f"DELETE FROM {table} WHERE id > {keep}")
    pg.execute(f"VACUUM {table}")
    return el


for table, keep in (("market_data", prefill), ("alert_logs", prefill // 2)):
    batches = tuples(table, keep)
    samples: dict[str, list[float]] = {n: [] for n in benches}
    for r in range(ROUNDS + 1):
        for n in list(benches) if r % 2 else list(reversed(benches)):
            took = round_(n, table, keep, batches)
            if r:
                samples[n].append(took)
    for n, taken in samples.items():
        print(f"{dialect} insert {table:12} {n:18} {ROWS / statistics.median(taken):10.0f} rows/s")
# queries
from datetime import timedelta

from marketdata import queries as q

st = data.START
QS: dict[str, Callable[[bool], sa.Executable]] = {
    "latest_ticks": lambda live: q.latest_ticks_statement(live),
    "ticks_in_window": lambda live: q.ticks_in_window_statement(
        1, st + timedelta(hours=100), st + timedelta(hours=101), live
    ),
    "ohlc_instrument": lambda live: q.ohlc_statement(
        st + timedelta(hours=100), st + timedelta(hours=101), 2, live
    ),
    "purge_candidates_md": lambda live: sa.text(
        "SELECT id FROM market_data WHERE deleted_at IS NOT NULL AND deleted_at < :c"
    ).bindparams(c=datetime(2030, 1, 1, tzinfo=UTC)),
}
for n, b in benches.items():
    e = sa.create_engine(b.url)
    with e.connect() as c:
        for qn, f in QS.items():
            stmt = f(True)
            ts = []
            for _ in range(5):
                t0 = time.perf_counter()
                c.execute(stmt).fetchall()
                ts.append(time.perf_counter() - t0)
            print(f"{dialect} query {qn:20} {n:18} {statistics.median(ts) * 1000:9.2f} ms")
    e.dispose()
for lite in sqlite_conns.values():
    lite.close()
for pg in pg_conns.values():
    pg.close()
dbs.drop()
