"""The ``ops`` suite: for each operation of the registry, on PostgreSQL with a table of
``prefill`` rows (1,000,000 by default), the longest single-row INSERT into that table while
the operation's change upgrades it (issue 12: at most 100 ms unless the operation's risk says
it rewrites the table).

One scratch project, one change per operation (``HISTORY``, in an order that lets each apply:
the drops after the adds, purge after drop_column), rendered by the generator and run through
``generator.migrate`` (checks, locks and retries included) while a process of its own INSERTs
one row at a time into the table (autocommit, psycopg), every INSERT timed, and samples how long
its backend waited on a lock (``pg_stat_activity``). The same loop runs for
``migrate_idle_s`` before each change with no migration: the idle reference of the machine.
Each round builds a fresh database; the medians of the rounds are reported.

The writer inserts into ``t`` and, once ``rename_table`` renamed it, into the new name (as
code that knows both names does, lint SG110); after ``drop_table`` its INSERTs fail at once
(the table is gone), which the timing still counts."""

from __future__ import annotations

import multiprocessing
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from benchmarks.settings import Settings
from benchmarks.timing import Progress
from generator import files, migrate
from generator.load import load_changes
from generator.plan import plan
from generator.render import generate

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MS = 100.0
BASE = """\
id: base
description: a parent table and the table t the writer inserts into
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
      - {name: note, type: text, nullable: true}
"""
# (operation, the change's operation in YAML); every operation of generator.ops once
HISTORY: list[tuple[str, str]] = [
    (
        "create_table",
        "{op: create_table, name: other, columns: "
        "[{name: id, type: integer, primary_key: true}, {name: label, type: text}]}",
    ),
    # on the new table (its key integer for it): the writer's t has bigint keys already
    ("widen_key", "{op: widen_key, table: other, column: id, from: integer, to: bigint}"),
    ("add_column", "{op: add_column, table: t, column: {name: flag, type: boolean}}"),
    ("set_default", "{op: set_default, table: t, column: qty, default: 1}"),
    ("add_check", "{op: add_check, table: t, name: ck_t_qty, expression: qty >= 0}"),
    ("set_nullable", "{op: set_nullable, table: t, column: qty, nullable: false, fill: 0}"),
    ("add_unique", "{op: add_unique, table: t, name: uq_t_code, columns: [code]}"),
    (
        "add_foreign_key",
        "{op: add_foreign_key, table: t, name: fk_t_parent, columns: [parent_id], "
        "references: {table: parents, columns: [id]}, on_delete: restrict}",
    ),
    (
        "swap_fk_action",
        "{op: swap_fk_action, table: t, column: parent_id, from: restrict, to: cascade}",
    ),
    ("create_index", "{op: create_index, table: t, name: ix_t_qty, columns: [qty]}"),
    ("drop_index", "{op: drop_index, table: t, name: ix_t_qty}"),
    (
        "alter_column_type",
        "{op: alter_column_type, table: t, column: code, from: varchar(16), to: varchar(32)}",
    ),
    (
        "backfill",
        "{op: backfill, table: t, set: {qty: 'coalesce(qty, 0)'}, where: qty IS NULL, "
        "batch_size: 10000}",
    ),
    ("rename_column", "{op: rename_column, table: t, column: note, to: remark}"),
    ("drop_foreign_key", "{op: drop_foreign_key, table: t, name: fk_t_parent}"),
    ("drop_unique", "{op: drop_unique, table: t, name: uq_t_code}"),
    ("drop_check", "{op: drop_check, table: t, name: ck_t_qty}"),
    ("drop_column", "{op: drop_column, table: t, column: remark}"),
    ("purge", "{op: purge, change: drop_column}"),
    (
        "sql",
        "{op: sql, up: {postgresql: 'CREATE VIEW t_codes AS SELECT id, code FROM t', "
        "sqlite: 'CREATE VIEW t_codes AS SELECT id, code FROM t'}, "
        "down: {postgresql: DROP VIEW t_codes, sqlite: DROP VIEW t_codes}}",
    ),
    ("rename_table", "{op: rename_table, table: t, to: t_renamed}"),
    ("drop_table", "{op: drop_table, table: t_renamed}"),
]
ACKNOWLEDGE = (
    "acknowledge: {SG102: benchmark, SG107: benchmark, SG110: benchmark, SG112: benchmark, "
    "SG113: benchmark, SG120: benchmark}\n"
)


