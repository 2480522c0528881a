"""Migrate suite: every migration step after 0000, upgrade and downgrade, on pre-filled tables.

The steps are read from the generated migrations (Alembic's revision chain, base to head), so
a new change is measured as soon as it is generated. For each step ``prev -> rev``:

- **runtime**: ``migrate_rounds`` upgrades ``prev -> rev`` and as many downgrades
  ``rev -> prev`` (fewer once a step's rounds took ``migrate_budget_s``: at least one), each
  on a fresh database, through :mod:`generator.migrate` as
  ``schemagen upgrade`` runs them: the change's pre-checks, snapshots, DDL, post-checks and
  data checks are all inside the timing (and Alembic's start-up and connect). The phases the
  runtime logs (``schemagen`` logger) are kept beside the total.
- **blocking** (PostgreSQL): more upgrades on fresh databases (``migrate_rounds`` of them for a
  step the goal applies to, one for the exempt type change) while two threads work on the
  time-series table(s) the step touches (``market_data`` / ``alert_logs``; both when it touches
  neither, since their inserts still check foreign keys into the parents): one runs
  single-row INSERTs (autocommit, psycopg, values of the column types found in the database:
  ``Decimal`` for DECIMAL, ``float`` for FLOAT), the other SELECTs (a point lookup by id and a
  100-row id range, alternately). Every statement is timed; the longest one is the longest
  time a client was blocked (the worst round counts). The same load runs for
  ``migrate_idle_s`` before each upgrade starts, with no migration running: the idle
  reference. A statement that fails (a deadlock the server broke) is counted and reported.
  The same rounds again **with a long reader**: a transaction that has read every table the
  step touches (ACCESS SHARE) stays open for ``migrate_reader_s`` from the upgrade's start, so
  the step's DDL cannot get its lock; the runner's short lock waits and retries
  (generator.guard) must let the INSERTs and SELECTs through meanwhile.

A fresh database per round: the pre-filled baseline database is migrated step by step once,
and after every step a template is kept (``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, a
file copy on SQLite), vacuumed and analysed; each round clones the template of its start
revision outside the timing and drops the clone after it.

SQLite runs the runtime part only: a migration there holds the database's write lock for its
whole duration, so a concurrent writer waits (``busy_timeout``) for the full runtime, or fails.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
import yaml
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from benchmarks import data
from benchmarks.databases import (
    MIGRATIONS,
    ROOT,
    TIME_SERIES,
    BenchDatabase,
    Databases,
    admin_sql,
    analyse,
)
from benchmarks.settings import Settings
from benchmarks.timing import Progress, clock
from generator import migrate

CHANGES = ROOT / "changes"
GOAL_MS = 100.0  # the issue: index and foreign-key steps block a concurrent INSERT <= 100 ms
GOAL = (
    "index and foreign-key steps block a concurrent INSERT and SELECT for at most 100 ms each, "
    "also while a long reader transaction holds the step's tables "
    "(the column type change is measured and reported here; removing its lock is later work)"
)
# Operations whose step is exempt from the goal: their lock is known and reported only.
EXEMPT_OPS = frozenset({"alter_column_type"})
RANGE_ROWS = 100  # rows of the SELECT loader's id range
PRICE_COLUMN = {"market_data": "price", "alert_logs": "trigger_value"}


# --- the steps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    revision: str
    down_revision: str
    name: str  # the migration's file stem, e.g. 0001_optimize_market_data_indexes
    operations: tuple[str, ...]  # the change's op kinds, in order
    tables: tuple[str, ...]  # every table the change's operations name

    @property
    def load_tables(self) -> tuple[str, ...]:
        """The time-series tables the concurrent load works on."""
        touched = tuple(t for t in TIME_SERIES if t in self.tables)
        return touched or TIME_SERIES

    blocking: tuple[str, ...] = ()  # ops run with `online: false` (a maintenance window)

    @property
    def goal_applies(self) -> bool:
        """A type change is online by default (generator/online.py): the goal applies to it;
        only one declared `online: false` is exempt."""
        return not EXEMPT_OPS.intersection(self.blocking)


def steps(migrations_dir: Path = MIGRATIONS, changes_dir: Path = CHANGES) -> list[Step]:
    """Every migration step after the first revision, base to head, from Alembic's chain."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    scripts = ScriptDirectory.from_config(config)
    heads = scripts.get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the generated migrations have {len(heads)} heads: {heads}")
    chain = list(reversed(list(scripts.walk_revisions("base", heads[0]))))
    out = []
    for script in chain[1:]:
        down = script.down_revision
        if not isinstance(down, str):
            raise RuntimeError(f"revision {script.revision} is a merge or a root: {down!r}")
        name = Path(script.path).stem
        ops, tables = _change_ops(changes_dir / f"{name}.yaml")
        blocking = _blocking_ops(changes_dir / f"{name}.yaml")
        out.append(Step(script.revision, down, name, ops, tables, blocking))
    return out


