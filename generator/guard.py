"""Bounded waits and one runner at a time.

A migration must never be the reason an application stalls, and two runners must never
interleave. This module holds what the runner does around the generated migrations for that:

- :func:`runner` (called by ``generated_migrations/env.py`` on the migration connection, before
  the first query of the run): sets ``lock_timeout`` / ``statement_timeout`` (PostgreSQL) or
  the busy timeout (SQLite), then takes the runner lock (a session advisory lock on
  PostgreSQL, ``flock`` on ``<database>.schemagen-lock`` on SQLite) for the whole run.
- :func:`retrying` (called by :func:`generator.runtime.run_change`): runs one change, and when a
  lock is not available within ``lock_timeout`` (SQLSTATE 55P03) rolls back to a savepoint
  taken at the start of the change (or of the transaction after its last CONCURRENTLY block),
  which releases every lock the attempt took, sleeps with exponential backoff and jitter, and
  runs the change again, a bounded number of times; then fails naming the blocking session.
- :func:`naming_failures`: an error after every step of a change succeeded (its COMMIT, e.g. a
  full disk on SQLite in WAL mode, or another connection's read lock) names the change.

Settings come from the CLI (``--lock-timeout`` ...), else the environment
(``SCHEMAGEN_LOCK_TIMEOUT`` ... for plain ``alembic upgrade``), else :class:`Settings`' defaults.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

log = logging.getLogger("schemagen")

# pg_try_advisory_lock(KEY_CLASS, key of the version table): both halves positive, so they
# read back unchanged from pg_locks' classid / objid (oids, unsigned).
KEY_CLASS = zlib.crc32(b"schemagen") & 0x7FFFFFFF
VERSION_TABLE = "alembic_version"
SAVEPOINT = "schemagen_attempt"
LOCK_NOT_AVAILABLE = "55P03"
ENV = {
    "lock_timeout": "SCHEMAGEN_LOCK_TIMEOUT",
    "lock_retries": "SCHEMAGEN_LOCK_RETRIES",
    "statement_timeout": "SCHEMAGEN_STATEMENT_TIMEOUT",
    "wait_for_runner": "SCHEMAGEN_WAIT_FOR_RUNNER",
    "backfill_workers": "SCHEMAGEN_BACKFILL_WORKERS",
    "max_replica_lag": "SCHEMAGEN_MAX_REPLICA_LAG",
    "replica_wait": "SCHEMAGEN_REPLICA_WAIT",
    "online_method": "SCHEMAGEN_ONLINE_METHOD",
}
# PostgreSQL online type changes (generator.online): "table" copies the rows into a new table
# and swaps it in (generator.online_table); "columns" adds shadow columns to the table; "auto"
# takes the table where nothing the swap cannot carry depends on it, else the columns.
ONLINE_METHODS = ("auto", "table", "columns")
MAX_BACKFILL_WORKERS = 16
_UNITS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}


class RunnerBusy(RuntimeError):
    """Another migration runner holds the runner lock (exit code 5)."""


class LockTimeout(RuntimeError):
    """A change could not get its locks within the bounded retries."""


class DatabaseBusy(RuntimeError):
    """SQLite: another connection held the database longer than the busy timeout."""


class ReplicaLagging(RuntimeError):
    """A replica did not replay a backfill's WAL within the runner's ``replica_wait``."""


class CommitFailed(RuntimeError):
    """Every step of a change succeeded, then its COMMIT (or revision stamp) failed."""


def parse_duration(text: str, what: str) -> int:
    """``50ms``, ``2s``, ``1min``, ``1h`` (or a bare number of milliseconds) -> milliseconds."""
    match = re.fullmatch(r"\s*([0-9]+)\s*(ms|s|min|h)?\s*", str(text))
    if not match:
        raise ValueError(f"{what}: {text!r} is not a duration (expected e.g. 50ms, 2s, 30min)")
    return int(match.group(1)) * _UNITS[match.group(2) or "ms"]


@dataclass(frozen=True)
class Settings:
    # The longest any statement that queues traffic behind it waits for a lock, per attempt.
    # A waiting ACCESS EXCLUSIVE request blocks every later INSERT and SELECT on the table, so
    # this is the stall a migration can add to a query: kept well under the 100 ms goal.
    lock_timeout_ms: int = 50
    lock_retries: int = 10  # attempts after the first, each after a backoff
    statement_timeout_ms: int = 30 * 60_000  # checks and steps; a change's spec may set its own
    wait_for_runner_s: float = 0.0  # how long a second runner waits for the first, then exit 5
    backoff_ms: int = 100  # first backoff; doubled per attempt up to backoff_max_ms, jittered
    backoff_max_ms: int = 2_000
    # PostgreSQL online type changes: the backfill of a table keyed by one integer column runs
    # in this many slices of the key range at once, each on a connection of its own
    # (generator.online; docs/online.md "Parallel slices"); 1: one loop, as before
    backfill_workers: int = 2
    # PostgreSQL backfills (batches.Batches): between batches, a replica replaying more than
    # this far behind (pg_stat_replication.replay_lag) pauses the batches until it has
    # replayed what they wrote, for at most replica_wait_ms; 0: replicas are not looked at
    max_replica_lag_ms: int = 2_000
    replica_wait_ms: int = 10 * 60_000
    online_method: str = "auto"  # ONLINE_METHODS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls().with_options(
            lock_timeout=env.get(ENV["lock_timeout"]),
            lock_retries=env.get(ENV["lock_retries"]),
            statement_timeout=env.get(ENV["statement_timeout"]),
            wait_for_runner=env.get(ENV["wait_for_runner"]),
            backfill_workers=env.get(ENV["backfill_workers"]),
            max_replica_lag=env.get(ENV["max_replica_lag"]),
            replica_wait=env.get(ENV["replica_wait"]),
            online_method=env.get(ENV["online_method"]),
        )

    def with_options(
        self,
        lock_timeout: str | None = None,
        lock_retries: str | int | None = None,
        statement_timeout: str | None = None,
        wait_for_runner: str | float | None = None,
        backfill_workers: str | int | None = None,
        max_replica_lag: str | None = None,
        replica_wait: str | None = None,
        online_method: str | None = None,
    ) -> Settings:
        """These settings with the given ones (CLI or environment text) replaced; a bad value
        raises ValueError naming the setting."""
        out = self
        if lock_timeout not in (None, ""):
            ms = parse_duration(str(lock_timeout), "lock timeout")
            if ms < 1:
                raise ValueError("lock timeout: must be at least 1ms")
            out = replace(out, lock_timeout_ms=ms)
        if lock_retries not in (None, ""):
            if not re.fullmatch(r"[0-9]{1,4}", str(lock_retries).strip()):
                raise ValueError(f"lock retries: {lock_retries!r} is not a number from 0 to 9999")
            out = replace(out, lock_retries=int(str(lock_retries)))
        if statement_timeout not in (None, ""):
            out = replace(
                out,
                statement_timeout_ms=parse_duration(str(statement_timeout), "statement timeout"),
            )
        if wait_for_runner not in (None, ""):
            try:
                seconds = float(str(wait_for_runner))
            except ValueError:
                seconds = -1.0
            if not 0 <= seconds <= 86_400:
                raise ValueError(f"wait for runner: {wait_for_runner!r} is not 0 to 86400 seconds")
            out = replace(out, wait_for_runner_s=seconds)
        if backfill_workers not in (None, ""):
            text = str(backfill_workers).strip()
            if not re.fullmatch(r"[0-9]{1,2}", text) or not 1 <= int(text) <= MAX_BACKFILL_WORKERS:
                raise ValueError(
                    f"backfill workers: {backfill_workers!r} is not a number from 1 to "
                    f"{MAX_BACKFILL_WORKERS}"
                )
            out = replace(out, backfill_workers=int(text))
        if max_replica_lag not in (None, ""):
            ms = parse_duration(str(max_replica_lag), "max replica lag")
            out = replace(out, max_replica_lag_ms=ms)
        if replica_wait not in (None, ""):
            ms = parse_duration(str(replica_wait), "replica wait")
            if ms < 1:
                raise ValueError("replica wait: must be at least 1ms")
            out = replace(out, replica_wait_ms=ms)
        if online_method not in (None, ""):
            method = str(online_method).strip().lower()
            if method not in ONLINE_METHODS:
                raise ValueError(
                    f"online method: {online_method!r} is not one of {', '.join(ONLINE_METHODS)}"
                )
            out = replace(out, online_method=method)
        return out

    def backoff_s(self, attempt: int) -> float:
        """Sleep before attempt ``attempt + 1``: exponential, with jitter between half and all
        of it, so that runners and retries of different changes do not fall into step."""
        ceiling = self._backoff_ms(attempt) / 1000
        return ceiling * (0.5 + random.random() / 2)

    def _backoff_ms(self, attempt: int) -> int:
        return int(min(self.backoff_max_ms, self.backoff_ms << max(attempt - 1, 0)))

    def bound_s(self) -> float:
        """The longest the retries of one change can wait in total (lock waits plus sleeps)."""
        sleeps = sum(self._backoff_ms(a) for a in range(1, self.lock_retries + 1))
        return ((self.lock_retries + 1) * self.lock_timeout_ms + sleeps) / 1000


def settings_of(connection: Connection) -> Settings:
    found = connection.info.get("schemagen.settings")
    return found if isinstance(found, Settings) else Settings.from_environment()


def _ms(ms: int) -> str:
    return f"'{int(ms)}ms'"


# ------------------------------------------------------------------------------- one runner


def _pg_holder(connection: Connection, key: int) -> str:
    row = connection.exec_driver_sql(
        "SELECT a.pid, a.application_name, a.state, a.backend_start, a.client_addr "
        "FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
        f"WHERE l.locktype = 'advisory' AND l.classid = {KEY_CLASS} AND l.objid = {key} "
        # advisory locks are per database: the holder in this one, not a runner elsewhere
        "AND l.objsubid = 2 AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    ).first()
    if row is None:
        return "its session is gone"
    started = row.backend_start.astimezone(UTC).isoformat(timespec="seconds")
    return (
        f"pid {row.pid}, application_name {row.application_name!r}, state {row.state}, "
        f"started {started}" + (f", from {row.client_addr}" if row.client_addr else "")
    )


def _pg_key(connection: Connection) -> int:
    schema = connection.exec_driver_sql("SELECT current_schema()").scalar() or ""
    return zlib.crc32(f"{schema}.{VERSION_TABLE}".encode()) & 0x7FFFFFFF


def _pg_session(connection: Connection, lock_timeout_ms: int, statement_timeout: str) -> None:
    """The session's waits: the runner's ``lock_timeout``, the ``statement_timeout`` (SQL)."""
    connection.exec_driver_sql(f"SET lock_timeout = {_ms(lock_timeout_ms)}")
    connection.exec_driver_sql(f"SET statement_timeout = {statement_timeout}")


@contextlib.contextmanager
def worker(connection: Connection, label: str) -> Iterator[Connection]:
    """A second session of the run beside the migration connection (PostgreSQL, autocommit:
    its caller issues BEGIN/COMMIT): the same database URL (a plain sync driver, as the
    Probe's), the same waits (the runner's lock_timeout; the statement_timeout and
    search_path the migration session has now, a change's own included), named
    ``schemagen pid=N <label>`` in pg_stat_activity; the runner's settings in its info."""
    s = settings_of(connection)
    statement_timeout = str(connection.exec_driver_sql("SHOW statement_timeout").scalar())
    search_path = str(connection.exec_driver_sql("SHOW search_path").scalar())
    url = connection.engine.url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"application_name": f"schemagen pid={os.getpid()} {label}"},
    )
    try:
        with engine.connect() as conn:
            conn.info["schemagen.settings"] = s
            # the run's probe names who blocks this session too (Blockers)
            if (probe := connection.info.get("schemagen.probe")) is not None:
                conn.info["schemagen.probe"] = probe
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                conn.info["schemagen.backend_pid"] = int(pid or 0)
            _pg_session(conn, s.lock_timeout_ms, "'" + statement_timeout.replace("'", "''") + "'")
            conn.exec_driver_sql(
                "SELECT set_config('search_path', %(p)s, false)", {"p": search_path}
            )
            yield conn
    finally:
        engine.dispose()