def project(tmp: Path) -> tuple[list[Any], Path]:
    """The scratch project's changes, rendered into ``tmp/generated_migrations``."""
    changes_dir = tmp / "changes"
    changes_dir.mkdir()
    (changes_dir / "0000_base.yaml").write_text(BASE)
    for i, (name, op) in enumerate(HISTORY, 1):
        (changes_dir / f"{i:04d}_{name}.yaml").write_text(
            f"id: {name}\ndescription: {name}\n{ACKNOWLEDGE}operations:\n  - {op}\n"
        )
    changes = load_changes(changes_dir, display_base=tmp)
    out = tmp / "generated_migrations"
    files.write(generate(changes), out)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
    return changes, out


class Writer:
    """Single-row INSERTs, one at a time, each timed, in a process of their own (so the
    migration's Python work in this process never delays them: no shared interpreter lock),
    with a second connection there sampling the writer's backend in ``pg_stat_activity``: the
    longest span it waited on a lock (``wait_event_type = 'Lock'``), which a busy machine's
    scheduling does not lengthen. One process per round, told to run and stop by a pipe."""

    def __init__(self, dsn: str, next_id: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._proc = ctx.Process(target=_writer_process, args=(dsn, next_id, child), daemon=True)
        self._proc.start()
        if self._pipe.recv() != "ready":  # pragma: no cover - the child failed to connect
            raise RuntimeError("the ops writer process did not start")

    def measure(self, run: Callable[[], None] | None, idle_s: float) -> tuple[float, float]:
        """(longest INSERT, longest lock wait) in ms while ``run`` runs (or ``idle_s``)."""
        self._pipe.send("go")
        try:
            if run is None:
                time.sleep(idle_s)
            else:
                time.sleep(0.2)
                run()
                time.sleep(0.2)
        finally:
            self._pipe.send("stop")
        longest, lock_wait = self._pipe.recv()
        return float(longest) * 1000, float(lock_wait) * 1000

    def close(self) -> None:
        self._pipe.send("exit")
        self._proc.join(30)


def _writer_process(dsn: str, next_id: int, pipe: Any) -> None:
    table = "t"
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        psycopg.connect(dsn, autocommit=True) as watch,
    ):
        pid = conn.info.backend_pid
        pipe.send("ready")
        while (msg := pipe.recv()) != "exit":
            if msg != "go":
                continue
            stop = threading.Event()
            waits: list[float] = []
            sampler = threading.Thread(target=_lock_waits, args=(watch, pid, stop, waits))
            sampler.start()
            samples: list[float] = []
            while not pipe.poll():
                next_id += 1
                start = time.perf_counter()
                try:
                    conn.execute(
                        f'INSERT INTO "{table}" (id, code) VALUES (%s, %s)',
                        (next_id, f"n{next_id}"),
                    )
                except psycopg.errors.UndefinedTable:
                    samples.append(time.perf_counter() - start)
                    table = "t_renamed" if table == "t" else "t"
                    time.sleep(0.001)
                    continue
                samples.append(time.perf_counter() - start)
            pipe.recv()  # "stop"
            stop.set()
            sampler.join()
            pipe.send((max(samples, default=0.0), max(waits, default=0.0)))


def _lock_waits(
    watch: psycopg.Connection[Any], pid: int, stop: threading.Event, out: list[float]
) -> None:
    """Spans during which backend ``pid`` waited on a heavyweight lock, polled back to back."""
    since: float | None = None
    while not stop.is_set():
        row = watch.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        now = time.perf_counter()
        if row is not None and row[0]:
            since = now if since is None else since
        elif since is not None:
            out.append(now - since)
            since = None
    if since is not None:
        out.append(time.perf_counter() - since)


