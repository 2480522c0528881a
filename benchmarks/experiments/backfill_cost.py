"""What one row of the online backfill costs (issue 14, docs/online.md "Where the goals
stand"): on a copy of a market_data table filled at 0002 (benchmarks.typechange.Base), six
float shadow columns added, then 20,000-row key ranges updated in turn by four variants, one
after the other on consecutive ranges, microseconds per row, medians:

- ``const``: the shadows set to a constant (the bare UPDATE: a new row version, the indexes'
  entries, WAL);
- ``conv``: the shadows set to the conversion of the old columns (``numeric::float8``);
- ``cte``: the backfill's statement (the conversion, RETURNING and the drift check);
- ``keysel``: the batch's key SELECT alone (read, not written).

    python -m benchmarks.experiments.backfill_cost [--ticks 1000000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from benchmarks import typechange
from benchmarks.databases import postgres_admin_url

CHUNK = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    base = typechange.Base(postgres_admin_url(None), args.ticks, 1000)
    base.build(typechange._start_revision())
    try:
        url = base.copy("cost")
        dsn = url.set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(dsn, autocommit=True) as c:
            cols = [
                str(r[0])
                for r in c.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = "
                    "'market_data' AND data_type = 'numeric' ORDER BY ordinal_position"
                )
            ]
            c.execute(
                "ALTER TABLE market_data " + ", ".join(f"ADD COLUMN s_{x} float8" for x in cols)
            )
            found = c.execute("SELECT min(id), max(id) FROM market_data").fetchone()
            assert found is not None
            low, high = int(found[0]), int(found[1])
            conv = ", ".join(f"s_{x} = {x}::float8" for x in cols)
            const = ", ".join(f"s_{x} = 1.5" for x in cols)
            shown = ", ".join(f"{x}, s_{x}" for x in cols)
            drift = " OR ".join(
                f"(({x} IS NULL) <> (s_{x} IS NULL) OR abs(s_{x} - {x}) >= 0.0001)" for x in cols
            )
            where = "WHERE id > %s AND id <= %s"
            variants = {
                "const": f"UPDATE market_data SET {const} {where}",
                "conv": f"UPDATE market_data SET {conv} {where}",
                "cte": f"WITH u AS (UPDATE market_data SET {conv} {where} RETURNING id, {shown}), "
                f"d AS (SELECT id, {shown} FROM u WHERE {drift} ORDER BY id LIMIT 21) "
                "SELECT (SELECT count(*) FROM u), d.* FROM (SELECT 1) o LEFT JOIN d ON true",
                "keysel": f"SELECT id FROM market_data WHERE id > %s ORDER BY id LIMIT {CHUNK}",
            }
            times: dict[str, list[float]] = {k: [] for k in variants}
            key, n = low - 1, 0
            while key + CHUNK <= high and n < args.rounds * len(variants):
                name = list(variants)[n % len(variants)]
                params = (key,) if name == "keysel" else (key, key + CHUNK)
                started = time.perf_counter()
                with c.transaction():
                    c.execute("SET LOCAL synchronous_commit = off")
                    cursor = c.execute(variants[name], params)
                    if cursor.description is not None:
                        cursor.fetchall()
                times[name].append((time.perf_counter() - started) * 1e6 / CHUNK)
                key += 0 if name == "keysel" else CHUNK
                n += 1
        for name, found_times in times.items():
            print(
                f"{name}: {statistics.median(found_times):.1f} us a row (median of {len(found_times)})"
            )
    finally:
        base.drop()


if __name__ == "__main__":
    main()
