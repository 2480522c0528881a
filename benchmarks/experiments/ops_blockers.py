"""Experiment: what blocks the writer of the ``ops`` suite (benchmarks/ops.py) during an
operation's upgrade. The same history, table and single-row INSERT loop as the suite, with
three witnesses added:

- the writer's session logs its lock waits (``log_lock_waits``, ``deadlock_timeout`` 20 ms,
  received as messages): which lock it waited for, which backend held it, how long; and the
  server's own duration of a slow INSERT (``log_min_duration_statement``);
- every statement the migration runs, timed (SQLAlchemy's cursor events, on every engine);
- the autovacuum workers seen on the table (pg_stat_activity, sampled every 50 ms).

For each operation it prints the longest INSERT, the lock waits of the writer, and the
migration's statements that overlapped that INSERT (the one holding the lock is among them),
so a slow INSERT is either a lock wait with its holder named or no lock wait at all (the
machine: CPU, I/O). The load average is printed with it: other processes share the machine.

    python -m benchmarks.experiments.ops_blockers [--rows N] [--rounds R] [OP ...]

OP: operations of ``ops.HISTORY`` (all by default), run in that history's order.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from benchmarks import ops
from generator import migrate

SLOW_MS = 40.0  # an INSERT slower than this is explained


@dataclass
class Insert:
    start: float
    end: float
    messages: list[str] = field(default_factory=list)

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


class Writer:
    def __init__(self, dsn: str, next_id: int) -> None:
        self.dsn, self.next_id, self.table = dsn, next_id, "t"
        self.inserts: list[Insert] = []
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.stop.clear()
        self.inserts = []
        self.thread = threading.Thread(target=self._loop)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join()

    def _loop(self) -> None:
        messages: list[str] = []
        # the simple query protocol (client-side binding): the server's logged duration of a
        # statement then includes its commit (the WAL flush), as the extended one's does not
        with psycopg.connect(
            self.dsn, autocommit=True, cursor_factory=psycopg.ClientCursor
        ) as conn:
            conn.add_notice_handler(
                lambda d: messages.append(f"{d.message_primary} [{d.message_detail or ''}]")
            )
            conn.execute("SET log_lock_waits = on")
            conn.execute("SET deadlock_timeout = '20ms'")
            conn.execute("SET client_min_messages = log")
            # the server's own time of a slow INSERT: a slow INSERT the server finished fast
            # was slow in the client (its process, the GIL, the CPU it got)
            conn.execute(f"SET log_min_duration_statement = {SLOW_MS / 2:.0f}")
            while not self.stop.is_set():
                self.next_id += 1
                start = time.perf_counter()
                try:
                    conn.execute(
                        f'INSERT INTO "{self.table}" (id, code) VALUES (%s, %s)',
                        (self.next_id, f"n{self.next_id}"),
                    )
                except psycopg.errors.UndefinedTable:
                    self.table = "t_renamed" if self.table == "t" else "t"
                except psycopg.Error as exc:  # e.g. NOT NULL without a default: counted too
                    messages.append(f"failed: {type(exc).__name__}")
                end = time.perf_counter()
                self.inserts.append(Insert(start, end, list(messages)))
                messages.clear()


class Statements:
    """Every statement any engine of this process runs, timed, with its backend pid."""

    def __init__(self) -> None:
        self.log: list[tuple[float, float, int, str]] = []
        self._open: dict[int, tuple[float, str]] = {}

    def before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._open[id(cursor)] = (time.perf_counter(), statement)

    def after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        start, text = self._open.pop(id(cursor), (time.perf_counter(), statement))
        pid = conn.info.get("pid")
        if pid is None and conn.dialect.name == "postgresql":
            raw = conn.connection.dbapi_connection
            pid = conn.info["pid"] = raw.info.backend_pid if raw is not None else 0
        self.log.append((start, time.perf_counter(), pid or 0, " ".join(text.split())[:110]))


class Autovacuum:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.seen: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                for (query,) in conn.execute(
                    "SELECT query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                    "AND datname = current_database()"
                ):
                    self.seen.append((time.perf_counter(), query))
                time.sleep(0.05)


def explain(op: str, w: Writer, st: Statements, av: Autovacuum, t0: float, t1: float) -> None:
    during = [i for i in w.inserts if i.end >= t0 and i.start <= t1]
    if not during:
        print(f"  {op}: no INSERT")
        return
    worst = max(during, key=lambda i: i.ms)
    waits = [m for i in during for m in i.messages if "waiting" in m or "acquired" in m]
    slow = [i for i in during if i.ms > SLOW_MS]
    print(
        f"\n== {op}: upgrade {t1 - t0:.2f} s, {len(during)} INSERTs, longest {worst.ms:.1f} ms, "
        f"{len(slow)} over {SLOW_MS:.0f} ms, load {' / '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    for i in sorted(slow, key=lambda i: -i.ms)[:4]:
        print(f"  INSERT {i.ms:.1f} ms at +{(i.start - t0) * 1000:.0f} ms")
        for m in i.messages:
            print(f"    writer: {m}")
        for s, e, pid, text in st.log:
            if e >= i.start - 0.002 and s <= i.end:
                print(f"    migration pid {pid} {(e - s) * 1000:7.1f} ms  {text}")
    if waits and not slow:
        print("  lock waits (short):", *waits[:3], sep="\n    ")
    vac = {q for t, q in av.seen if t0 <= t <= t1}
    if vac:
        print("  autovacuum during the upgrade:", *sorted(vac), sep="\n    ")


def round_(pg_url: str, rows: int, history: list[tuple[str, str]]) -> None:
    name = f"bench_blockers_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(pg_url).set(database=name)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench-blockers-"))
    st = Statements()
    try:
        ops.HISTORY = history
        changes, out = ops.project(tmp)
        migrate.upgrade(out, url, "0000")
        with psycopg.connect(dsn, autocommit=True) as raw:
            ops.prefill(raw, rows)
        writer = Writer(dsn, rows + 10)
        av = Autovacuum(dsn)
        av.thread.start()
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", st.before)
        sa.event.listen(sa.engine.Engine, "after_cursor_execute", st.after)
        try:
            for change, (op, _) in zip(changes[1:], history, strict=True):
                st.log.clear()
                writer.start()
                time.sleep(0.2)
                t0 = time.perf_counter()
                migrate.upgrade(out, url, change.revision)
                t1 = time.perf_counter()
                time.sleep(0.2)
                writer.finish()
                explain(op, writer, st, av, t0, t1)
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", st.before)
            sa.event.remove(sa.engine.Engine, "after_cursor_execute", st.after)
            av.stop.set()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("ops", nargs="*")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = p.parse_args(argv)
    wanted = set(args.ops) or {op for op, _ in ops.HISTORY}
    history = [(op, spec) for op, spec in ops.HISTORY if op in wanted]
    print(f"load before: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for r in range(args.rounds):
        print(f"\n##### round {r + 1}")
        round_(args.pg_url, args.rows, history)


if __name__ == "__main__":
    main(sys.argv[1:])
