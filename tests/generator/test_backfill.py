"""``backfill``: keyset batches on the primary key outside the change's transaction, every value
checked after upgrade and after downgrade (the archive restores them exactly), and a runner
SIGKILLed at random points that resumes after its last finished batch, never redoing one."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import ROOT, backfill_project, bump_change, cli, execute

from generator import batches, db, migrate
from generator.cli import Exit

KILLER = ROOT / "tests" / "kill_after.py"

# The kill test's change (support.bump_change: every open line exactly +1 at the end).
KILL_CHANGE = bump_change(3)


def _project(tmp_path: Path, second: str | None = None) -> Path:
    return backfill_project(tmp_path, second)


def _seed(url: str) -> None:
    products = [
        "(1, 'Alpha', NULL, 1.50)",
        "(2, 'BETA', 'kept-slug', NULL)",
        "(3, 'Gamma Ray', NULL, NULL)",
        "(4, 'delta', 'Other', 10.25)",
        "(5, 'EPS', NULL, 0)",
        "(6, 'Zeta', NULL, 99.99)",
        "(7, 'ETA', 'x', 2.00)",
    ]
    statuses = ["NULL", "'closed'", "'new'", "NULL", "'closed'"]
    lines = []
    for order in range(1, 8):
        for line in range(1, 5):
            n = order * 10 + line
            quantity = "NULL" if n % 3 == 0 else str(n % 7)
            lines.append(f"({order}, {line}, {quantity}, {statuses[n % 5]})")
    execute(
        url,
        "INSERT INTO products (id, name, slug, price) VALUES " + ", ".join(products),
        "INSERT INTO order_lines (order_id, line_no, quantity, status) VALUES " + ", ".join(lines),
    )


def _rows(url: str, table: str) -> list[tuple[Any, ...]]:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            cols = [c["name"] for c in sa.inspect(conn).get_columns(table)]
            key = "id" if table == "products" else "order_id, line_no"
            quoted = ", ".join(f'"{c}"' for c in cols)
            return [
                tuple(_plain(v) for v in r)
                for r in conn.exec_driver_sql(f'SELECT {quoted} FROM "{table}" ORDER BY {key}')
            ]
    finally:
        engine.dispose()


def _plain(value: Any) -> Any:
    return Decimal(str(value)).quantize(Decimal("0.01")) if isinstance(value, float) else value


def _expected_lines(before: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    for order, line, quantity, status in before:
        if status is None or status != "closed":
            out.append((order, line, (quantity or 0) + 1, "open"))
        else:
            out.append((order, line, quantity, status))
    return out


def _side(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the progress/archive side (schema or attached file ``schemagen``)."""
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                side = f"{sa.make_url(url).database}-{batches.SCHEMA}"
                if not Path(side).exists():
                    return []
                conn.exec_driver_sql(f"ATTACH DATABASE '{side}' AS {batches.SCHEMA}")
                exists = conn.exec_driver_sql(
                    f"SELECT 1 FROM {batches.SCHEMA}.sqlite_master WHERE name = ?",
                    (batches.PROGRESS,),
                ).first()
            else:
                exists = conn.exec_driver_sql(
                    "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                    (batches.SCHEMA, batches.PROGRESS),
                ).first()
            if exists is None:
                return []
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def _progress(url: str) -> list[tuple[Any, ...]]:
    return _side(
        url,
        f"SELECT direction, last_key, batches, rows_done, done FROM {batches.SCHEMA}."
        f"{batches.PROGRESS} ORDER BY direction",
    )


