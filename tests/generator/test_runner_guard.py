"""The runner waits a bounded time for locks and runs alone (generator.guard).

Real second sessions and real second processes: a session holding ``LOCK TABLE ... IN ACCESS
EXCLUSIVE MODE`` (PostgreSQL) or SQLite's write lock makes a run retry and then fail within its
bound naming the holder, or succeed once the holder lets go; two ``schemagen upgrade``
processes started together never interleave.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from support import ROOT, execute
from support import db_revision as _revision

from generator import guard, migrate

MIGRATIONS = ROOT / "generated_migrations"
HEAD = sorted(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))[-1]
pytestmark = pytest.mark.db


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "generator", "--root", str(ROOT), *args]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMAGEN_")}
    env.update(extra)
    return env


class Holder:
    """Another session holding the lock a migration needs, until released."""

    pid: int | None = None

    def release(self) -> None:
        raise NotImplementedError


class PgHolder(Holder):
    def __init__(self, url: str, table: str):
        dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn = psycopg.connect(dsn, application_name="lock-holder-test")
        self.conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        self.pid = self.conn.info.backend_pid

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


class SqliteHolder(Holder):
    def __init__(self, url: str):
        self.conn = sqlite3.connect(
            sa.make_url(url).database or "", isolation_level=None, check_same_thread=False
        )
        self.released = False
        self.conn.execute("BEGIN IMMEDIATE")  # the database's write lock
        self.conn.execute("INSERT INTO instruments (id, symbol, name) VALUES (990, 'HLD', 'h')")

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.conn.rollback()
            self.conn.close()


@contextmanager
def holding(url: str, dialect: str) -> Iterator[Holder]:
    holder: Holder = PgHolder(url, "market_data") if dialect == "postgresql" else SqliteHolder(url)
    try:
        yield holder
    finally:
        holder.release()


def test_a_held_lock_fails_the_run_within_its_bound_naming_the_blocker(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """Defect 3: from 0002 with market_data locked, the run used to wait as long as the lock
    was held (44 s in the report, forever here). Now: bounded retries, exit 4, the holder named.
    The settings come from the environment, as for plain `alembic upgrade`."""
    migrate.upgrade(MIGRATIONS, sa.make_url(db_url), "0002")
    settings = guard.Settings().with_options(lock_timeout="100ms", lock_retries=3)
    env = _env(SCHEMAGEN_LOCK_TIMEOUT="100ms", SCHEMAGEN_LOCK_RETRIES="3")
    with holding(db_url, dialect) as holder:
        started = time.perf_counter()
        try:
            done = subprocess.run(
                _command("upgrade", "--url", db_url),
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the run still waited for the lock after 60 s")
        elapsed = time.perf_counter() - started
    assert done.returncode == 4, done.stdout + done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert "0003_convert_decimal_to_float" in error, error
    assert "Traceback" not in done.stderr
    # lock waits 4 x 100 ms + backoff at most 100 + 200 + 400 ms; the rest is Python start-up
    # and the first checks, on a shared machine.
    assert settings.bound_s() == pytest.approx(1.1)
    assert elapsed < settings.bound_s() + 10, elapsed
    if dialect == "postgresql":
        assert f"pid {holder.pid}" in error and "'lock-holder-test'" in error, error
        assert "LOCK TABLE market_data IN ACCESS EXCLUSIVE MODE" in error
        assert done.stdout.count("lock not available (attempt") == 3, done.stdout
    else:
        assert "another connection held the SQLite database" in error, error
    assert _revision(db_url) == "0002"


def test_a_lock_released_mid_way_lets_a_retry_succeed(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    migrate.upgrade(MIGRATIONS, sa.make_url(db_url), "0002")
    with holding(db_url, dialect) as holder:
        # 200 ms a wait: the run's probe asks who blocks at half of it, which on a loaded
        # machine (two test workers) came after 50 ms waits had failed in every attempt
        run = _start(db_url, tmp_path, "--lock-timeout", "200ms")
        lines = Lines(run)
        try:
            if dialect == "postgresql":
                # Attempts fail while the lock is held, each naming the holder.
                assert lines.wait_for("lock not available (attempt 2 of 11", 60), lines.text
            else:  # SQLite waits in its busy handler: let it wait a while
                deadline = time.monotonic() + 60
                while not _runner_lock_taken(db_url, dialect, run.pid):
                    assert time.monotonic() < deadline and run.poll() is None, lines.text
                    time.sleep(0.05)
                time.sleep(1.0)
            assert run.poll() is None, lines.text
        finally:
            holder.release()
            run.wait(120)
    output = lines.text  # read to the end (and closed)
    assert run.returncode == 0, output
    if dialect == "postgresql":
        # the attempts name who blocked them: the holder. The run's probe asks at half the
        # lock timeout (100 ms here); on a loaded machine it may ask only after an attempt
        # has failed, and that attempt says the probe did not see the session (a first
        # attempt may also meet autovacuum's lock on the table): some attempt names the
        # holder, and none names anyone else.
        assert f"of 11, blocked by pid {holder.pid}, " in output, output
        for line in output.splitlines():
            if "blocked by pid " in line and f"blocked by pid {holder.pid}, " not in line:
                assert "autovacuum" in line, line
    assert _revision(db_url) == HEAD
    verify = subprocess.run(
        _command("verify", "--url", db_url), cwd=tmp_path, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_sqlite_commit_failure_names_the_change_and_applies_nothing(tmp_path: Path) -> None:
    """Defect 10 (part): a failure at COMMIT, after every step logged "ok", said neither which
    change failed nor that it was not applied. A reader's lock makes COMMIT fail here, as a
    full disk does in WAL mode."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    migrate.upgrade(MIGRATIONS, sa.make_url(url), "0000")
    reader = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM market_data").fetchall()  # SHARED until it ends
    try:
        done = subprocess.run(
            _command("upgrade", "--url", url, "--to", "0001"),
            env=_env(SCHEMAGEN_LOCK_TIMEOUT="100ms", SCHEMAGEN_LOCK_RETRIES="1"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        reader.rollback()
        reader.close()
    assert done.returncode == 4, done.stdout + done.stderr
    assert "0001_optimize_market_data_indexes: post-checks ok" in done.stdout
    error = done.stderr.strip().splitlines()[-1]
    assert "0001_optimize_market_data_indexes: every step passed, but its COMMIT failed" in error
    assert "NOT applied" in error and "database is locked" in error, error
    assert "database is at revision" not in done.stdout
    assert _revision(url) == "0000"


# ---------------------------------------------------------------------------- two runners


def _runner_lock_taken(url: str, dialect: str, pid: int) -> bool:
    if dialect == "sqlite":
        lock = Path(f"{sa.make_url(url).database}.schemagen-lock")
        return lock.is_file() and lock.read_text().startswith(f"pid {pid},")
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = %s",
            (f"schemagen pid={pid}",),
        ).fetchone()
    return row is not None


class Lines:
    """A process's output, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        assert proc.stdout is not None
        self.stream = stream = proc.stdout
        self.thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.thread.start()

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        return False

    @property
    def text(self) -> str:
        self.thread.join(10)
        if not self.thread.is_alive():
            self.stream.close()
        return "".join(self.lines)


def _start(
    url: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command("upgrade", "--url", url, *args),
        env=env or _env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextmanager
def first_runner_in_progress(
    url: str, dialect: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], Holder]]:
    """A first `schemagen upgrade` from 0002, held up mid-run by a lock the test holds (so
    that it is surely still running when the second starts), with the runner lock taken."""
    migrate.upgrade(MIGRATIONS, sa.make_url(url), "0002")
    with holding(url, dialect) as holder:
        # Patient enough to outlast the test's lock (from the environment, as plain alembic).
        first = _start(url, tmp_path, env=_env(SCHEMAGEN_LOCK_RETRIES="40"))
        try:
            deadline = time.monotonic() + 60
            while not _runner_lock_taken(url, dialect, first.pid):
                assert first.poll() is None, first.communicate()[0]
                assert time.monotonic() < deadline, "the first runner never took the lock"
                time.sleep(0.05)
            yield first, holder
        finally:
            if first.poll() is None:
                holder.release()
                first.wait(120)


def test_a_second_runner_exits_5_naming_the_first(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """Defect 4: two runners at once interleaved (deadlocks, false check failures, one
    dropping the other's index build). Now the second refuses with exit 5 and does nothing."""
    with first_runner_in_progress(db_url, dialect, tmp_path) as (first, holder):
        second = subprocess.run(
            _command("upgrade", "--url", db_url),
            env=_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert first.poll() is None  # the first is still at work
        holder.release()
        out, _ = first.communicate(timeout=120)
    assert second.returncode == 5, second.stdout + second.stderr
    error = second.stderr.strip().splitlines()[-1]
    assert error.startswith("error: another migration is running (")
    # The first process, by its application_name (PostgreSQL) or the lock file (SQLite).
    assert re.search(rf"pid[ =]{first.pid}\b", error), error
    assert "Traceback" not in second.stderr
    assert "0003" not in second.stdout  # the second ran no step
    assert first.returncode == 0, out
    assert _revision(db_url) == HEAD
    verify = subprocess.run(
        _command("verify", "--url", db_url), cwd=tmp_path, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_second_runner_that_waits_finds_nothing_left_to_do(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    with first_runner_in_progress(db_url, dialect, tmp_path) as (first, holder):
        second = _start(db_url, tmp_path, "--wait-for-runner", "120")
        lines = Lines(second)
        assert lines.wait_for("waiting up to 120s for another migration", 60), lines.text
        holder.release()
        first_out, _ = first.communicate(timeout=120)
        second.wait(120)
    assert first.returncode == 0, first_out
    assert second.returncode == 0, lines.text
    assert "0003_convert_decimal_to_float: pre-checks" not in lines.text  # nothing to do
    assert f"database is at revision {HEAD}" in lines.text
    assert _revision(db_url) == HEAD


def test_plain_alembic_takes_the_runner_lock_too(db_url: str, dialect: str, tmp_path: Path) -> None:
    with first_runner_in_progress(db_url, dialect, tmp_path) as (first, holder):
        second = subprocess.run(
            [str(Path(sys.executable).with_name("alembic")), "upgrade", "head"],
            env=_env(DATABASE_URL=db_url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        holder.release()
        first.communicate(timeout=120)
    assert second.returncode != 0
    assert "another migration is running" in second.stderr
    assert re.search(rf"pid[ =]{first.pid}\b", second.stderr), second.stderr
    assert first.returncode == 0
    assert _revision(db_url) == HEAD


@pytest.mark.db
def test_a_probe_that_cannot_connect_says_why_the_blocker_is_unknown(pg_database: str) -> None:
    """A role limited to one connection: the run's probe (a second connection) cannot
    connect, and a lock wait says so instead of 'the probe did not see' a session."""
    admin = pg_url_for(pg_database)
    role = f"probe_limited_{os.getpid()}"
    execute(
        admin, f'DROP ROLE IF EXISTS "{role}"', f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1'
    )
    url = sa.make_url(admin).set(username=role)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            probe = guard.Probe(conn)
            conn.info["schemagen.probe"] = probe
            assert probe.failed is not None and "too many connections" in probe.failed
            told = guard.Blockers(conn).take()
            assert told.startswith("a session not known (the run's probe could not connect: ")
            assert "too many connections" in told
            probe.close()
    finally:
        engine.dispose()
        execute(admin, f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.db
def test_a_change_with_a_shorter_lock_timeout_still_names_the_blocker(pg_database: str) -> None:
    """A change's own ``postgresql: lock_timeout`` may be far below the runner's: the probe
    asks at half the timeout in force (``schemagen.lock_ms``), not the runner's, and asks again
    while the statement waits. With the runner's 2 s and the change's 100 ms, asking at half
    the runner's came after every attempt had failed."""
    admin = pg_url_for(pg_database)
    execute(admin, "DROP TABLE IF EXISTS held", "CREATE TABLE held (id int)")
    holder = PgHolder(admin, "held")
    engine = sa.create_engine(sa.make_url(admin), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.info["schemagen.settings"] = guard.Settings().with_options(lock_timeout="2s")
            conn.info["schemagen.lock_ms"] = 100
            probe = conn.info["schemagen.probe"] = guard.Probe(conn)
            try:
                with guard.Blockers(conn) as blockers:
                    told = []
                    for _ in range(3):
                        conn.exec_driver_sql("SET lock_timeout = '100ms'")
                        started = time.monotonic()
                        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                            conn.exec_driver_sql("LOCK TABLE held IN ACCESS SHARE MODE")
                        assert time.monotonic() - started < 1.0  # the change's timeout
                        conn.rollback()
                        told.append(blockers.take())
            finally:
                probe.close()
    finally:
        holder.release()
        engine.dispose()
        execute(admin, "DROP TABLE IF EXISTS held")
    assert any(f"pid {holder.pid}, " in t and "lock-holder-test" in t for t in told), told
    for t in told:
        assert t.startswith(f"pid {holder.pid}, ") or "did not see" in t, t


@pytest.mark.db
def test_the_probe_asks_nothing_of_a_statement_that_waits_on_no_lock(pg_database: str) -> None:
    """A long statement that waits on no lock (a backfill batch, an index build): the probe's
    question finds no blocker, and does not call pg_blocking_pids (which takes every
    lock-manager partition lock) for it."""
    admin = pg_url_for(pg_database)
    engine = sa.create_engine(sa.make_url(admin), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        probe = guard.Probe(conn)
        try:
            # asked of the session running it, which waits on no lock
            plan = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF) " + guard.Probe.QUERY.format(pid=probe.pid)
            ).all()
            assert probe.blockers() == []
        finally:
            probe.close()
    text = "\n".join(r[0] for r in plan)
    # the CASE's condition is false, so unnest gets NULL and the lateral scan never runs
    assert "pg_blocking_pids" in text and "never executed" in text, text
