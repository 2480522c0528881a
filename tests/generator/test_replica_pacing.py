"""Backfills paced on a real streaming replica (PostgreSQL only: SQLite has no replicas).

A primary and a hot standby of its own (``initdb`` and ``pg_basebackup`` of the server's
version, on free ports, run as the ``postgres`` user when the tests run as root) with
``recovery_min_apply_delay``: the standby replays every commit that long after it, so its
``replay_lag`` is the delay. A backfill's batches pause while the replica is further behind
than ``--max-replica-lag`` and go on once it has replayed what they wrote; a replica that
does not catch up within ``--replica-wait`` stops the run with the batches done kept, and the
same command finishes it once the replica keeps up. The server binaries are needed: without
them the tests skip, except under ``CI=true``, where that is a failure."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ROOT, backfill_project, bump_change, execute

from generator import db, migrate

# Every open line's quantity up by one in batches of 2: about 2,400 batches over the seed,
# some seconds of batches (the replicas are looked at once a second: with 300 orders a fast
# machine ran all 600 batches in 0.64 s, before the second look, and never paused)
ORDERS = 1500
CHANGE = bump_change(2)

pytestmark = pytest.mark.db


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pair:
    primary: str
    standby: str
    as_user: list[str]
    bindir: Path
    dirs: dict[str, Path]

    def delay(self, value: str) -> None:
        """The standby's recovery_min_apply_delay, now."""
        engine = sa.create_engine(sa.make_url(self.standby), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"ALTER SYSTEM SET recovery_min_apply_delay = '{value}'")
                conn.exec_driver_sql("SELECT pg_reload_conf()")
        finally:
            engine.dispose()

    def replay_lag_ms(self) -> float | None:
        engine = db.make_engine(sa.make_url(self.primary))
        try:
            with engine.connect() as conn:
                lag = conn.exec_driver_sql(
                    "SELECT extract(epoch FROM replay_lag) * 1000 FROM pg_stat_replication"
                ).scalar()
                return None if lag is None else float(lag)
        finally:
            engine.dispose()


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stdout}{done.stderr}")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    bindir = _bindir()
    if bindir is None:
        reason = "no PostgreSQL server binaries (initdb) for a primary and a standby"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    top = Path(tempfile.mkdtemp(prefix="schemagen-replica-"))
    if as_user:
        shutil.chown(top, "postgres")
    dirs = {"primary": top / "primary", "standby": top / "standby"}
    ports = {"primary": _free_port(), "standby": _free_port()}
    started: list[Path] = []

    def start(name: str) -> None:
        opts = f"-p {ports[name]} -k {top} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = top / f"{name}.log"
        _run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(dirs[name]),
                "-o",
                opts,
                "-l",
                str(log),
                "-w",
                "start",
            ]
        )
        started.append(dirs[name])

    try:
        _run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(dirs["primary"]),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ]
        )
        start("primary")
        primary = f"postgresql+psycopg://postgres@127.0.0.1:{ports['primary']}/postgres"
        _run(
            [
                *as_user,
                str(bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(ports["primary"]),
                "-U",
                "postgres",
                "-D",
                str(dirs["standby"]),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ]
        )
        start("standby")
        standby = f"postgresql+psycopg://postgres@127.0.0.1:{ports['standby']}/postgres"
        yield Pair(primary, standby, as_user, bindir, dirs)
    finally:
        for data in reversed(started):
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(top, ignore_errors=True)


def _fresh(pair: Pair, tmp_path: Path) -> tuple[Path, str]:
    """A new database on the primary at 0000 with 4 lines of each order; its URL."""
    name = f"pace_{tmp_path.name[-20:].lower().replace('-', '_')}"
    pair.delay("0")
    engine = sa.create_engine(sa.make_url(pair.primary), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    url = pair.primary.rsplit("/", 1)[0] + f"/{name}"
    root = backfill_project(tmp_path, CHANGE)
    migrate.upgrade(root / "generated_migrations", sa.make_url(url), "0000")
    execute(
        url,
        "INSERT INTO order_lines (order_id, line_no, quantity, status) "
        "SELECT o, l, mod(o * l, 7), CASE WHEN mod(o + l, 5) = 0 THEN 'closed' END "
        f"FROM generate_series(1, {ORDERS}) AS o, generate_series(1, 4) AS l",
    )
    return root, url


def _lines(url: str) -> list[tuple[object, ...]]:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT order_id, line_no, quantity, status FROM order_lines "
                    "ORDER BY order_id, line_no"
                )
            ]
    finally:
        engine.dispose()


def _bumped(before: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [
        (o, n, q, s) if s == "closed" else (o, n, int(q or 0) + 1, "open")  # type: ignore[call-overload]
        for o, n, q, s in before
    ]


def _upgrade(root: Path, url: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", "--root", str(root), "upgrade", "--url", url, *options],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def _marker(pair: Pair) -> None:
    """A commit on the primary (in its own database: the tested one's schema is checked)."""
    execute(pair.primary, "DROP TABLE IF EXISTS lag_marker", "CREATE TABLE lag_marker (x int)")


def _behind(pair: Pair, tmp_path: Path, delay: str) -> tuple[Path, str, list[tuple[object, ...]]]:
    """A fresh database (its project, URL and lines) whose standby now replays ``delay``
    after each commit, a commit of the primary's already on its way."""
    root, url = _fresh(pair, tmp_path)
    before = _lines(url)
    pair.delay(delay)
    _marker(pair)
    return root, url, before


def _wait_for(what: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "the replica never got there"
        time.sleep(0.1)


def test_batches_pause_while_the_replica_lags_and_go_on_once_it_replayed_them(
    pair: Pair, tmp_path: Path
) -> None:
    root, url, before = _behind(pair, tmp_path, "1500ms")
    _wait_for(lambda: (pair.replay_lag_ms() or 0) > 1000, 30)
    started = time.monotonic()
    done = _upgrade(root, url, "--max-replica-lag", "500ms")
    took = time.monotonic() - started
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert "replaying more than 0.5 s behind: the batches pause" in text, text
    assert "replica caught up after" in text, text
    # the pause waited for the replica (about the delay), not the lag limit
    assert took > 1.0, text
    assert _lines(url) == _bumped(before)


def test_a_replica_that_does_not_catch_up_stops_the_run_which_then_finishes(
    pair: Pair, tmp_path: Path
) -> None:
    root, url, before = _behind(pair, tmp_path, "1h")
    try:
        # The standby holds every commit an hour: the server's replay_lag stays what it
        # last measured, but the WAL positions the batches see once a second stay
        # unreplayed, and the loop's own measure of the lag grows past the limit.
        done = _upgrade(root, url, "--max-replica-lag", "200ms", "--replica-wait", "1s")
    finally:
        pair.delay("0")
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "Traceback" not in text, text
    assert "has not replayed the batches' WAL" in text, text
    assert "run the same command again to continue" in text, text
    # nothing lost: every line is as it was or bumped once (a batch done before the stop)
    assert all(r in (b, a) for r, b, a in zip(_lines(url), before, _bumped(before), strict=True))
    _wait_for(lambda: (pair.replay_lag_ms() or 0) < 200, 60)
    done = _upgrade(root, url, "--max-replica-lag", "200ms", "--replica-wait", "30s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _lines(url) == _bumped(before)
