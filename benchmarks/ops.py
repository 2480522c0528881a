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
      - {name: status, type: text, nullable: true}
"""
# An operation measured twice: the label of its second case (the table's row).
ENUM_CASE = "alter_column_type (text to enum)"
# (operation, the change's operation in YAML); every operation of generator.ops, and
# ENUM_CASE
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
    # an enum type change: text -> enum converts every value, online on PostgreSQL (shadow
    # column, trigger, batches, a short contract), which rewrites no table: held to the limit
    (
        ENUM_CASE,
        "{op: alter_column_type, table: t, column: status, from: text, "
        "to: 'enum(t_status: new, paid, shipped)'}",
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
    "acknowledge: {SG102: benchmark, SG103: benchmark, SG107: benchmark, SG110: benchmark, "
    "SG112: benchmark, "
    "SG113: benchmark, SG120: benchmark}\n"
)


def change_id(label: str) -> str:
    """A case's label as a change id: ``alter_column_type (text to enum)`` ->
    ``alter_column_type_text_to_enum``."""
    return "_".join("".join(c if c.isalnum() else " " for c in label).split())


def prefill(raw: psycopg.Connection[Any], rows: int) -> None:
    """The parents and ``rows`` rows of ``t`` (1% NULL qty; status one of the enum's labels),
    vacuumed and analysed."""
    raw.execute("INSERT INTO parents SELECT g FROM generate_series(1, 1000) g")
    raw.execute(
        "INSERT INTO t SELECT g, 1 + g %% 1000, CASE WHEN g %% 100 = 0 THEN NULL "
        "ELSE g %% 50 END, 'c' || g, 'note ' || g, "
        "(ARRAY['new', 'paid', 'shipped'])[1 + g %% 3] FROM generate_series(1, %s) g",
        (rows,),
    )
    raw.execute("VACUUM ANALYZE t")


def project(tmp: Path) -> tuple[list[Any], Path]:
    """The scratch project's changes, rendered into ``tmp/generated_migrations``."""
    changes_dir = tmp / "changes"
    changes_dir.mkdir()
    (changes_dir / "0000_base.yaml").write_text(BASE)
    for i, (label, op) in enumerate(HISTORY, 1):
        name = change_id(label)
        (changes_dir / f"{i:04d}_{name}.yaml").write_text(
            f"id: {name}\ndescription: {label}\n{ACKNOWLEDGE}operations:\n  - {op}\n"
        )
    changes = load_changes(changes_dir, display_base=tmp)
    out = tmp / "generated_migrations"
    files.write(generate(changes), out)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
    return changes, out


class Writer:
    """Single-row INSERTs, one at a time, each timed, until stopped, with a second connection
    sampling the writer's backend in ``pg_stat_activity``: the longest span it waited on a
    heavyweight lock (``wait_event_type = 'Lock'``), which a busy machine's scheduling does not
    lengthen.

    In a process of its own (``process=True``, the suite's way): a thread of the process that
    runs the migration shares its interpreter lock, and psycopg converts a result (a
    backfill batch's 10,000 keys) without releasing it, so on a loaded machine the thread's
    INSERT waited for the migration's Python code, not for the database: during backfill,
    INSERTs of 0.6-1.6 s right after a batch's SELECT of its keys, with no lock wait and the
    server's own time, commit included, under 30 ms (benchmarks/experiments/ops_blockers.py,
    load 10-17). ``process=False``: a thread, for comparison."""

    def __init__(self, dsn: str, next_id: int, process: bool = True) -> None:
        self.dsn = dsn
        self.next_id = next_id
        self.process: Any = None
        if process:
            ctx = multiprocessing.get_context("spawn")
            self.pipe, child = ctx.Pipe()
            self.process = ctx.Process(
                target=_writer_process, args=(dsn, next_id, child), daemon=True
            )
            self.process.start()
            if self.pipe.recv() != "ready":  # pragma: no cover - the child failed to connect
                raise RuntimeError("the ops writer process did not start")

    def close(self) -> None:
        if self.process is not None:
            self.pipe.send("exit")
            self.process.join(timeout=30)
            self.process = None

    def measure(self, run: Callable[[], None] | None, idle_s: float) -> tuple[float, float]:
        """(longest INSERT, longest lock wait) in ms while ``run`` runs (or for ``idle_s``)."""
        if self.process is not None:
            self.pipe.send("run")
            try:
                _run_or_idle(run, idle_s)
            finally:
                self.pipe.send("stop")
            longest, lock_wait = self.pipe.recv()
            return float(longest) * 1000, float(lock_wait) * 1000
        stop, out = threading.Event(), [0.0, 0.0]
        thread = threading.Thread(target=self._loop, args=(stop, out))
        thread.start()
        try:
            _run_or_idle(run, idle_s)
        finally:
            stop.set()
            thread.join()
        return out[0] * 1000, out[1] * 1000

    def _loop(self, stop: threading.Event, out: list[float]) -> None:
        with (
            psycopg.connect(self.dsn, autocommit=True) as conn,
            psycopg.connect(self.dsn, autocommit=True) as watch,
        ):
            self.next_id, out[0], out[1] = _write_until(conn, watch, self.next_id, stop.is_set)


def _run_or_idle(run: Callable[[], None] | None, idle_s: float) -> None:
    if run is None:
        time.sleep(idle_s)
    else:
        time.sleep(0.2)
        run()
        time.sleep(0.2)


def _insert(conn: psycopg.Connection[Any], next_id: int, table: list[str]) -> float:
    """One timed INSERT into ``table[0]`` (``t``, or ``t_renamed`` once rename_table ran):
    after ``rename_table``/``drop_table`` the other name next time."""
    start = time.perf_counter()
    try:
        conn.execute(
            f'INSERT INTO "{table[0]}" (id, code) VALUES (%s, %s)', (next_id, f"n{next_id}")
        )
    except psycopg.errors.UndefinedTable:
        took = time.perf_counter() - start
        table[0] = "t_renamed" if table[0] == "t" else "t"
        time.sleep(0.001)
        return took
    except psycopg.Error:  # refused (a constraint): timed like any other, the loop goes on
        took = time.perf_counter() - start
        time.sleep(0.001)
        return took
    return time.perf_counter() - start


def _write_until(
    conn: psycopg.Connection[Any],
    watch: psycopg.Connection[Any],
    next_id: int,
    stopped: Callable[[], bool],
) -> tuple[int, float, float]:
    """INSERTs until ``stopped()``, a sampler thread watching their lock waits; returns the
    next id, the longest INSERT and the longest lock wait (seconds)."""
    stop = threading.Event()
    waits: list[float] = []
    sampler = threading.Thread(target=_lock_waits, args=(watch, conn.info.backend_pid, stop, waits))
    sampler.start()
    longest, table = 0.0, ["t"]
    try:
        while not stopped():
            next_id += 1
            longest = max(longest, _insert(conn, next_id, table))
    finally:
        stop.set()
        sampler.join()
    return next_id, longest, max(waits, default=0.0)


def _writer_process(dsn: str, next_id: int, pipe: Any) -> None:
    """The writer's own process: on "run", INSERTs until "stop", then sends (longest INSERT,
    longest lock wait) in seconds."""
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        psycopg.connect(dsn, autocommit=True) as watch,
    ):
        pipe.send("ready")
        while pipe.recv() == "run":
            next_id, longest, lock_wait = _write_until(conn, watch, next_id, pipe.poll)
            pipe.recv()  # "stop"
            pipe.send((longest, lock_wait))


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
    writer: Writer | None = None
    try:
        changes, out = project(tmp)
        migrate.upgrade(out, url, "0000")
        rows = s.prefill
        progress.step(f"ops {label}: filling t with {rows:,} rows")
        with psycopg.connect(dsn, autocommit=True) as raw:
            prefill(raw, rows)
        writer = Writer(dsn, rows + 10, process=s.writer_process)
        return _cases(changes, out, url, writer, s, progress, label)
    finally:
        if writer is not None:
            writer.close()
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
