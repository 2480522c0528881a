"""What one row costs the online backfill as it is (an UPDATE of shadow columns in place)
against a shadow *table* (pg-osc's design: the rows copied into a new table of the new types
by ``INSERT ... SELECT`` in key ranges), issue 14's "next step" in docs/online.md: on a copy
of market_data filled at 0002 (benchmarks.typechange.Base), key ranges of 20,000 rows taken
in turn by each variant, microseconds and WAL bytes per row, medians:

- ``update``: the shadows (six float columns added to market_data) set to the conversion of
  the old columns, as the backfill's batch does (a new version of every row, with its index
  entries);
- ``copy``: the range inserted into a new table of the new types with its primary key only
  (the other indexes built after the copy, timed once at the end: ``build``);
- ``copy_idx``: the same into a new table that has every index of market_data already.

    python -m benchmarks.experiments.shadow_copy_cost [--ticks 1000000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from benchmarks import typechange
from benchmarks.databases import postgres_admin_url

CHUNK = 20_000


def _lsn(c: psycopg.Connection) -> int:
    row = c.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    base = typechange.Base(postgres_admin_url(None), args.ticks, 1000)
    base.build(typechange._start_revision())
    try:
        url = base.copy("shadowcost")
        dsn = url.set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(dsn, autocommit=True) as c:
            columns = [
                (str(r[0]), str(r[1]))
                for r in c.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'market_data' ORDER BY ordinal_position"
                )
            ]
            numeric = [n for n, t in columns if t == "numeric"]
            indexes = [
                str(r[0])
                for r in c.execute(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'market_data' "
                    "AND indexname NOT IN (SELECT conname FROM pg_constraint "
                    "WHERE conrelid = 'market_data'::regclass AND contype = 'p')"
                )
            ]
            print(
                f"market_data: {len(columns)} columns, {len(numeric)} numeric, "
                f"{len(indexes)} indexes besides the primary key"
            )
            c.execute(
                "ALTER TABLE market_data " + ", ".join(f"ADD COLUMN s_{x} float8" for x in numeric)
            )
            for name in ("copy", "copy_idx"):
                c.execute(f"CREATE TABLE {name} (LIKE market_data INCLUDING DEFAULTS)")
                c.execute(
                    f"ALTER TABLE {name} "
                    + ", ".join(f"DROP COLUMN s_{x}" for x in numeric)
                    + ", "
                    + ", ".join(f"ALTER COLUMN {x} TYPE float8" for x in numeric)
                    + ", ADD PRIMARY KEY (id)"
                )
            for sql in indexes:
                c.execute(
                    sql.replace(" ON public.market_data ", " ON public.copy_idx ")
                    .replace("CREATE INDEX ", "CREATE INDEX ci_", 1)
                    .replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX ci_", 1)
                )
            found = c.execute("SELECT min(id), max(id) FROM market_data").fetchone()
            assert found is not None
            low, high = int(found[0]), int(found[1])
            names = [n for n, _ in columns]
            shown = ", ".join(names)
            select = ", ".join(f"{n}::float8" if n in numeric else n for n in names)
            where = "WHERE id > %s AND id <= %s"
            variants = {
                "update": "UPDATE market_data SET "
                + ", ".join(f"s_{x} = {x}::float8" for x in numeric)
                + f" {where}",
                "copy": f"INSERT INTO copy ({shown}) SELECT {select} FROM market_data {where}",
                "copy_idx": f"INSERT INTO copy_idx ({shown}) SELECT {select} "
                f"FROM market_data {where}",
            }
            times: dict[str, list[float]] = {k: [] for k in variants}
            wal: dict[str, list[float]] = {k: [] for k in variants}
            key, n = low - 1, 0
            c.execute("CHECKPOINT")
            while key + CHUNK <= high and n < args.rounds * len(variants):
                name = list(variants)[n % len(variants)]
                before = _lsn(c)
                started = time.perf_counter()
                with c.transaction():
                    c.execute(variants[name], (key, key + CHUNK))
                times[name].append((time.perf_counter() - started) * 1e6 / CHUNK)
                wal[name].append((_lsn(c) - before) / CHUNK)
                key += CHUNK
                n += 1
            copied = c.execute("SELECT count(*) FROM copy").fetchone()
            assert copied is not None
            before = _lsn(c)
            started = time.perf_counter()
            for sql in indexes:
                c.execute(
                    sql.replace(" ON public.market_data ", " ON public.copy ")
                    .replace("CREATE INDEX ", "CREATE INDEX cb_", 1)
                    .replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX cb_", 1)
                )
            build_us = (time.perf_counter() - started) * 1e6 / max(int(copied[0]), 1)
            build_wal = (_lsn(c) - before) / max(int(copied[0]), 1)
        for name in variants:
            print(
                f"{name}: {statistics.median(times[name]):.1f} us a row, "
                f"{statistics.median(wal[name]):.0f} WAL bytes a row "
                f"(median of {len(times[name])} ranges of {CHUNK})"
            )
        print(
            f"build (copy's other indexes after the copy, {int(copied[0])} rows): "
            f"{build_us:.1f} us a row, {build_wal:.0f} WAL bytes a row"
        )
    finally:
        base.drop()


if __name__ == "__main__":
    main()