def _change_ops(spec: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not spec.exists():
        return (), ()
    doc = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
    ops = [o for o in doc.get("operations") or [] if isinstance(o, dict)]
    kinds = tuple(str(o.get("op")) for o in ops)
    tables = tuple(dict.fromkeys(str(o["table"]) for o in ops if "table" in o))
    return kinds, tables


def _blocking_ops(spec: Path) -> tuple[str, ...]:
    if not spec.exists():
        return ()
    doc = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
    ops = [o for o in doc.get("operations") or [] if isinstance(o, dict)]
    return tuple(str(o.get("op")) for o in ops if o.get("online") is False)


# --- scratch databases: templates and clones ----------------------------------------------


@dataclass
class Scratch:
    """Per-revision templates and per-round clones of one dialect's pre-filled database."""

    dialect: str
    admin_url: str
    folder: Path | None  # SQLite: where the files go
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    templates: dict[str, URL] = field(default_factory=dict)
    _count: int = 0

    def _url(self, name: str) -> URL:
        if self.dialect == "sqlite":
            assert self.folder is not None
            return sa.make_url(f"sqlite:///{self.folder / f'{name}.db'}")
        return sa.make_url(self.admin_url).set(
            drivername="postgresql+psycopg", database=f"bench_{self.tag}_{name}"
        )

    def copy(self, source: URL, name: str) -> URL:
        target = self._url(name)
        if self.dialect == "sqlite":
            assert source.database and target.database
            shutil.copyfile(source.database, target.database)
        else:
            # FILE_COPY: a checkpoint and a file copy, faster here than WAL-logging every page
            # of a pre-filled database; the checkpoint also leaves no dirty pages to the round.
            self._admin(
                f'CREATE DATABASE "{target.database}" TEMPLATE "{source.database}" '
                "STRATEGY FILE_COPY"
            )
        return target

    def clone(self, revision: str) -> URL:
        self._count += 1
        return self.copy(self.templates[revision], f"m{revision}_r{self._count}")

    def drop(self, url: URL) -> None:
        if self.dialect == "sqlite":
            assert url.database
            Path(url.database).unlink(missing_ok=True)
            Path(url.database + "-journal").unlink(missing_ok=True)
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        admin_sql(self.admin_url, sql)

    @contextmanager
    def round_copy(self, revision: str) -> Iterator[URL]:
        url = self.clone(revision)
        try:
            yield url
        finally:
            self.drop(url)


def build_templates(
    scratch: Scratch, source: URL, chain: Sequence[Step], say: Callable[[str], None]
) -> None:
    """Migrate a copy of ``source`` (at the first step's start revision) step by step, keeping
    a vacuumed, analysed template at every revision."""
    first = chain[0].down_revision
    work = scratch.copy(source, "work")
    try:
        scratch.templates[first] = scratch.copy(work, f"m{first}_t")
        for step in chain:
            say(f"template {step.revision}: upgrading {step.down_revision} -> {step.revision}")
            migrate.upgrade(MIGRATIONS, work, step.revision)
            analyse(BenchDatabase(scratch.dialect, "baseline", "filled", work))
            scratch.templates[step.revision] = scratch.copy(work, f"m{step.revision}_t")
    finally:
        scratch.drop(work)


# --- timing a migration, with the phases the runtime logs ----------------------------------


class _Phases(logging.Handler):
    """Collects the durations of the steps generator.runtime logs (event 'end')."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ms: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "end":
            name = str(getattr(record, "step", "?"))
            if getattr(record, "depth", 0):  # inside a phase (an online type change's own)
                name = INNER + name
            self.ms[name] = self.ms.get(name, 0.0) + float(getattr(record, "duration_ms", 0.0))


@contextmanager
def _phases() -> Iterator[dict[str, float]]:
    logger = logging.getLogger("schemagen")
    handler = _Phases()
    level = logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        yield handler.ms
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def timed_migration(url: URL, direction: str, to: str) -> tuple[float, dict[str, float]]:
    """Seconds of one ``migrate.upgrade`` / ``migrate.downgrade``, and its logged phases (ms)."""
    with _phases() as phases:
        started = clock()
        if direction == "upgrade":
            migrate.upgrade(MIGRATIONS, url, to)
        else:
            migrate.downgrade(MIGRATIONS, url, to)
        seconds = clock() - started
    return seconds, dict(phases)


INNER = "> "  # the name prefix of a step logged inside another


def _runtime(samples: list[float], phases: list[dict[str, float]]) -> dict[str, Any]:
    names = list(dict.fromkeys(n for p in phases for n in p))

    def median(n: str) -> float:
        return statistics.median(p.get(n, 0.0) for p in phases)

    return {
        "median_s": statistics.median(samples),
        "samples_s": samples,
        "rounds": len(samples),
        # Median per logged phase: pre-checks, snapshot, the DDL (upgrade / downgrade), ...
        "phases_ms": {n: median(n) for n in names if not n.startswith(INNER)},
        # and of the steps inside them (an online type change's expand, backfill, ...)
        "inner_phases_ms": {n[len(INNER) :]: median(n) for n in names if n.startswith(INNER)},
    }


# --- the concurrent load (PostgreSQL) -------------------------------------------------------


Statement = Callable[[int], tuple[str, Sequence[Any]]]  # i -> (sql, params)


@dataclass
class _Sample:
    at: float  # seconds after the phase started
    seconds: float
    error: str | None = None


class Load:
    """Threads running statements in a loop on their own autocommit psycopg connections, each
    statement timed. ``take()`` returns and clears the samples of the phase that just ended."""

    def __init__(self, conninfo: str, workers: dict[str, Statement], pause_s: float = 0.0):
        self.conninfo = conninfo
        self.workers = workers
        self.pause_s = pause_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._samples: dict[str, list[_Sample]] = {name: [] for name in workers}
        self._phase_started = clock()
        self._threads: list[threading.Thread] = []
        self._connections: list[psycopg.Connection[Any]] = []

    def __enter__(self) -> Load:
        for name, statement in self.workers.items():
            # No automatic prepare: a cached plan must not outlive a column type change.
            conn = psycopg.connect(self.conninfo, autocommit=True, prepare_threshold=None)
            self._connections.append(conn)
            thread = threading.Thread(
                target=self._loop, args=(conn, name, statement), name=f"load-{name}", daemon=True
            )
            self._threads.append(thread)
        self._phase_started = clock()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for conn in self._connections:
            conn.close()
        self._threads, self._connections = [], []

    def _loop(self, conn: psycopg.Connection[Any], name: str, statement: Statement) -> None:
        i = 0
        while not self._stop.is_set():
            sql, params = statement(i)
            error = None
            started = clock()
            try:
                cursor = conn.execute(sql, params)
                if cursor.description is not None:
                    cursor.fetchall()
            except psycopg.Error as exc:
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            took = clock() - started
            with self._lock:
                self._samples[name].append(_Sample(started - self._phase_started, took, error))
            i += 1
            if self.pause_s:
                self._stop.wait(self.pause_s)

    def take_samples(self) -> dict[str, list[_Sample]]:
        """Every worker's samples since the last take (or the start); the next phase begins."""
        with self._lock:
            samples, self._samples = self._samples, {name: [] for name in self.workers}
            self._phase_started = clock()
        return samples

    def take(self) -> dict[str, dict[str, Any]]:
        """Statistics of every worker since the last take (or the start)."""
        return {name: stats(s) for name, s in self.take_samples().items()}


def stats(samples: Sequence[_Sample]) -> dict[str, Any]:
    ok = [s for s in samples if s.error is None]
    longest = max(samples, key=lambda s: s.seconds, default=None)
    errors = [s.error for s in samples if s.error is not None]
    return {
        "count": len(ok),
        "max_ms": longest.seconds * 1000 if longest else None,
        "max_at_s": longest.at if longest else None,
        "median_ms": statistics.median(s.seconds for s in ok) * 1000 if ok else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def _price_is_decimal(conninfo: str, table: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s AND column_name = %s",
            (table, PRICE_COLUMN[table]),
        ).fetchone()
    return row is not None and row[0] == "numeric"


def insert_statement(conninfo: str, tables: Sequence[str], first: dict[str, int]) -> Statement:
    """Single-row INSERTs alternating over ``tables``; row ``first[table] + k`` of
    :mod:`benchmarks.data`, with the price type the database has now."""
    decimal = {t: _price_is_decimal(conninfo, t) for t in tables}
    sql = {
        t: f"INSERT INTO {t} ({', '.join(data.columns_for(t))}) "
        f"VALUES ({', '.join('%s' for _ in data.columns_for(t))})"
        for t in tables
    }

    def statement(i: int) -> tuple[str, Sequence[Any]]:
        table = tables[i % len(tables)]
        n = first[table] + i // len(tables)
        rows = data.rows_for(table, n, 1, as_decimal=decimal[table])
        now = datetime.now(UTC)
        return sql[table], data.driver_tuples(table, rows, "postgresql", now)[0]

    return statement


def select_statement(tables: Sequence[str], ids: dict[str, int]) -> Statement:
    """A point lookup by id and a 100-row id range, alternately, over ``tables``."""

    def statement(i: int) -> tuple[str, Sequence[Any]]:
        table = tables[(i // 2) % len(tables)]
        price = PRICE_COLUMN[table]
        n = max(ids[table] - RANGE_ROWS, 1)
        start = 1 + (i * 2654435761) % n
        if i % 2 == 0:
            return f"SELECT id, instrument_id, timestamp, {price} FROM {table} WHERE id = %s", (
                start,
            )
        return (
            f"SELECT id, timestamp, {price} FROM {table} WHERE id BETWEEN %s AND %s ORDER BY id",
            (start, start + RANGE_ROWS - 1),
        )

    return statement


def conninfo(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class _LoadedRound:
    idle: dict[str, list[_Sample]]
    during: dict[str, list[_Sample]]
    upgrade_s: float
    error: str | None


@contextmanager
def long_reader(dsn: str, tables: Sequence[str], hold_s: float) -> Iterator[None]:
    """A transaction that has read ``tables`` (ACCESS SHARE on each) and stays open for
    ``hold_s`` from the start of the block, as a report query or an idle session would."""
    ready, stop = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(dsn) as conn:  # not autocommit: the locks last until commit
            for table in tables:
                conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchall()
            ready.set()
            stop.wait(hold_s)
            conn.commit()

    thread = threading.Thread(target=hold, name="long-reader", daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield
    finally:
        thread.join()


def loaded_round(
    url: URL, step: Step, sizes: dict[str, int], s: Settings, reader_s: float = 0.0
) -> _LoadedRound:
    """One upgrade of ``step`` under the concurrent load, after the idle reference; with
    ``reader_s``, while a reader transaction holds the step's tables that long."""
    dsn = conninfo(url)
    tables = step.load_tables
    workers = {
        "insert": insert_statement(dsn, tables, {t: sizes[t] + 1 for t in tables}),
        "select": select_statement(tables, sizes),
    }
    error = None
    with Load(dsn, workers, s.migrate_pause_s) as load:
        threading.Event().wait(s.migrate_idle_s)
        idle = load.take_samples()
        started = clock()
        reader = long_reader(dsn, step.tables or tables, reader_s) if reader_s else nullcontext()
        try:
            with reader:
                migrate.upgrade(MIGRATIONS, url, step.revision)
        except Exception as exc:  # reported: e.g. a data check that concurrent rows break
            error = f"{type(exc).__name__}: {exc}"
        seconds = clock() - started
        load.stop()
        during = load.take_samples()
    return _LoadedRound(idle, during, seconds, error)


def loaded_upgrade(
    scratch: Scratch, step: Step, sizes: dict[str, int], s: Settings, progress: Progress
) -> dict[str, Any]:
    """The upgrade under load, on fresh copies: ``migrate_rounds`` times for a step the goal
    applies to (a lock met by chance, such as a deadlock, shows in the worst round), once for
    an exempt one. Statistics over every statement of every round; the maxima per round."""
    rounds = s.migrate_rounds if step.goal_applies else 1
    done: list[_LoadedRound] = []
    for r in range(rounds):
        progress.step(f"{scratch.dialect} migrate {step.name}: under load {r + 1}/{rounds}")
        with scratch.round_copy(step.down_revision) as url:
            done.append(loaded_round(url, step, sizes, s))
    out: dict[str, Any] = {
        "rounds": rounds,
        "tables": list(step.load_tables),
        "upgrade_s": statistics.median(d.upgrade_s for d in done),
        "upgrade_samples_s": [d.upgrade_s for d in done],
        "error": next((d.error for d in done if d.error), None),
        "errors": [d.error for d in done],
        "idle": {},
    }
    for kind in ("insert", "select"):
        out[kind] = stats([x for d in done for x in d.during[kind]])
        out[kind]["max_ms_per_round"] = [stats(d.during[kind])["max_ms"] for d in done]
        out["idle"][kind] = stats([x for d in done for x in d.idle[kind]])
    if s.migrate_reader_s > 0:
        read: list[_LoadedRound] = []
        for r in range(rounds):
            progress.step(
                f"{scratch.dialect} migrate {step.name}: under load, long reader {r + 1}/{rounds}"
            )
            with scratch.round_copy(step.down_revision) as url:
                read.append(loaded_round(url, step, sizes, s, s.migrate_reader_s))
        out["with_reader"] = {
            "reader_s": s.migrate_reader_s,
            "upgrade_s": statistics.median(d.upgrade_s for d in read),
            "error": next((d.error for d in read if d.error), None),
        }
        for kind in ("insert", "select"):
            out["with_reader"][kind] = stats([x for d in read for x in d.during[kind]])
    return out


def verdict(case: dict[str, Any]) -> bool | None:
    """True / False: the goal met or not; None: not measured, or the step is exempt."""
    load = case.get("load")
    if not load or not case["goal_applies"] or load["insert"]["max_ms"] is None:
        return None
    return all(m is not None and m <= GOAL_MS for m in longest_blocked(load))


def longest_blocked(load: dict[str, Any]) -> list[float | None]:
    """The longest INSERT and SELECT, without and (if measured) with the long reader."""
    sides = [load, *([load["with_reader"]] if load.get("with_reader") else [])]
    return [side[kind]["max_ms"] for side in sides for kind in ("insert", "select")]


# --- the suite ---------------------------------------------------------------------------------


def run(dbs: Databases, s: Settings, progress: Progress) -> list[dict[str, Any]]:
    source = dbs.get("baseline", "filled")
    chain = steps()
    if not chain:
        return []
    if chain[0].down_revision != data.REVISIONS["baseline"]:
        raise RuntimeError(f"the chain starts at {chain[0].down_revision}, not at the baseline")
    folder = Path(source.sqlite_path).parent if dbs.dialect == "sqlite" else None
    scratch = Scratch(dbs.dialect, dbs.pg_admin_url, folder)
    label = f"{dbs.dialect} migrate"
    results = []
    try:
        build_templates(scratch, source.url, chain, lambda t: progress.note(f"{label}: {t}"))
        for step in chain:
            samples: dict[str, list[float]] = {"upgrade": [], "downgrade": []}
            phases: dict[str, list[dict[str, float]]] = {"upgrade": [], "downgrade": []}
            for r in range(s.migrate_rounds):
                for direction, start, to in (
                    ("upgrade", step.down_revision, step.revision),
                    ("downgrade", step.revision, step.down_revision),
                ):
                    progress.step(f"{label} {step.name}: {direction} {r + 1}/{s.migrate_rounds}")
                    with scratch.round_copy(start) as url:
                        seconds, logged = timed_migration(url, direction, to)
                    samples[direction].append(seconds)
                    phases[direction].append(logged)
                if sum(samples["upgrade"]) + sum(samples["downgrade"]) >= s.migrate_budget_s:
                    break  # a long step: fewer rounds (every sample is reported)
            result: dict[str, Any] = {
                "suite": "migrate",
                "name": step.name,
                "revision": step.revision,
                "down_revision": step.down_revision,
                "operations": list(step.operations),
                "tables": list(step.tables),
                "goal_applies": step.goal_applies,
                "checks_included": True,
                "rows_before": {"market_data": source.ticks, "alert_logs": source.alerts},
                "upgrade": _runtime(samples["upgrade"], phases["upgrade"]),
                "downgrade": _runtime(samples["downgrade"], phases["downgrade"]),
                "load": None,
            }
            if dbs.dialect == "postgresql":
                sizes = {"market_data": source.ticks, "alert_logs": source.alerts}
                result["load"] = loaded_upgrade(scratch, step, sizes, s, progress)
            result["goal_met"] = verdict(result)
            results.append(result)
            progress.note(f"{label}: {summary(result)}")
    finally:
        if dbs.keep:
            progress.note(f"{label}: kept the templates {describe(scratch)}")
        else:
            for url in scratch.templates.values():
                scratch.drop(url)
    return results


def describe(scratch: Scratch) -> str:
    return ", ".join(str(u.database) for u in scratch.templates.values())


def summary(case: dict[str, Any]) -> str:
    text = (
        f"{case['name']}: upgrade {case['upgrade']['median_s'] * 1000:,.0f} ms, "
        f"downgrade {case['downgrade']['median_s'] * 1000:,.0f} ms"
    )
    load = case.get("load")
    if load:
        ins, sel = load["insert"], load["select"]
        text += (
            f"; longest INSERT {ins['max_ms'] or 0:,.1f} ms, SELECT {sel['max_ms'] or 0:,.1f} ms"
            f" (idle {load['idle']['insert']['max_ms'] or 0:,.1f} / "
            f"{load['idle']['select']['max_ms'] or 0:,.1f} ms)"
        )
        reader = load.get("with_reader")
        if reader:
            text += (
                f"; with a {reader['reader_s']:g} s reader: INSERT "
                f"{reader['insert']['max_ms'] or 0:,.1f} ms, SELECT "
                f"{reader['select']['max_ms'] or 0:,.1f} ms"
                + (
                    f" (upgrade FAILED: {reader['error'].splitlines()[0]})"
                    if reader["error"]
                    else ""
                )
            )
        met = case.get("goal_met")
        text += {True: ", goal met", False: ", GOAL NOT MET", None: ", goal exempt"}[met]
        if load["error"]:
            text += f"; the loaded upgrade FAILED: {load['error'].splitlines()[0]}"
    return text
