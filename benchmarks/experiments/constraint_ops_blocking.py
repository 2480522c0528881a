"""Experiment: how long a single-row INSERT into the table waits while each constraint
operation of issue 12 (set_default, add_check, set_nullable, add_unique, add_foreign_key, and
the drops) upgrades it on PostgreSQL.

A scratch project (a parent table and a table ``t`` of ``ROWS`` rows), one change per
operation, rendered by the generator and run through ``generator.migrate`` (the runner's
checks, locks and retries included) while a thread INSERTs one row at a time into ``t``
(autocommit, psycopg). Every INSERT is timed; the longest is the longest time a writer was
blocked. The same loop runs for ``IDLE_S`` before each change, with no migration: the idle
reference.

    python -m benchmarks.experiments.constraint_ops_blocking [ROWS] [PG_ADMIN_URL]

Three runs, 2026-12-02, 1,000,000 rows, the shared 2-core machine (load average ~2.5-3.5),
longest INSERT in ms (idle / during the upgrade):

    operation           run 1 (before main's runner)   run 2       run 3 (after)
    set_default          9.8 /  86.6                  16.3 /  81.0  14.5 / 78.2
    add_check           15.0 /  22.9                  30.3 /  41.0  11.9 /  9.1
    set_nullable         9.6 / 139.6                  12.5 /  55.9   8.6 / 43.8
    add_unique           8.1 / 177.2                  24.6 /  68.8  11.3 / 38.6
    add_foreign_key     11.0 /  19.3                  33.5 /  20.0   7.8 / 21.1
    drop_foreign_key    18.4 / 148.9                  12.9 /  80.8   4.8 / 74.3
    drop_unique         15.8 / 160.2                  20.2 /  67.6   5.6 / 44.2
    drop_check           9.6 /  99.7                  10.2 /  63.3  10.9 / 47.9
    set_nullable back   12.5 /  95.2                  37.9 / 136.3   4.7 / 40.7

Run 1 was before the runner's row checks came from transaction statistics: the catalogue-only
operations held their brief ACCESS EXCLUSIVE while the post-checks counted every table inside
the change's transaction (100-180 ms). After it (runs 2 and 3), every operation stays under
100 ms but one noisy sample (run 2's "set_nullable back", idle 37.9 ms). The operations
whose scan runs apart (add_check, add_foreign_key: VALIDATE after commit) stay near idle;
the others hold a brief ACCESS EXCLUSIVE until the change's transaction commits, after the
post-checks.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import sqlalchemy as sa

from generator import files, migrate
from generator.load import load_changes
from generator.render import generate

ROOT = Path(__file__).resolve().parents[2]
IDLE_S = 1.0
BASE = """\
id: base
description: a parent and a table t
operations:
  - op: create_table
    name: parents
    columns:
      - {name: id, type: bigint, primary_key: true}
  - op: create_table
    name: t
    columns:
      - {name: id, type: bigint, primary_key: true}
      - {name: parent_id, type: bigint, nullable: true}
      - {name: qty, type: integer, nullable: true}
      - {name: code, type: varchar(16), nullable: true}
"""
OPS = [
    ("set_default", "{op: set_default, table: t, column: qty, default: 1}"),
    ("add_check", "{op: add_check, table: t, name: ck_t_qty, expression: qty >= 0}"),
    ("set_nullable", "{op: set_nullable, table: t, column: qty, nullable: false, fill: 0}"),
    ("add_unique", "{op: add_unique, table: t, name: uq_t_code, columns: [code]}"),
    (
        "add_foreign_key",
        "{op: add_foreign_key, table: t, name: fk_t_parent, columns: [parent_id], "
        "references: {table: parents, columns: [id]}}",
    ),
    ("drop_foreign_key", "{op: drop_foreign_key, table: t, name: fk_t_parent}"),
    ("drop_unique", "{op: drop_unique, table: t, name: uq_t_code}"),
    ("drop_check", "{op: drop_check, table: t, name: ck_t_qty}"),
    ("set_nullable back", "{op: set_nullable, table: t, column: qty, nullable: true}"),
]


def _inserts(dsn: str, stop: threading.Event, first_id: list[int], out: list[float]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            first_id[0] += 1
            start = time.perf_counter()
            conn.execute(
                "INSERT INTO t (id, parent_id, qty, code) VALUES (%s, 1, 1, %s)",
                (first_id[0], f"n{first_id[0]}"),
            )
            out.append(time.perf_counter() - start)


def _longest(dsn: str, first_id: list[int], run: Callable[[], None] | None = None) -> float:
    stop, samples = threading.Event(), list[float]()
    thread = threading.Thread(target=_inserts, args=(dsn, stop, first_id, samples))
    thread.start()
    try:
        if run is None:
            time.sleep(IDLE_S)
        else:
            time.sleep(0.2)
            run()
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    return max(samples) * 1000


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    admin = (
        sys.argv[2] if len(sys.argv) > 2 else "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin).set(database=name)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp(prefix="constraint-ops-"))
    try:
        changes_dir = tmp / "changes"
        changes_dir.mkdir()
        (changes_dir / "0000_base.yaml").write_text(BASE)
        for i, (label, op) in enumerate(OPS, 1):
            ident = f"op{i}"
            ack = "acknowledge: {SG120: benchmark}\n"
            (changes_dir / f"{i:04d}_{ident}.yaml").write_text(
                f"id: {ident}\ndescription: {label}\n{ack}operations:\n  - {op}\n"
            )
        changes = load_changes(changes_dir, display_base=tmp)
        out = tmp / "generated_migrations"
        files.write(generate(changes), out)
        shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
        migrate.upgrade(out, url, "0000")
        with psycopg.connect(dsn, autocommit=True) as raw:
            raw.execute("INSERT INTO parents SELECT g FROM generate_series(1, 1000) g")
            raw.execute(
                "INSERT INTO t SELECT g, 1 + g %% 1000, CASE WHEN g %% 100 = 0 THEN NULL ELSE g "
                "%% 50 END, 'c' || g FROM generate_series(1, %s) g",
                (rows,),
            )
            raw.execute("VACUUM ANALYZE t")
        first_id = [rows + 10]
        print(f"PostgreSQL, t of {rows:,} rows; longest single-row INSERT into t (ms)")
        print(f"{'operation':<20} {'idle':>8} {'during':>9} {'upgrade s':>10}")
        for change, (label, _) in zip(changes[1:], OPS, strict=True):
            idle = _longest(dsn, first_id)
            took = [0.0]

            def up(revision: str = change.revision, took: list[float] = took) -> None:
                start = time.perf_counter()
                migrate.upgrade(out, url, revision)
                took[0] = time.perf_counter() - start

            during = _longest(dsn, first_id, run=up)
            print(f"{label:<20} {idle:>8.1f} {during:>9.1f} {took[0]:>10.2f}")
    finally:
        with admin_engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
