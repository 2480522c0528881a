"""Experiment behind counting every table in each change's data checks (docs/authoring.md,
"data checks"): a database at 0000 with 1,000,000 ticks and 200,000 alerts, then 0001's
row-count snapshot and data check as rendered (all four tables) against the same two
statements for market_data alone (what 0001 counted before), alternating rounds, medians.
PostgreSQL's sections no longer count (they read the change's own transaction statistics,
docs/rollback.md "Row checks under live traffic"): there the one variant is what they cost now.

    python -m benchmarks.experiments.row_count_cost [--pg URL] [--sqlite PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks import data
from generator import db, migrate
from generator.runtime import load_checks, validation_file

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "generated_migrations"
CHANGE = "0001_optimize_market_data_indexes"
TICKS, ALERTS, ROUNDS = 1_000_000, 200_000, 7


def _sections(dialect: str) -> tuple[str, str]:
    path = validation_file(MIGRATIONS / "versions" / "x.py", dialect, CHANGE, "pre")
    found = {c.name: c.sql for c in load_checks(path)}
    return found["schemagen_row_counts"], found["row_counts"]


def _only_market_data(sql: str) -> str:
    """The same statement restricted to market_data: the lines of the other tables out."""
    lines = sql.splitlines()
    keep = [line for line in lines if "count(*)" not in line or '"market_data"' in line]
    return "\n".join(line for line in keep if line.strip() != "UNION ALL")


def _run(conn: sa.Connection, snapshot: str, check: str) -> float:
    started = time.perf_counter()
    conn.exec_driver_sql("DROP TABLE IF EXISTS schemagen_row_counts")
    if "schemagen_xact_deleted" in check:  # PostgreSQL: the runner's carry table, empty
        conn.exec_driver_sql("DROP TABLE IF EXISTS schemagen_xact_deleted")
        conn.exec_driver_sql(
            "CREATE TEMP TABLE schemagen_xact_deleted (relid oid PRIMARY KEY, deleted bigint)"
        )
    conn.exec_driver_sql(snapshot)
    rows = conn.exec_driver_sql(check).fetchall()
    assert not rows, rows
    return (time.perf_counter() - started) * 1000


def measure(url: sa.URL) -> dict[str, float]:
    migrate.upgrade(MIGRATIONS, url, "0000")
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            data.reference_rows(conn)
            data.load_ticks(conn, TICKS, "baseline")
            data.load_alerts(conn, ALERTS, "baseline")
        if url.get_backend_name() == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        snapshot, check = _sections(url.get_backend_name())
        variants = {"every table": (snapshot, check)}
        if url.get_backend_name() == "sqlite":
            variants["market_data only"] = (_only_market_data(snapshot), _only_market_data(check))
        times: dict[str, list[float]] = {name: [] for name in variants}
        with engine.connect() as conn:
            for r in range(ROUNDS):
                order = list(variants) if r % 2 else list(variants)[::-1]
                for name in order:
                    times[name].append(_run(conn, *variants[name]))
            conn.rollback()
        return {name: statistics.median(t) for name, t in times.items()}
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default=None, help="URL of an empty PostgreSQL database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = [sa.make_url(f"sqlite:///{tmp}/bench.db")]
        if args.pg:
            urls.append(sa.make_url(args.pg))
        for url in urls:
            result = measure(url)
            if "market_data only" not in result:
                print(
                    f"{url.get_backend_name()}: every table {result['every table']:.1f} ms "
                    f"(transaction statistics: snapshot + check, median of {ROUNDS})"
                )
                continue
            added = result["every table"] - result["market_data only"]
            print(
                f"{url.get_backend_name()}: market_data only {result['market_data only']:.1f} ms,"
                f" every table {result['every table']:.1f} ms, added {added:.1f} ms"
                f" (snapshot + check, median of {ROUNDS})"
            )


if __name__ == "__main__":
    main()