@contextlib.contextmanager
def _pg_runner(connection: Connection, s: Settings) -> Iterator[None]:
    name = connection.exec_driver_sql("SHOW application_name").scalar()
    if not name:
        # Named after the process, so that "another migration is running" names the process.
        connection.exec_driver_sql(f"SET application_name = 'schemagen pid={os.getpid()}'")
    _pg_session(connection, s.lock_timeout_ms, _ms(s.statement_timeout_ms))
    key = _pg_key(connection)
    deadline = time.monotonic() + s.wait_for_runner_s
    waited = False
    while True:
        # A try-lock in a poll, never a blocking pg_advisory_lock: a waiting runner must not
        # sit in any lock queue, and must give up at its deadline.
        got = connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({KEY_CLASS}, {key})")
        if got.scalar():
            break
        holder = _pg_holder(connection, key)
        connection.commit()
        if time.monotonic() >= deadline:
            raise RunnerBusy(
                f"another migration is running ({holder}); nothing was done. Wait for it, or "
                "run again with --wait-for-runner SECONDS (docs/rollback.md)"
            )
        if not waited:
            log.warning("waiting up to %gs for another migration (%s)", s.wait_for_runner_s, holder)
            waited = True
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
    connection.commit()  # Alembic must see no transaction of ours; the session lock stays
    probe = connection.info["schemagen.probe"] = Probe(connection)
    connection.commit()
    try:
        yield
    finally:
        probe.close()
        connection.info.pop("schemagen.probe", None)
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            if connection.in_transaction():
                connection.rollback()
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({KEY_CLASS}, {key})")
            connection.exec_driver_sql("RESET lock_timeout")
            connection.exec_driver_sql("RESET statement_timeout")
            if not name:
                connection.exec_driver_sql("RESET application_name")
            connection.commit()


