"""Experiment behind the PostgreSQL alert_logs bulk-ingest ceiling (docs/performance.md, notes):
what one COPY of alert rows costs the server at head, part by part.

Copies of head's pre-filled ``alert_logs`` (same rows, same indexes, CHECKs and foreign keys)
with one part taken away each: both foreign keys, the CHECKs, each index; and, for
comparison only, the two foreign keys replaced by one composite key (rule_id, instrument_id)
to the rules. 20,000 rows in
1,000-row COPYs (asyncpg ``copy_records_to_table``, one transaction each, as the insert
suite's ceiling), alternating rounds, medians; then the full copy once more with all 20
COPYs in one transaction, for the cost of the commits.

    python -m benchmarks.experiments.fk_cost [PREFILL_ALERTS]
"""

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from benchmarks import data
from benchmarks.databases import Databases, postgres_admin_url
from benchmarks.timing import Progress, alternate

prefill = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
ROWS, BATCH, ROUNDS = 20_000, 1_000, 7

INDEXES = {
    "del": "(deleted_at) WHERE deleted_at IS NOT NULL",
    "instrument": "(instrument_id)",
    "rule_ts": "(rule_id, timestamp)",
    "status": "(status)",
    "ts": "(timestamp)",
}
VARIANTS = {
    "head as it is": [],
    "no foreign keys": ["ALTER TABLE {t} DROP CONSTRAINT {t}_fk_i, DROP CONSTRAINT {t}_fk_r"],
    # not a proposal in force: what one trigger per row instead of two would give (it needs
    # every alert's instrument to be its rule's, a rule phase 1 does not state)
    "one composite key": [
        "ALTER TABLE {t} DROP CONSTRAINT {t}_fk_i, DROP CONSTRAINT {t}_fk_r",
        "ALTER TABLE {t} ADD CONSTRAINT {t}_fk_ri FOREIGN KEY (rule_id, instrument_id)"
        " REFERENCES alert_rules_ri (id, instrument_id) ON DELETE RESTRICT",
    ],
    "no CHECKs": ["ALTER TABLE {t} DROP CONSTRAINT {t}_ck1, DROP CONSTRAINT {t}_ck2"],
    **{f"no ix {name}": [f"DROP INDEX {{t}}_{name}"] for name in INDEXES},
}


def _copy_of_head(t: str) -> list[str]:
    return [
        f"CREATE TABLE {t} (LIKE alert_logs INCLUDING DEFAULTS INCLUDING IDENTITY)",
        f"INSERT INTO {t} SELECT * FROM alert_logs",
        f"ALTER TABLE {t} ADD PRIMARY KEY (id),"
        f" ADD CONSTRAINT {t}_ck1 CHECK (trigger_value > -100000000 AND trigger_value < 100000000),"
        f" ADD CONSTRAINT {t}_ck2"
        " CHECK (threshold_value > -100000000 AND threshold_value < 100000000),"
        f" ADD CONSTRAINT {t}_fk_i FOREIGN KEY (instrument_id) REFERENCES instruments(id)"
        " ON DELETE RESTRICT,"
        f" ADD CONSTRAINT {t}_fk_r FOREIGN KEY (rule_id) REFERENCES alert_rules(id)"
        " ON DELETE RESTRICT",
        *(f"CREATE INDEX {t}_{name} ON {t} {cols}" for name, cols in INDEXES.items()),
        f"ALTER TABLE {t} SET (autovacuum_enabled = false)",
        f"VACUUM ANALYZE {t}",
    ]


async def _copy(
    c: asyncpg.Connection, t: str, records: list[tuple[Any, ...]], columns: list[str], one_tx: bool
) -> None:
    if one_tx:
        async with c.transaction():
            for b in range(0, ROWS, BATCH):
                await c.copy_records_to_table(t, records=records[b : b + BATCH], columns=columns)
        return
    for b in range(0, ROWS, BATCH):
        async with c.transaction():
            await c.copy_records_to_table(t, records=records[b : b + BATCH], columns=columns)


def measure(aio: asyncio.Runner, dsn: str) -> None:
    c = aio.run(asyncpg.connect(dsn))
    aio.run(
        c.execute(
            "CREATE TABLE alert_rules_ri AS SELECT id, instrument_id FROM alert_rules;"
            " ALTER TABLE alert_rules_ri ADD PRIMARY KEY (id), ADD UNIQUE (id, instrument_id)"
        )
    )
    tables = {v: f"x{i}" for i, v in enumerate(VARIANTS)}
    for variant, t in tables.items():
        for sql in _copy_of_head(t) + [s.format(t=t) for s in VARIANTS[variant]]:
            aio.run(c.execute(sql))
    keep = aio.run(c.fetchval("SELECT max(id) FROM alert_logs"))
    rows = data.rows_for("alert_logs", keep + 1, ROWS, as_decimal=False)
    records = data.driver_tuples("alert_logs", rows, "postgresql", datetime.now(UTC))
    columns = list(data.columns_for("alert_logs"))

    def runner(t: str, one_tx: bool) -> Callable[[], float]:
        def round_() -> float:
            aio.run(c.execute(f"ALTER TABLE {t} ALTER COLUMN id RESTART WITH {keep + 1}"))
            started = time.perf_counter()
            aio.run(_copy(c, t, records, columns, one_tx))
            took = time.perf_counter() - started
            aio.run(c.execute(f"DELETE FROM {t} WHERE id > {keep}"))
            aio.run(c.execute(f"VACUUM {t}"))
            return took

        return round_

    runners = {v: runner(t, False) for v, t in tables.items()}
    runners["head, one transaction"] = runner("x0", True)
    samples = alternate(runners, ROUNDS, 1, Progress(enabled=False), "fk_cost")
    full = statistics.median(samples["head as it is"])
    print(f"{ROWS:,} alert rows into {prefill:,}, {BATCH:,}-row COPYs, medians of {ROUNDS}:")
    for name, xs in samples.items():
        m = statistics.median(xs)
        print(f"  {name:24s} {m * 1000:7.1f} ms  {ROWS / m:9,.0f} rows/s  {m / full:6.1%} of head")
    aio.run(c.close())


def main() -> None:
    dbs = Databases("postgresql", postgres_admin_url(None))
    try:
        dbs.build(0, prefill, lambda line: print(line, file=sys.stderr), revisions=("head",))
        with asyncio.Runner() as aio:
            measure(aio, dbs.get("head", "filled").asyncpg_dsn())
    finally:
        dbs.drop()


main()
