"""What runs before and around the migrations is bounded and locked too.

- ``verify`` and ``status`` wait for a lock held by another real connection at most the run's
  bound, then exit 4 naming the holder, without a traceback.
- A half-applied change is taken up (alembic_version moved to the side its run starts from)
  only under the runner lock: a second runner, while another holds the lock, changes nothing.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
import sqlalchemy as sa
from support import ROOT, seed_demo
from support import db_revision as _revision

from generator import guard, runtime
from generator.cli import Exit

MIGRATIONS = ROOT / "generated_migrations"
KILLER = ROOT / "tests" / "kill_after.py"
pytestmark = pytest.mark.db


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMAGEN_")}
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", "--root", str(ROOT), *args],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def exclusive_holder(url: str, dialect: str) -> Iterator[int | None]:
    """Another real connection holding a lock every read of the database waits for: ACCESS
    EXCLUSIVE on alembic_version (PostgreSQL), SQLite's exclusive lock. Yields its pid."""
    if dialect == "postgresql":
        pg = psycopg.connect(_dsn(url), application_name="exclusive-holder-test")
        try:
            pg.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            yield pg.info.backend_pid
        finally:
            pg.rollback()
            pg.close()
        return
    lite = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
    try:
        lite.execute("BEGIN EXCLUSIVE")  # readers wait too (rollback journal)
        yield None
    finally:
        lite.rollback()
        lite.close()


@pytest.mark.parametrize("command", ["verify", "status"])
def test_verify_and_status_are_bounded_and_name_the_blocker(
    db_url: str, dialect: str, command: str
) -> None:
    """Defect: they set no timeouts, so a held lock made them wait as long as it was held
    (PostgreSQL: forever; SQLite: the driver's 5 s, then a bare "database is locked")."""
    seed_demo(db_url)
    env = _env(SCHEMAGEN_LOCK_TIMEOUT="300ms", SCHEMAGEN_LOCK_RETRIES="0")
    # the same command with nothing held: what a Python start and the command cost here
    started = time.monotonic()
    free = _run(command, "--url", db_url, env=env)
    unheld = time.monotonic() - started
    assert free.returncode in (Exit.OK, Exit.FAILED), free.stdout + free.stderr
    assert "at revision 0000" in free.stdout or "revision: 0000" in free.stdout
    with exclusive_holder(db_url, dialect) as pid:
        started = time.monotonic()
        try:
            result = _run(command, "--url", db_url, env=env)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command} waited for the lock for 60 s")
        held = time.monotonic() - started

    output = result.stdout + result.stderr
    assert result.returncode == Exit.DATABASE, output
    assert "Traceback" not in output
    # the bound is 300 ms on top of the command's own time (the old SQLite wait: the driver's
    # 5 s; PostgreSQL: as long as the lock is held)
    assert held - unheld < 2.5, f"{command} took {held:.1f} s, {unheld:.1f} s unheld: {output}"
    if dialect == "postgresql":
        assert "a lock was not available within 300 ms" in result.stderr, output
        assert f"pid {pid}" in result.stderr, output
        assert "exclusive-holder-test" in result.stderr
        assert "holding ACCESS EXCLUSIVE on alembic_version" in result.stderr
    else:
        assert "busy timeout (300 ms)" in result.stderr, output


def _hold_runner_lock(url: str) -> subprocess.Popen[str]:
    """A second real process holding the runner lock (as a running migration does)."""
    code = (
        "import sys, psycopg\n"
        f"conn = psycopg.connect({_dsn(url)!r}, autocommit=True, application_name='runner-2')\n"
        'key = conn.execute("SELECT current_schema()").fetchone()[0]\n'
        "import zlib\n"
        "k = zlib.crc32(f'{key}.alembic_version'.encode()) & 0x7FFFFFFF\n"
        f"conn.execute(f'SELECT pg_advisory_lock({guard.KEY_CLASS}, {{k}})')\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def _note(url: str) -> dict[str, str] | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return runtime.half_applied(conn)
    finally:
        engine.dispose()


@pytest.mark.kill
def test_a_half_applied_change_is_taken_up_only_under_the_runner_lock(pg_database: str) -> None:
    """Defect: the take-up ran before the runner lock, so a second runner moved
    alembic_version (and rewrote the half-applied note) under a running first one.
    PostgreSQL only: only its CONCURRENTLY steps can leave a change half-applied."""
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    seed_demo(url)
    killed = subprocess.run(
        [sys.executable, str(KILLER), "--root", str(ROOT), "upgrade", "--url", url],
        env={**_env(), "KILL_AFTER": "CREATE INDEX CONCURRENTLY", "KILL_NTH": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    before = _note(url)
    assert before is not None and before["direction"] == "upgrade"
    assert _revision(url) == "0000"

    holder = _hold_runner_lock(url)
    try:
        second = _run("downgrade", "--to", "0000", "--url", url)
    finally:
        holder.communicate(timeout=30)  # its stdin closed: it lets go and ends

    assert second.returncode == Exit.RUNNER_BUSY, second.stdout + second.stderr
    assert "another migration is running" in second.stderr
    assert "runner-2" in second.stderr
    # nothing moved: still at 0000, the note still that of the interrupted upgrade
    assert "is half-applied" not in second.stderr
    assert _revision(url) == "0000"
    assert _note(url) == before

    # with the lock free, the same command takes it up and undoes the change
    undone = _run("downgrade", "--to", "0000", "--url", url)
    assert undone.returncode == Exit.OK, undone.stdout + undone.stderr
    assert _note(url) is None
    assert _revision(url) == "0000"
