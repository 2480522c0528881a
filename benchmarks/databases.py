"""Scratch databases for one benchmark run: baseline (0000), phase 1 as specified (0004) and
head, each empty and pre-filled.

Per dialect, up to six databases are built and dropped again at the end of the run:

===================  ===============================================================
``baseline/empty``   revision 0000, instruments and rules only
``phase1/empty``     revision 0004 (phase 1 as the requirements specify it), the same
``head/empty``       head, the same
``baseline/filled``  revision 0000 plus ``prefill`` ticks and ``prefill_alerts`` alerts
``phase1/filled``    revision 0004 plus the same rows, 1 % of them soft-deleted
``head/filled``      head plus the same rows, the same 1 % soft-deleted
===================  ===============================================================

The phase-1 pair is built only for the suites that compare it (insert and query: the trade
of change 0005 side by side).

Each revision is migrated once with the generated migrations (``generator.migrate``); the
filled database is a copy of the empty one (a file copy on SQLite, ``CREATE DATABASE ...
TEMPLATE`` on PostgreSQL) loaded in SQL by :mod:`benchmarks.data`, then analysed (and on
PostgreSQL vacuumed, so the visibility map allows index-only scans). Autovacuum is switched
off on the two time-series tables of the benchmark databases, so it never runs in the middle
of a measurement; the insert suite vacuums itself after it restores a table.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from benchmarks import data
from generator import db, migrate

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "generated_migrations"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REVISIONS = ("baseline", "phase1", "head")
FILLS = ("empty", "filled")
TIME_SERIES = ("market_data", "alert_logs")


@dataclass
class BenchDatabase:
    dialect: str
    revision: str  # "baseline" (0000) | "phase1" (0004, phase 1 as specified) | "head"
    fill: str  # "empty" | "filled"
    url: URL  # the sync URL (pysqlite / psycopg)
    ticks: int = 0
    alerts: int = 0

    @property
    def async_url(self) -> URL:
        driver = "sqlite+aiosqlite" if self.dialect == "sqlite" else "postgresql+asyncpg"
        return self.url.set(drivername=driver)

    @property
    def sqlite_path(self) -> str:
        assert self.dialect == "sqlite" and self.url.database
        return self.url.database

    def asyncpg_dsn(self) -> str:
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def engine(self) -> sa.Engine:
        """A sync engine as the migration tool makes it (SQLite: foreign keys on)."""
        return db.make_engine(self.url)


@dataclass
class Databases:
    """The four databases of one dialect; :meth:`build` creates them, :meth:`drop` removes."""

    dialect: str
    pg_admin_url: str = DEFAULT_PG_URL
    workdir: Path | None = None
    keep: bool = False
    all: dict[tuple[str, str], BenchDatabase] = field(default_factory=dict)
    _tmp: Path | None = None
    _tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def get(self, revision: str, fill: str) -> BenchDatabase:
        return self.all[(revision, fill)]

    # -- building -----------------------------------------------------------------------

    def build(
        self,
        prefill: int,
        prefill_alerts: int,
        say: Callable[[str], None],
        revisions: tuple[str, ...] = REVISIONS,
    ) -> None:
        for revision in revisions:
            empty = self._create(revision, "empty")
            say(f"migrating {revision} ({data.REVISIONS[revision]})")
            migrate.upgrade(MIGRATIONS, empty.url, data.REVISIONS[revision])
            filled = self._clone(empty, "filled")
            for target in (empty, filled):
                with target.engine().begin() as conn:
                    data.reference_rows(conn)
                    if self.dialect == "postgresql":
                        for table in TIME_SERIES:
                            conn.exec_driver_sql(
                                f"ALTER TABLE {table} SET (autovacuum_enabled = false)"
                            )
            say(f"loading {revision}: {prefill:,} ticks, {prefill_alerts:,} alerts")
            with filled.engine().begin() as conn:
                data.load_ticks(conn, prefill, revision)
                data.load_alerts(conn, prefill_alerts, revision)
                if revision != "baseline":
                    data.soft_delete_some(conn, prefill, prefill_alerts)
                for table in TIME_SERIES:
                    data.reset_identity(conn, table)
            filled.ticks, filled.alerts = prefill, prefill_alerts
            for target in (empty, filled):
                analyse(target)

    def _create(self, revision: str, fill: str) -> BenchDatabase:
        if self.dialect == "sqlite":
            if self._tmp is None:
                base = str(self.workdir) if self.workdir else None
                self._tmp = Path(tempfile.mkdtemp(prefix="schemagen-bench-", dir=base))
            url = sa.make_url(f"sqlite:///{self._tmp / f'{revision}_{fill}.db'}")
        else:
            name = f"bench_{self._tag}_{revision}_{fill}"
            self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
            url = sa.make_url(self.pg_admin_url).set(drivername="postgresql+psycopg", database=name)
        bench = BenchDatabase(self.dialect, revision, fill, url)
        self.all[(revision, fill)] = bench
        return bench

    def _clone(self, source: BenchDatabase, fill: str) -> BenchDatabase:
        if self.dialect == "sqlite":
            assert self._tmp is not None
            path = self._tmp / f"{source.revision}_{fill}.db"
            shutil.copyfile(source.sqlite_path, path)
            url = sa.make_url(f"sqlite:///{path}")
        else:
            name = f"bench_{self._tag}_{source.revision}_{fill}"
            self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{source.url.database}"')
            url = source.url.set(database=name)
        bench = BenchDatabase(self.dialect, source.revision, fill, url)
        self.all[(source.revision, fill)] = bench
        return bench

    def _admin(self, sql: str) -> None:
        admin_sql(self.pg_admin_url, sql)

    def drop(self) -> None:
        if self.keep:
            return
        if self.dialect == "sqlite":
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
            return
        for bench in self.all.values():
            self._admin(f'DROP DATABASE IF EXISTS "{bench.url.database}" WITH (FORCE)')

    def describe(self) -> str:
        if self.dialect == "sqlite":
            return str(self._tmp)
        return ", ".join(str(b.url.database) for b in self.all.values())


def analyse(bench: BenchDatabase, tables: tuple[str, ...] = ()) -> None:
    """Fresh planner statistics (and, on PostgreSQL, a vacuumed visibility map)."""
    engine = sa.create_engine(bench.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if bench.dialect == "sqlite":
                conn.exec_driver_sql("ANALYZE")
            else:
                targets = tables or ("instruments", "alert_rules", *TIME_SERIES)
                for table in targets:
                    conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    finally:
        engine.dispose()


def admin_sql(admin_url: str, sql: str) -> None:
    """One statement outside a transaction (CREATE / DROP DATABASE) on the admin URL."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        admin.dispose()