def _round(pg_url: str, s: Settings, progress: Progress, label: str) -> list[dict[str, Any]]:
    name = f"bench_ops_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(pg_url).set(database=name)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    try:
        changes, out = project(tmp)
        migrate.upgrade(out, url, "0000")
        rows = s.prefill
        progress.step(f"ops {label}: filling t with {rows:,} rows")
        with psycopg.connect(dsn, autocommit=True) as raw:
            raw.execute("INSERT INTO parents SELECT g FROM generate_series(1, 1000) g")
            raw.execute(
                "INSERT INTO t SELECT g, 1 + g %% 1000, CASE WHEN g %% 100 = 0 THEN NULL "
                "ELSE g %% 50 END, 'c' || g, 'note ' || g FROM generate_series(1, %s) g",
                (rows,),
            )
            raw.execute("VACUUM ANALYZE t")
        writer = Writer(dsn, rows + 10)
        cases = []
        try:
            cases = _cases(changes, out, url, writer, s, progress, label)
        finally:
            writer.close()
        return cases
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def _cases(
    changes: list[Any],
    out: Path,
    url: sa.URL,
    writer: Writer,
    s: Settings,
    progress: Progress,
    label: str,
) -> list[dict[str, Any]]:
    cases = []
    for change, (op, _) in zip(changes[1:], HISTORY, strict=True):
        progress.step(f"ops {label}: {op}")
        idle, _ = writer.measure(None, s.migrate_idle_s)
        took = [0.0]

        def up(revision: str = change.revision, took: list[float] = took) -> None:
            start = time.perf_counter()
            migrate.upgrade(out, url, revision)
            took[0] = time.perf_counter() - start

        during, lock_wait = writer.measure(up, s.migrate_idle_s)
        rewrites = any(
            u.risk("postgresql").rewrites for u in plan(change.steps, change.before, "postgresql")
        )
        cases.append(
            {
                "op": op,
                "rewrites": rewrites,
                "idle_ms": idle,
                "blocked_ms": during,
                "lock_wait_ms": lock_wait,
                "upgrade_s": took[0],
            }
        )
    return cases


def run(s: Settings, progress: Progress, pg_url: str) -> dict[str, Any]:
    """Every operation, ``s.migrate_rounds`` rounds; per operation the samples and medians."""
    started = datetime.now(UTC)
    rounds = [
        _round(pg_url, s, progress, f"round {r + 1}/{s.migrate_rounds}")
        for r in range(s.migrate_rounds)
    ]
    cases = []
    for i, (op, _) in enumerate(HISTORY):
        samples = [r[i] for r in rounds]
        blocked = [c["blocked_ms"] for c in samples]
        median = round(statistics.median(blocked), 1)
        rewrites = samples[0]["rewrites"]
        cases.append(
            {
                "op": op,
                "rewrites": rewrites,
                "idle_ms": [round(c["idle_ms"], 1) for c in samples],
                "blocked_ms": [round(b, 1) for b in blocked],
                "upgrade_s": [round(c["upgrade_s"], 2) for c in samples],
                "median_idle_ms": round(statistics.median(c["idle_ms"] for c in samples), 1),
                "median_blocked_ms": round(median, 1),
                "median_upgrade_s": round(statistics.median(c["upgrade_s"] for c in samples), 2),
                "lock_wait_ms": [round(c["lock_wait_ms"], 1) for c in samples],
                "median_lock_wait_ms": round(
                    statistics.median(c["lock_wait_ms"] for c in samples), 1
                ),
                "ok": rewrites or median <= LIMIT_MS,
            }
        )
    progress.note(f"ops: {s.migrate_rounds} round(s) of {len(HISTORY)} operations")
    return {
        "started": started.isoformat(timespec="seconds"),
        "rows": s.prefill,
        "rounds": s.migrate_rounds,
        "limit_ms": LIMIT_MS,
        "cases": cases,
    }