def _sqlite_file(connection: Connection) -> Path | None:
    database = connection.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


@contextlib.contextmanager
def _sqlite_runner(connection: Connection, s: Settings) -> Iterator[None]:
    # The busy timeout bounds every wait for the database's lock: SQLite retries internally
    # (sleeping 1 ms up to 100 ms between tries), so one bound equal to the PostgreSQL retry
    # budget is the same promise. A waiting SQLite connection queues nobody behind it.
    busy_ms = int(s.bound_s() * 1000)
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
    finally:
        cursor.close()
    connection.info["schemagen.busy_ms"] = busy_ms
    path = _sqlite_file(connection)
    if path is None:
        yield
        return
    with _lock_file(path, s):
        yield


@contextlib.contextmanager
def _lock_file(path: Path, s: Settings) -> Iterator[None]:
    # A lock file, not BEGIN IMMEDIATE: the write lock would have to be held across every
    # change of the run, stopping the application's writers for the whole run, and a
    # migration's own transactions would be inside it. flock is released by the kernel when
    # the process dies, so a killed runner leaves no stale lock.
    import fcntl

    lock_path = path.with_name(path.name + ".schemagen-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + s.wait_for_runner_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
                if time.monotonic() >= deadline:
                    raise RunnerBusy(
                        f"another migration is running ({holder}; lock file {lock_path}); "
                        "nothing was done. Wait for it, or run again with "
                        "--wait-for-runner SECONDS (docs/rollback.md)"
                    ) from None
                if not waited:
                    log.warning(
                        "waiting up to %gs for another migration (%s)", s.wait_for_runner_s, holder
                    )
                    waited = True
                time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def runner(connection: Connection, settings: Settings | None = None) -> Iterator[None]:
    """The whole run on ``connection``: timeouts set before its first query, the runner lock
    held until the end. Raises :class:`RunnerBusy` when another runner holds it."""
    if connection.info.get("schemagen.runner"):
        # Re-entered on the same connection (generator.migrate takes the lock before it moves
        # a half-applied change, then Alembic runs env.py, which takes it again): held already.
        yield
        return
    s = settings or Settings.from_environment()
    connection.info["schemagen.settings"] = s
    if connection.in_transaction():
        connection.commit()
    dialect = connection.dialect.name
    hold = (
        _pg_runner if dialect == "postgresql" else _sqlite_runner if dialect == "sqlite" else None
    )
    try:
        if hold is None:
            yield
            return
        with hold(connection, s):
            connection.info["schemagen.runner"] = True
            try:
                yield
            finally:
                connection.info.pop("schemagen.runner", None)
    finally:
        connection.info.pop("schemagen.settings", None)


# ------------------------------------------------------------------ bounded read-only waits


_HOLDERS = (
    "SELECT a.pid, a.application_name, a.state, a.query_start, "
    "split_part(a.query, E'\\n', 1) AS query, l.granted, "
    "coalesce(c.relname::text, l.locktype) AS object "
    "FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
    "LEFT JOIN pg_class AS c ON c.oid = l.relation "
    "WHERE l.mode = 'AccessExclusiveLock' AND l.locktype = 'relation' "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.pid <> pg_backend_pid() ORDER BY l.granted DESC, a.query_start NULLS LAST"
)


def _pg_exclusive_holders(connection: Connection) -> str:
    """Who can block a reader: the sessions holding (or queued for) ACCESS EXCLUSIVE on a
    relation of this database, the only mode that conflicts with a read's ACCESS SHARE."""
    try:
        if connection.in_transaction():
            connection.rollback()
        rows = connection.exec_driver_sql(_HOLDERS).all()
        connection.rollback()
    except sa.exc.SQLAlchemyError:
        return "a session that could not be looked up"
    if not rows:
        return "a session that has finished since"
    return "; ".join(
        f"{_describe(r)}, {'holding' if r.granted else 'waiting for'} ACCESS EXCLUSIVE on "
        f"{r.object}"
        for r in rows[:5]
    )


@contextlib.contextmanager
def bounded(connection: Connection, what: str, settings: Settings | None = None) -> Iterator[None]:
    """A read-only command (``verify``, ``status``) on ``connection``, bounded like a run:
    its statements wait for a lock at most the run's whole retry budget (:meth:`Settings.bound_s`,
    in one wait: a waiting read queues no one behind it) and last at most the statement timeout
    (PostgreSQL), or wait that long on the busy timeout (SQLite); then it fails naming what
    held the database, as :class:`LockTimeout` / :class:`DatabaseBusy`."""
    s = settings or Settings.from_environment()
    bound_ms = read_bound_ms(s)
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql(f"SET lock_timeout = {_ms(bound_ms)}")
        connection.exec_driver_sql(f"SET statement_timeout = {_ms(s.statement_timeout_ms)}")
        connection.commit()  # kept by the session, whatever the command does with transactions
    elif dialect == "sqlite":
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {bound_ms}")
        finally:
            cursor.close()
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if dialect == "postgresql" and is_lock_timeout(exc):
            raise LockTimeout(
                f"{what}: a lock was not available within {bound_ms} ms; blocked by "
                f"{_pg_exclusive_holders(connection)}. Nothing was changed; run it again once "
                f"that session is done (the bound: {ENV['lock_timeout']} and "
                f"{ENV['lock_retries']}, as for a run's retries)"
            ) from exc
        if dialect == "postgresql" and sqlstate(exc) == "57014":
            raise LockTimeout(
                f"{what}: a statement ran longer than the statement timeout "
                f"({s.statement_timeout_ms} ms); nothing was changed"
            ) from exc
        if dialect == "sqlite" and is_sqlite_busy(exc):
            raise sqlite_busy(what, bound_ms, _sqlite_file(connection)) from exc
        raise


def read_bound_ms(settings: Settings | None = None) -> int:
    """How long a read-only command waits for a lock: a run's whole retry budget."""
    return max(int((settings or Settings.from_environment()).bound_s() * 1000), 1)


def sqlite_busy(what: str, bound_ms: int, path: Path | None) -> DatabaseBusy:
    return DatabaseBusy(
        f"{what}: another connection held the SQLite database for longer than the busy "
        f"timeout ({bound_ms} ms){_sqlite_holder(path)}. Nothing was changed; run it again "
        "once that connection is done"
    )


def _sqlite_holder(path: Path | None) -> str:
    """The runner holding the database's lock file, if that is who it is."""
    lock_path = path.with_name(path.name + ".schemagen-lock") if path is not None else None
    try:
        holder = lock_path.read_text(encoding="utf-8").strip() if lock_path else ""
    except OSError:
        holder = ""
    return f" (a migration runner holds {lock_path.name}: {holder})" if holder and lock_path else ""


# ----------------------------------------------------------------------------- lock retries


def sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for source in (orig, getattr(orig, "__cause__", None)):
        code = getattr(source, "sqlstate", None) or getattr(source, "pgcode", None)
        if code:
            return str(code)
    return None


def is_lock_timeout(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.DBAPIError) and sqlstate(exc) == LOCK_NOT_AVAILABLE


def is_sqlite_busy(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).lower()
    return getattr(orig, "sqlite_errorcode", None) == 5 or "database is locked" in text


class Probe:
    """A second connection of the run that asks who blocks the migration connection while a
    statement waits (once lock_timeout fires the wait is over and pg_blocking_pids empty).
    Opened when the run starts, so that asking costs one query, not a connect."""

    # pg_blocking_pids takes every lock-manager partition lock: called once (in FROM, not
    # per row of pg_stat_activity, as `pid = ANY (pg_blocking_pids(..))` in WHERE would be)
    # and only while the backend waits on a lock, so that asking during a backfill's
    # batches costs the server next to nothing.
    QUERY = (
        "SELECT a.pid, a.application_name, a.state, a.query_start, a.xact_start, "
        "split_part(a.query, E'\\n', 1) AS query FROM unnest(CASE WHEN (SELECT "
        "w.wait_event_type FROM pg_stat_get_activity({pid}) AS w) = 'Lock' THEN "
        "pg_blocking_pids({pid}) END) AS b(pid) CROSS JOIN LATERAL pg_stat_get_activity(b.pid) "
        "AS a ORDER BY a.xact_start NULLS LAST"
    )

    def __init__(self, connection: Connection):
        self.pid = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() or 0)
        self._lock = threading.Lock()
        self._engine: sa.Engine | None = None
        self._conn: Connection | None = None
        self.failed: str | None = None  # why there is no probe connection, if there is none
        try:
            # A plain sync driver, whatever the migration uses (asyncpg included).
            url = connection.engine.url.set(drivername="postgresql+psycopg")
            self._engine = sa.create_engine(
                url,
                poolclass=sa.pool.NullPool,
                isolation_level="AUTOCOMMIT",
                connect_args={"application_name": f"schemagen probe pid={os.getpid()}"},
            )
            self._conn = self._engine.connect()
        except Exception as exc:  # no probe: the messages say the blocker is unknown, and why
            self.failed = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
            self.close()

    def blockers(self, pid: int | None = None) -> list[str]:
        """Who blocks the backend ``pid`` (the migration connection's when None: a worker
        of the run, a backfill slice, asks with its own)."""
        with self._lock:
            if self._conn is None:
                return []
            try:
                rows = self._conn.exec_driver_sql(self.QUERY.format(pid=int(pid or self.pid))).all()
            except Exception:
                return []
        return [_describe(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            if self._engine is not None:
                self._engine.dispose()
            self._conn, self._engine = None, None


class Blockers:
    """Asks the run's :class:`Probe` who blocks a statement of ``connection`` (on a worker
    connection: that worker's backend) while it waits: once it has run half the lock timeout
    in force (the runner's, or a change's shorter one: ``schemagen.lock_ms``), then every half
    of it for as long as it runs, from one watching thread for the whole unit of work. (It was
    a timer thread a statement, asking once at half the runner's timeout: never in time for a
    change with a shorter one, and often late for a 50 ms wait on a loaded machine.) Without
    a probe (SQLite, or no probe connection) it watches nothing."""

    def __init__(self, connection: Connection):
        self.connection = connection
        probe = connection.info.get("schemagen.probe")
        self.probe: Probe | None = probe if isinstance(probe, Probe) else None
        self.pid: int | None = connection.info.get("schemagen.backend_pid")
        self.seen: str | None = None
        self._runner_ms = settings_of(connection).lock_timeout_ms
        self._cond = threading.Condition()
        # the running statement: (its number, when it started, the interval between asks)
        self._running: tuple[int, float, float] | None = None
        self._count = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def ask(self) -> None:
        if self.probe is not None:
            found = self.probe.blockers(self.pid)
            if found:
                self.seen = "; ".join(found)

    def before(self, *args: Any) -> None:
        ms = self.connection.info.get("schemagen.lock_ms")
        half_s = (ms if isinstance(ms, int) and ms > 0 else self._runner_ms) / 2000
        with self._cond:
            self._count += 1
            self._running = (self._count, time.monotonic(), max(half_s, 0.005))
            self._cond.notify()

    def cancel(self, *args: Any) -> None:
        with self._cond:
            self._running = None

    def _watch(self) -> None:
        statement, due = 0, 0.0
        while True:
            with self._cond:
                while not self._closed and self._running is None:
                    self._cond.wait()
                running = self._running
                if self._closed or running is None:
                    return
                number, started, every = running
                if number != statement:
                    statement, due = number, started + every
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)  # woken early by the statement's end or the next
                    continue
                due = time.monotonic() + every
            self.ask()  # outside the condition: a query on the probe's connection

    def __enter__(self) -> Blockers:
        if self.probe is not None:  # nothing to ask without one: no listener, no thread
            event.listen(self.connection, "before_cursor_execute", self.before)
            event.listen(self.connection, "after_cursor_execute", self.cancel)
            self._thread = threading.Thread(target=self._watch, name="schemagen-blockers")
            self._thread.daemon = True
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        event.remove(self.connection, "before_cursor_execute", self.before)
        event.remove(self.connection, "after_cursor_execute", self.cancel)
        with self._cond:
            self._closed, self._running = True, None
            self._cond.notify()
        self._thread.join(timeout=5)

    def take(self) -> str:
        self.cancel()  # a failed statement fires no after_cursor_execute
        seen, self.seen = self.seen, None
        if seen:
            return seen
        if self.probe is not None and self.probe.failed:
            return f"a session not known (the run's probe could not connect: {self.probe.failed})"
        return "a session the probe did not see (it may have finished)"


def _describe(row: Any) -> str:
    start = (
        row.query_start.astimezone(UTC).isoformat(timespec="seconds") if row.query_start else "-"
    )
    query = (row.query or "").strip()[:120]
    return (
        f"pid {row.pid}, application_name {row.application_name!r}, state {row.state}, "
        f"query start {start}, query {query!r}"
    )


CURRENT_STEP: list[str] = ["pre-checks"]


def note_step(name: str) -> None:
    """The step a lock timeout is attributed to in the retry log (runtime.step calls it)."""
    CURRENT_STEP[0] = name


def set_change_timeouts(connection: Connection, lock_timeout: str, statement_timeout: str) -> None:
    """A change's own ``postgresql:`` settings (spec): ``lock_timeout`` is a ceiling on the
    runner's for statements that queue traffic, and the wait of CONCURRENTLY / VALIDATE
    steps, which queue none; ``statement_timeout`` replaces the runner's for the change."""
    s = settings_of(connection)
    spec_ms = parse_duration(lock_timeout, "lock_timeout")
    connection.info["schemagen.autocommit_lock_ms"] = spec_ms
    connection.info["schemagen.lock_ms"] = min(s.lock_timeout_ms, spec_ms)
    connection.exec_driver_sql(f"SET lock_timeout = {_ms(connection.info['schemagen.lock_ms'])}")
    connection.exec_driver_sql(f"SET statement_timeout = '{statement_timeout}'")


def set_block_lock_wait(connection: Connection, short: bool) -> None:
    """In a CONCURRENTLY block: the runner's lock_timeout (``short``) or the change's own."""
    s = settings_of(connection)
    ms = s.lock_timeout_ms if short else connection.info.get("schemagen.autocommit_lock_ms")
    connection.exec_driver_sql(
        f"SET lock_timeout = {_ms(ms if ms is not None else s.lock_timeout_ms)}"
    )


def _sqlite_write_lock(connection: Connection) -> None:
    """Take SQLite's write lock before the change's first check, waiting the busy timeout.

    SQLite never waits for a write lock in a transaction that has read (Alembic reads the
    version table first): it fails at once, to avoid a deadlock. A no-op write shows whether
    the transaction holds the lock; if not, it has written nothing, and is replaced by
    ``BEGIN IMMEDIATE``, which waits."""
    from generator import version_table

    probe = f"UPDATE {version_table.get()} SET version_num = version_num WHERE 0"
    try:
        connection.exec_driver_sql(probe)
        return
    except sa.exc.OperationalError as exc:
        if not is_sqlite_busy(exc):
            return  # no version table (yet): the change's first write takes the lock
    connection.exec_driver_sql("ROLLBACK")
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def lock_wait(
    exc: BaseException,
    attempt: int,
    settings: Settings,
    blockers: Blockers | None,
    refusal: Callable[[int, str], str],
) -> tuple[str, float]:
    """The one decision after a failed attempt of a unit of work that waits for locks under
    the runner's lock_timeout (a change's transaction, an online phase's short transaction, a
    batch), once the attempt is rolled back: what is no lock wait (nor SQLite's busy) is
    raised again; past the last retry, LockTimeout with ``refusal(attempts, blocker)``;
    otherwise (the session that blocked it, the backoff before the next attempt)."""
    if not (is_lock_timeout(exc) or is_sqlite_busy(exc)):
        raise exc
    who = blockers.take() if blockers is not None else "another writer"
    if attempt > settings.lock_retries:
        raise LockTimeout(refusal(attempt, who)) from exc
    return who, settings.backoff_s(attempt)


def retrying(connection: Connection, change: str, attempt: Callable[[bool], None]) -> None:
    """Run ``attempt(from_start)`` until it gets its locks, at most ``lock_retries`` more times.

    ``from_start`` is False once a CONCURRENTLY / VALIDATE block of the change has committed:
    the retry then runs the change's steps again (each is idempotent, as for a resumed run)
    without the checks of the state before, which that commit already changed.
    """
    connection.info["schemagen.change"] = change
    connection.info["schemagen.steps_done"] = False
    if connection.dialect.name == "sqlite":
        _sqlite_write_lock(connection)
        attempt(True)
        connection.info["schemagen.steps_done"] = True
        return
    if connection.dialect.name != "postgresql":
        attempt(True)
        connection.info["schemagen.steps_done"] = True
        return
    s = settings_of(connection)
    committed = False

    def on_commit(conn: Connection) -> None:
        nonlocal committed
        committed = True

    def on_begin(conn: Connection) -> None:
        # A transaction after a CONCURRENTLY block: a new savepoint to roll back to. In the
        # block itself (autocommit), the change's own lock_timeout: such steps queue nobody.
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            ms = conn.info.get("schemagen.autocommit_lock_ms", s.lock_timeout_ms)
            conn.exec_driver_sql(f"SET lock_timeout = {_ms(ms)}")
        else:
            ms = conn.info.get("schemagen.lock_ms", s.lock_timeout_ms)
            conn.exec_driver_sql(f"SET lock_timeout = {_ms(ms)}")
            conn.exec_driver_sql(f"SAVEPOINT {SAVEPOINT}")

    def refusal(attempts: int, blocker: str) -> str:
        kept = (
            "Its CONCURRENTLY / VALIDATE steps that had committed stay; "
            if committed
            else "Nothing of the change was applied; "
        )
        return (
            f"{change}: {CURRENT_STEP[0]} could not get its lock in {attempts} attempt(s) of "
            f"{s.lock_timeout_ms} ms (within {s.bound_s():.1f} s with backoff); blocked by "
            f"{blocker}. {kept}the revision is not stamped. Run the same command again once "
            "that session is done; it continues (docs/rollback.md)"
        )

    event.listen(connection, "commit", on_commit)
    event.listen(connection, "begin", on_begin)
    try:
        with Blockers(connection) as blockers:
            for number in range(1, s.lock_retries + 2):
                connection.info.pop("schemagen.lock_ms", None)
                connection.info.pop("schemagen.autocommit_lock_ms", None)
                connection.exec_driver_sql(f"SET lock_timeout = {_ms(s.lock_timeout_ms)}")
                connection.exec_driver_sql(f"SET statement_timeout = {_ms(s.statement_timeout_ms)}")
                connection.exec_driver_sql(f"SAVEPOINT {SAVEPOINT}")
                try:
                    attempt(not committed)
                    connection.info["schemagen.steps_done"] = True
                    return
                except sa.exc.DBAPIError as exc:
                    if not is_lock_timeout(exc):
                        raise
                    step_name = CURRENT_STEP[0]
                    # Releases every lock this attempt took (after a CONCURRENTLY block: every
                    # lock of the transaction since); traffic runs while we sleep.
                    connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                    blocker, pause = lock_wait(exc, number, s, blockers, refusal)
                    log.warning(
                        "%s: %s: lock not available (attempt %d of %d, blocked by %s); "
                        "retrying in %.0f ms",
                        change,
                        step_name,
                        number,
                        s.lock_retries + 1,
                        blocker,
                        pause * 1000,
                        extra={
                            "event": "end",
                            "change": change,
                            "step": step_name,
                            "dialect": "postgresql",
                            "result": f"lock timeout, retry {number}",
                        },
                    )
                    time.sleep(pause)
    finally:
        event.remove(connection, "commit", on_commit)
        event.remove(connection, "begin", on_begin)


# ------------------------------------------------------------------------ naming the change


@contextlib.contextmanager
def naming_failures(connection: Connection) -> Iterator[None]:
    """Errors of the run that name no change get the change's name: a busy SQLite database,
    and a failure after every step of a change passed (its revision stamp or COMMIT)."""
    connection.info.pop("schemagen.change", None)
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        change = connection.info.get("schemagen.change")
        if change is None:
            raise
        dialect = connection.dialect.name
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        busy = dialect == "sqlite" and is_sqlite_busy(exc)
        held = (
            f"another connection held the SQLite database for longer than the busy timeout "
            f"({connection.info.get('schemagen.busy_ms', '?')} ms); "
            if busy
            else ""
        )
        if connection.info.get("schemagen.steps_done"):
            raise CommitFailed(
                f"{change}: every step passed, but its COMMIT failed on {dialect}: {held}"
                f"{detail}. The change is NOT applied: its last transaction was rolled back "
                "and the revision not stamped"
                + (
                    " (steps of CONCURRENTLY / VALIDATE blocks that had committed stay)"
                    if dialect == "postgresql"
                    else ""
                )
                + "; fix the cause and run the same command again"
            ) from exc
        if busy:
            raise DatabaseBusy(
                f"{change}: {held}{detail}. The change is not applied; run the same command "
                "again once the other connection is done (docs/rollback.md)"
            ) from exc
        raise
    finally:
        connection.info.pop("schemagen.change", None)
        connection.info.pop("schemagen.steps_done", None)