@pytest.mark.db
def test_backfill_values_upgrade_and_downgrade_exactly(db_url: str, tmp_path: Path) -> None:
    root = _project(tmp_path)
    out, url = root / "generated_migrations", sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    _seed(db_url)
    products, lines = _rows(db_url, "products"), _rows(db_url, "order_lines")

    migrate.upgrade(out, url, "head")
    assert _rows(db_url, "order_lines") == _expected_lines(lines)
    expected_products = [
        (
            pid,
            name,
            slug if slug is not None else name.lower(),
            _plain(price),
            (Decimal(str(price or 0)) * 2).quantize(Decimal("0.01")),
        )
        for pid, name, slug, price in products
    ]
    assert [
        (p[0], p[1], p[2], _plain(p[3]), Decimal(str(p[4])).quantize(Decimal("0.01")))
        for p in _rows(db_url, "products")
    ] == expected_products
    # The archives hold the old values of the rows changed, of the columns that existed
    # before the change only; the progress rows went with the revision stamp.
    assert _progress(db_url) == []
    archived = _side(
        db_url,
        "SELECT name FROM schemagen.sqlite_master WHERE type = 'table' AND name LIKE 'archive%'"
        if db_url.startswith("sqlite")
        else "SELECT tablename FROM pg_tables WHERE schemaname = 'schemagen' "
        "AND left(tablename, 7) = 'archive'",
    )
    assert len(archived) == 2  # slug and the order lines; list_price is new: none
    sizes = sorted(
        _side(db_url, f"SELECT count(*) FROM schemagen.{name}")[0][0] for (name,) in archived
    )
    assert sizes == sorted(
        [
            sum(1 for p in products if p[2] is None),  # slug IS NULL
            sum(1 for r in lines if r[3] != "closed"),  # open lines
        ]
    )
    verified = cli("verify", "--url", db_url, root=root)
    assert verified.exit_code == Exit.OK, verified.output

    migrate.downgrade(out, url, "0000")
    assert _rows(db_url, "order_lines") == lines  # every value restored, NULLs included
    assert [(p[0], p[1], p[2], _plain(p[3])) for p in _rows(db_url, "products")] == [
        (p[0], p[1], p[2], _plain(p[3])) for p in products
    ]
    assert _progress(db_url) == []  # the archives and the progress rows are gone
    migrate.upgrade(out, url, "head")  # and it runs again from the start
    assert _rows(db_url, "order_lines") == _expected_lines(lines)


