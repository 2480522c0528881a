"""Experiment behind the note on ``rule_alerts`` on SQLite (docs/performance.md, notes): the
query is slower at head with SQLite's default page cache (2,000 KiB, 500 pages of 4 KiB)
and not with a larger one.

Same plan at both revisions (``ix_alert_logs_rule_timestamp``), same 1,028 rows; what differs
is how many table pages they sit on. Head's rows are a little wider (``deleted_at``), so the
pages the query reads no longer fit in the default cache and are read again from the OS on
every execution. This times the catalogue statement's SQL on the raw driver, at 0000 and at
head, with the default cache and with 8 MiB, alternating rounds, medians.

    python -m benchmarks.experiments.page_cache [PREFILL]
"""

import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.dialects import sqlite

from benchmarks import data, insert
from benchmarks.databases import Databases
from benchmarks.query import catalogue
from benchmarks.timing import Progress, alternate
from marketdata.db import SQLITE_CACHE_KIB

prefill = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
CACHES = {"default (2,000 KiB)": None, "8 MiB": -8192, "32 MiB (the app's)": -SQLITE_CACHE_KIB}
INSERT_ROWS, BATCH = 20_000, 1_000
REPEAT, ROUNDS = 50, 7


def main() -> None:
    query = next(q for q in catalogue(prefill, prefill // 2) if q.name == "rule_alerts")
    with tempfile.TemporaryDirectory() as tmp:
        dbs = Databases("sqlite", workdir=Path(tmp))
        dbs.build(
            prefill, prefill // 2, lambda line: print(line, file=sys.stderr), ("baseline", "head")
        )
        sides = {}
        for revision in ("baseline", "head"):
            compiled = query.statement(revision == "head").compile(
                dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
            )
            sql = str(compiled)
            for cache, size in CACHES.items():
                conn = sqlite3.connect(dbs.get(revision, "filled").sqlite_path)
                if size is not None:
                    conn.execute(f"PRAGMA cache_size = {size}")
                sides[(revision, cache)] = (conn, sql)
            pages, rows = (
                sqlite3.connect(dbs.get(revision, "filled").sqlite_path)
                .execute(
                    "SELECT (SELECT count(*) FROM dbstat WHERE name = 'alert_logs' AND pagetype = 'leaf'),"
                    " (SELECT count(*) FROM alert_logs)"
                )
                .fetchone()
            )
            print(f"{revision}: {rows / pages:.1f} alerts per table leaf page ({pages:,} pages)")

        def query_round(conn: sqlite3.Connection, sql: str) -> Callable[[], float]:
            def round_() -> float:
                started = time.perf_counter()
                for _ in range(REPEAT):
                    conn.execute(sql).fetchall()
                return (time.perf_counter() - started) / REPEAT

            return round_

        first_conn, first_sql = next(iter(sides.values()))
        n = len(first_conn.execute(first_sql).fetchall())
        runners = {f"{rev} {cache}": query_round(*side) for (rev, cache), side in sides.items()}
        samples = alternate(runners, ROUNDS, 1, Progress(enabled=False), "rule_alerts")
        print(f"rule_alerts ({n:,} rows), raw sqlite3, ms per execution (medians of {ROUNDS}):")
        for cache in CACHES:
            base = statistics.median(samples[f"baseline {cache}"])
            head = statistics.median(samples[f"head {cache}"])
            print(
                f"  cache {cache:20s} 0000 {base * 1000:6.3f}  head {head * 1000:6.3f}  head/0000 {head / base:.2f}"
            )
        # and what the cache does to an INSERT: 20,000 ticks, raw driver, 1,000-row batches
        sql = insert._insert_sql("market_data", "sqlite")
        batches = {
            revision: list(
                data.iter_batches(
                    data.driver_tuples(
                        "market_data",
                        data.rows_for(
                            "market_data",
                            prefill + 1,
                            INSERT_ROWS,
                            as_decimal=revision == "baseline",
                        ),
                        "sqlite",
                        datetime.now(UTC),
                    ),
                    BATCH,
                )
            )
            for revision in ("baseline", "head")
        }

        def insert_round(revision: str, conn: sqlite3.Connection) -> Callable[[], float]:
            def round_() -> float:
                conn.isolation_level = None
                took = insert._sqlite_round(conn, sql, batches[revision])
                conn.execute(f"DELETE FROM market_data WHERE id > {prefill}")
                return took

            return round_

        timed = alternate(
            {
                f"{rev} {cache}": insert_round(rev, conn)
                for (rev, cache), (conn, _) in sides.items()
            },
            ROUNDS,
            1,
            Progress(enabled=False),
            "insert",
        )
        print(
            f"INSERT of {INSERT_ROWS:,} ticks into {prefill:,}, raw sqlite3, ms (medians of {ROUNDS}):"
        )
        for cache in CACHES:
            base = statistics.median(timed[f"baseline {cache}"])
            head = statistics.median(timed[f"head {cache}"])
            print(
                f"  cache {cache:20s} 0000 {base * 1000:6.1f}  head {head * 1000:6.1f}  0000/head {base / head:.2f}"
            )
        for conn, _ in sides.values():
            conn.close()
        dbs.drop()


main()