def postgres_admin_url(explicit: str | None) -> str:
    return explicit or os.environ.get("TEST_POSTGRES_URL") or DEFAULT_PG_URL


# --- a quiet disk before a timed run ------------------------------------------------------

DISKSTATS = Path("/proc/diskstats")


def _disk_activity() -> tuple[int, int] | None:
    """(I/Os in flight, writes + discards + flushes completed) summed over the whole disks
    of /proc/diskstats (partitions, loop and ram devices left out); None where the file is
    missing (not Linux)."""
    try:
        lines = DISKSTATS.read_text().splitlines()
    except OSError:
        return None
    names = [line.split()[2] for line in lines if len(line.split()) > 13]
    in_flight = done = 0
    for line in lines:
        f = line.split()
        if len(f) < 14 or f[2].startswith(("loop", "ram", "zram")):
            continue
        if any(f[2] != other and f[2].startswith(other) for other in names):
            continue  # a partition of a disk counted already (vda1 of vda, nvme0n1p1)
        in_flight += int(f[11])
        done += int(f[7]) + (int(f[14]) if len(f) > 14 else 0) + (int(f[18]) if len(f) > 18 else 0)
    return in_flight, done


def settle_disk(admin_url: str, quiet_s: float = 1.0, most_s: float = 120.0) -> float:
    """Wait until the disk is quiet, outside any timing: a checkpoint (the server's dirty
    buffers written), the kernel's dirty pages synced, then until no I/O is in flight and at
    most a few writes complete per ``quiet_s`` (the WAL writer and the statistics). A
    database just copied (CREATE DATABASE ... FILE_COPY) or dropped (its files unlinked,
    their blocks discarded on a ``discard`` mount) keeps the disk busy for seconds after the
    statement returns, and a timed run starting then has its commits' WAL flushes queue
    behind that I/O. Returns the seconds waited (``most_s`` at most)."""
    started = time.perf_counter()
    admin_sql(admin_url, "CHECKPOINT")
    os.sync()
    last = _disk_activity()
    if last is None:
        return time.perf_counter() - started
    calm_since = time.perf_counter()
    while time.perf_counter() - started < most_s:
        time.sleep(quiet_s / 4)
        now = _disk_activity()
        assert now is not None
        if now[0] > 0 or now[1] - last[1] > 4:
            calm_since = time.perf_counter()
        elif time.perf_counter() - calm_since >= quiet_s:
            break
        last = now
    return time.perf_counter() - started