def _killed(root: Path, url: str, marker: str, nth: int, *args: str) -> int:
    env = {**os.environ, "KILL_AFTER": marker, "KILL_NTH": str(nth), "KILL_URL": url}
    done = subprocess.run(
        [sys.executable, str(KILLER), "--root", str(root), *args, "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode


def _last_key(url: str, direction: str) -> list[Any] | None:
    rows = [r for r in _progress(url) if r[0] == direction]
    return json.loads(rows[0][1]) if rows and rows[0][1] else None


@pytest.mark.db
@pytest.mark.kill
def test_a_killed_backfill_resumes_without_redoing_a_batch(db_url: str, tmp_path: Path) -> None:
    root = _project(tmp_path, KILL_CHANGE)
    out, url = root / "generated_migrations", sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    _seed(db_url)
    lines = _rows(db_url, "order_lines")
    changed = sum(1 for r in lines if r[3] != "closed")
    total_batches = -(-len(lines) // 3)
    rng = random.Random(f"{db_url.split(':')[0]}-{os.getpid()}")

    # Upgrade: killed twice at random points (right after a batch's UPDATE, before its
    # COMMIT: that batch is rolled back; or right after a COMMIT: it is recorded), then
    # finished. The last key recorded never goes back.
    keys: list[Any] = []
    kills = 0
    for _ in range(3):
        marker = rng.choice(['UPDATE "order_lines"', "COMMIT"])
        nth = rng.randint(1, total_batches // 3)
        code = _killed(root, db_url, marker, nth, "upgrade")
        if code == 0:  # it finished before the nth
            break
        assert code == -9
        kills += 1
        key = _last_key(db_url, "upgrade")
        if key is not None:
            assert not keys or key >= keys[-1], (keys, key)
            keys.append(key)
    assert kills >= 1
    ((_, _, done_before, rows_before, _),) = _progress(db_url)  # recorded by the killed runs
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    # The last run did only the batches left: with the killed runs', each batch exactly once.
    remaining = f"batches: {total_batches - done_before}, rows: {changed - rows_before})"
    assert "backfill order_lines ok (" in result.output and remaining in result.output, (
        result.output
    )
    # Each open line exactly +1: no batch redone, none skipped, no row lost.
    assert _rows(db_url, "order_lines") == _expected_lines(lines)
    assert _progress(db_url) == []  # gone with the revision stamp

    # Downgrade: killed once mid-way, then finished: every old value back, NULLs included.
    restore_batches = -(-changed // 3)  # over the archived rows only
    nth = rng.randint(2, restore_batches)
    killed = _killed(root, db_url, 'UPDATE "order_lines"', nth, "downgrade", "--to", "0000")
    assert killed == -9
    assert _last_key(db_url, "downgrade") is not None  # some batches were done and recorded
    result = cli("downgrade", "--to", "0000", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert _rows(db_url, "order_lines") == lines
    assert _progress(db_url) == []


def _run_with(root: Path, url: str, marker: str, nth: int, sql: str, *args: str) -> Any:
    """The CLI, with ``sql`` run by another session right after the nth statement with
    ``marker`` (tests/kill_after.py's RUN_SQL)."""
    env = {
        **os.environ,
        "KILL_AFTER": marker,
        "KILL_NTH": str(nth),
        "KILL_URL": url,
        "RUN_SQL": sql,
    }
    return subprocess.run(
        [sys.executable, str(KILLER), "--root", str(root), *args, "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.db
def test_the_check_after_the_batches_names_a_row_left_behind(db_url: str, tmp_path: Path) -> None:
    """A row another session inserts behind the batches (below the last key done) is never
    backfilled: the check after the batches refuses the change and names it."""
    root = _project(tmp_path, KILL_CHANGE)
    out, url = root / "generated_migrations", sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    _seed(db_url)
    behind = "INSERT INTO order_lines (order_id, line_no, quantity, status) VALUES (0, 7, 5, NULL)"
    done = _run_with(root, db_url, "COMMIT", 2, behind, "upgrade")  # after the first batch
    assert done.returncode != 0, done.stdout + done.stderr
    text = done.stdout + done.stderr
    assert "rows still differing from the expression: 1 failing row(s)" in text, text
    assert "0        | 7" in text, text  # the row, by its key
    assert "Traceback" not in text


@pytest.mark.db
def test_backfill_risk_against_the_database(db_url: str, tmp_path: Path) -> None:
    """No rewrite (relfilenode / rootpage unchanged); on PostgreSQL, a second session sees
    only ROW EXCLUSIVE (and the batch's ACCESS SHARE) on the table while a batch runs."""
    root = _project(tmp_path, KILL_CHANGE)
    out, url = root / "generated_migrations", sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    _seed(db_url)
    postgresql = db_url.startswith("postgresql")
    storage = (
        "SELECT relfilenode FROM pg_class WHERE relname = 'order_lines'"
        if postgresql
        else "SELECT rootpage FROM sqlite_master WHERE name = 'order_lines'"
    )

    def stored() -> Any:
        engine = db.make_engine(url)
        try:
            with engine.connect() as conn:
                return conn.exec_driver_sql(storage).scalar()
        finally:
            engine.dispose()

    before = stored()
    if postgresql:
        execute(db_url, "CREATE SCHEMA probe", "CREATE TABLE probe.locks (mode text)")
        probe = (
            "INSERT INTO probe.locks SELECT mode FROM pg_locks "
            "WHERE relation = 'order_lines'::regclass AND pid <> pg_backend_pid()"
        )
        done = _run_with(root, db_url, 'UPDATE "order_lines"', 2, probe, "upgrade")
        assert done.returncode == 0, done.stdout + done.stderr
        engine = db.make_engine(url)
        try:
            with engine.connect() as conn:
                modes = {r[0] for r in conn.exec_driver_sql("SELECT mode FROM probe.locks")}
        finally:
            engine.dispose()
        assert "RowExclusiveLock" in modes
        assert modes <= {"RowExclusiveLock", "AccessShareLock"}, modes
    else:
        result = cli("upgrade", "--url", db_url, root=root)
        assert result.exit_code == Exit.OK, result.output
    assert stored() == before


@pytest.mark.db
@pytest.mark.kill
def test_killed_after_ddl_of_its_own(db_url: str, tmp_path: Path) -> None:
    """The golden change (a backfill, add_column, two backfills) killed in its last backfill:
    on PostgreSQL it is half-applied and `upgrade` finishes it (the column added IF NOT
    EXISTS, the batches resumed); on SQLite, which keeps no half-applied note, the re-run is
    refused by its checks, clearly, and the values of the batches done stay consistent."""
    root = _project(tmp_path)
    out, url = root / "generated_migrations", sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    _seed(db_url)
    lines = _rows(db_url, "order_lines")
    assert _killed(root, db_url, 'UPDATE "order_lines"', 3, "upgrade") == -9
    result = cli("upgrade", "--url", db_url, root=root)
    if db_url.startswith("postgresql"):
        assert result.exit_code == Exit.OK, result.output
        assert _rows(db_url, "order_lines") == _expected_lines(lines)
        migrate.downgrade(out, url, "0000")
        assert _rows(db_url, "order_lines") == lines
    else:
        assert result.exit_code != Exit.OK
        assert "products.columns" in result.output and "list_price" in result.output
        assert "Traceback" not in result.output


@pytest.mark.db
def _release_after_a_wait(url: sa.URL, let_go: Callable[[], None]) -> None:
    """Call ``let_go`` once another backend has waited on a lock, plus 0.5 s (several of the
    runner's 100 ms lock timeouts); at most 60 s after starting."""
    watcher = db.make_engine(url)
    try:
        with watcher.connect() as watch:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                waiting = watch.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                ).scalar_one()
                watch.rollback()
                if waiting:
                    time.sleep(0.5)
                    break
                time.sleep(0.02)
    finally:
        watcher.dispose()
        let_go()


def test_a_batch_waits_for_a_held_row_then_goes_on(db_url: str, tmp_path: Path) -> None:
    """Another session holds a row of a later batch (PostgreSQL: FOR UPDATE; SQLite: the
    write lock) for longer than the lock timeout: the batch is rolled back, retried after a
    pause, and the backfill finishes once the session lets go; the batches done before stay.
    (SQLite: the runner waits for the write lock within its busy timeout, then finishes.)"""
    import threading

    root = _project(tmp_path, KILL_CHANGE)
    out, url = root / "generated_migrations", sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    _seed(db_url)
    lines = _rows(db_url, "order_lines")
    holder = db.make_engine(url)
    conn = holder.connect()
    if db_url.startswith("postgresql"):
        holder_pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.exec_driver_sql(
            "SELECT * FROM order_lines WHERE order_id = 5 AND line_no = 2 FOR UPDATE"
        ).all()
    else:
        conn.exec_driver_sql("UPDATE order_lines SET line_no = line_no WHERE order_id = 5")
    if db_url.startswith("postgresql"):
        # Let go only once the runner's batch was seen waiting for the row and has had time
        # to time out (lock_timeout 100ms) at least once: a fixed delay raced the runner's
        # start-up on a loaded machine and released the row before the batch got there.
        release = threading.Thread(target=_release_after_a_wait, args=(url, conn.rollback))
    else:
        release = threading.Timer(1.5, conn.rollback)
    release.start()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "generator",
                "--root",
                str(root),
                "upgrade",
                "--url",
                db_url,
                "--lock-timeout",
                "100ms",
                "--lock-retries",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    finally:
        release.join()
        conn.close()
        holder.dispose()
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    if db_url.startswith("postgresql"):  # SQLite waits its busy timeout instead, inside
        assert "backfill of order_lines: lock wait" in text, text  # it did wait, and paced
        # naming the session that held the row
        assert f"blocked by pid {holder_pid}, " in text, text
    assert _rows(db_url, "order_lines") == _expected_lines(lines)
