"""The row-count data checks under live traffic.

On PostgreSQL a change must not delete rows of a table it keeps: read from the change's own
transaction statistics (no scan, blind to other sessions), with a TRUNCATE caught by the
table's new relfilenode and the tables a type change rewrites counted before and after. So an
application's DELETEs and INSERTs during a change are no false alarm, and a hand edit that
deletes or truncates is still caught. On SQLite the runner holds the write lock from the
first check, so counting stays exact; a concurrent writer waits and the run passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import ROOT, execute, seed_demo
from support import db_revision as _revision

from generator import db, migrate, runtime
from generator.cli import Exit

KILLER = ROOT / "tests" / "kill_after.py"
SNAPSHOT = "CREATE TEMP TABLE schemagen_row_counts"
pytestmark = pytest.mark.db


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMAGEN_")}
    env.update(extra)
    return env


def _cli(root: Path = ROOT) -> list[str]:
    return [sys.executable, "-m", "generator", "--root", str(root)]


def _count(url: str, table: str) -> int:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
    finally:
        engine.dispose()


def _run_with_session(
    url: str, marker: str, sql: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``schemagen ARGS`` where, right after the first statement containing ``marker``,
    another session (its own connection) runs ``sql`` and commits; the run goes on."""
    return subprocess.run(
        [sys.executable, str(KILLER), "--root", str(ROOT), *args, "--url", url],
        env=_env(KILL_AFTER=marker, KILL_NTH="1", KILL_URL=url, RUN_SQL=sql),
        capture_output=True,
        text=True,
        timeout=180,
    )


# (change, direction, start, target, the application's statement on a table the change keeps)
APPLICATION = [
    # 0001 commits part-way (CONCURRENTLY): the other session deletes between its snapshot and
    # its checks, on a table it does not touch
    ("0001", "upgrade", "0000", "0001", "DELETE FROM alert_logs WHERE mod(id, 10) = 0"),
    # 0003 rewrites market_data and alert_logs (counted under the rewrite's lock); instruments
    # is checked through the statistics
    ("0003", "upgrade", "0002", "0003", "DELETE FROM instruments WHERE symbol = 'XTRA'"),
    ("0004", "downgrade", "0004", "0003", "DELETE FROM alert_logs WHERE mod(id, 7) = 0"),
]


@pytest.mark.kill
@pytest.mark.parametrize(
    ("change", "direction", "start", "target", "sql"), APPLICATION, ids=[a[0] for a in APPLICATION]
)
def test_application_deletes_during_a_change_are_no_false_alarm(
    pg_database: str, change: str, direction: str, start: str, target: str, sql: str
) -> None:
    """Defect: the row counts compared count(*) before and after the change, so another
    session's DELETE in between failed the change ("row_counts alert_logs 150 -> 135")."""
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    seed_demo(url, start)
    execute(url, "INSERT INTO instruments (id, symbol, name) VALUES (99, 'XTRA', 'unreferenced')")
    table = sql.split()[2]
    before = _count(url, table)
    args = ("upgrade", "--to", target) if direction == "upgrade" else ("downgrade", "--to", target)

    result = _run_with_session(url, SNAPSHOT, sql, *args)

    assert result.returncode == Exit.OK, result.stdout + result.stderr
    assert "row_counts" not in result.stderr
    assert _revision(url) == target
    assert 0 < _count(url, table) < before  # the application's delete happened, and stands
    verified = subprocess.run(
        [sys.executable, "-m", "generator", "--root", str(ROOT), "verify", "--url", url],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == Exit.OK, verified.stdout + verified.stderr


def _writer(url: str, stop: Path) -> subprocess.Popen[str]:
    """An application process that deletes a row of instruments in every transaction and
    inserts one in every second (the count keeps falling), until ``stop`` exists; then prints
    how many of its transactions committed. Its rows are the unreferenced ids from 100000."""
    code = f"""
import os, time
import sqlalchemy as sa
from generator import db
url = sa.make_url({url!r})
engine = db.make_engine(url)
if url.get_backend_name() == "sqlite":
    sa.event.listen(engine, "connect", lambda c, r: c.execute("PRAGMA busy_timeout = 20000"))
done, next_id = 0, 200_000
print("started", flush=True)
while not os.path.exists({str(stop)!r}):
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "DELETE FROM instruments WHERE id = "
                "(SELECT min(id) FROM instruments WHERE id >= 100000)"
            )
            if done % 2:
                conn.exec_driver_sql(
                    f"INSERT INTO instruments (id, symbol, name) VALUES "
                    f"({{next_id}}, 'W{{next_id}}', 'writer')"
                )
                next_id += 1
        done += 1
    except sa.exc.DBAPIError as exc:  # a statement racing a schema change; try again
        print("retry", type(exc.orig).__name__, flush=True)
    time.sleep(0.003)
print("committed", done, flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    return proc


def test_a_writer_deleting_during_every_change(db_url: str, dialect: str, tmp_path: Path) -> None:
    """A real application process deletes rows of instruments (which no change rewrites) all
    the way up to head and back down: no change fails its row checks. PostgreSQL: it deletes
    between and during the changes (the old count(*) comparison failed on it); SQLite: it
    waits for the runner's write lock, so the counts are exact and pass too."""
    seed_demo(db_url)
    execute(
        db_url,
        "INSERT INTO instruments (id, symbol, name) "
        + (
            "SELECT g, 'S' || g, 'seed' FROM generate_series(100000, 102999) AS g"
            if dialect == "postgresql"
            else "WITH RECURSIVE g(n) AS (SELECT 100000 UNION ALL SELECT n + 1 FROM g "
            "WHERE n < 102999) SELECT n, 'S' || n, 'seed' FROM g"
        ),
    )
    before = _count(db_url, "instruments")
    stop = tmp_path / "stop"
    writer = _writer(db_url, stop)
    try:
        up = subprocess.run(
            [*_cli(), "upgrade", "--url", db_url],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        down = subprocess.run(
            [*_cli(), "downgrade", "--to", "0000", "--url", db_url],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    assert up.returncode == Exit.OK, up.stdout + up.stderr
    assert down.returncode == Exit.OK, down.stdout + down.stderr
    assert _revision(db_url) == "0000"
    committed = int(out.split("committed", 1)[1].split()[0])
    assert committed > 10, out
    assert _count(db_url, "instruments") < before  # its deletes happened, and stand


@pytest.mark.parametrize(
    ("old", "new", "emptied"),
    [
        ("varchar(50)", "varchar(200)", "others"),  # no rewrite: the statistics and relfilenode
        # PostgreSQL: an online conversion (it commits part-way), the truncated table being
        # the converted one or one beside it; SQLite: a rewritten table, counted
        ("integer", "bigint", "notes"),
        ("integer", "bigint", "others"),
    ],
)
def test_a_hand_edited_truncate_is_caught(
    db_url: str, dialect: str, tmp_path: Path, old: str, new: str, emptied: str
) -> None:
    """A TRUNCATE resets PostgreSQL's per-transaction counters (no delete is counted): the
    table's new relfilenode shows it. SQLite has no TRUNCATE: its DELETE without WHERE is
    counted like any other.

    integer -> bigint runs online on PostgreSQL, and the online path commits the change's
    transaction so far before its first phase. Defect: the row-count check ran only after
    the change, so the TRUNCATE was committed by then (the change failed, the rows were
    gone). The data checks now run before that commit, and refuse it with nothing kept."""
    from test_narrowing import _project

    out = _project(tmp_path, old, new, acknowledge=False)
    migrations = tmp_path / "generated_migrations"
    migrate.upgrade(migrations, sa.make_url(db_url), "0000")
    execute(
        db_url,
        *(f"INSERT INTO others (id, n) VALUES ({i}, {i})" for i in range(1, 11)),
        *(f"INSERT INTO notes (id, v) VALUES ({i}, '{i}')" for i in range(1, 6)),
    )
    (path,) = (out / "versions").glob("0001_*.py")
    text = path.read_text("utf-8")
    for fn, statement in (
        ("_upgrade_postgresql", f"TRUNCATE {emptied}"),
        ("_upgrade_sqlite", f"DELETE FROM {emptied}"),
    ):
        head = f"def {fn}() -> None:\n"
        assert head in text
        text = text.replace(head, f'{head}    op.execute(sa.text("{statement}"))\n')
    path.write_text(text, "utf-8")

    with pytest.raises(Exception, match="row_counts") as raised:
        migrate.upgrade(migrations, sa.make_url(db_url), allow_modified="test: a truncate")
    message = str(raised.value)
    assert emptied in message
    if dialect == "postgresql":
        assert "truncated or rewritten" in message
        if new == "bigint":  # refused before the online path's first commit
            assert "before their first commit" in message, message
            assert "nothing of it was kept" in str(runtime.rolled_back_of(raised.value))
    assert _revision(db_url) == "0000"
    assert _count(db_url, emptied) == (10 if emptied == "others" else 5)
    assert _count(db_url, "others" if emptied == "notes" else "notes") == (
        5 if emptied == "others" else 10
    )


def test_row_changes_outside_the_transaction_are_refused(pg_database: str, tmp_path: Path) -> None:
    """In a CONCURRENTLY block every statement commits on its own, where no transaction's
    statistics count what it deletes: a statement that changes rows is refused there."""
    from conftest import pg_url_for
    from support import copy_project

    url = pg_url_for(pg_database)
    root = copy_project(tmp_path / "project")
    seed_demo(url)
    before = _count(url, "alert_logs")
    (path,) = (root / "generated_migrations" / "versions").glob("0001_*.py")
    text = path.read_text("utf-8")
    block = "    with op.get_context().autocommit_block():\n"
    assert block in text
    text = text.replace(
        block,
        block + '        op.execute(sa.text("DELETE FROM alert_logs WHERE id % 10 = 0"))\n',
        1,
    )
    path.write_text(text, "utf-8")
    result = subprocess.run(
        [*_cli(root), "upgrade", "--url", url, "--allow-modified", "test: a delete in a block"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode != Exit.OK, result.stdout + result.stderr
    assert "refused to run 'DELETE FROM alert_logs" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert _count(url, "alert_logs") == before


def test_track_counts_off_fails_the_check_instead_of_passing_blind(pg_database: str) -> None:
    """Without track_counts the statistics count nothing: the check must say so, not pass."""
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    seed_demo(url)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{pg_database}" SET track_counts = off')
    admin.dispose()
    started = time.monotonic()
    with pytest.raises(Exception, match="track_counts is off"):
        migrate.upgrade(ROOT / "generated_migrations", sa.make_url(url), "0001")
    assert time.monotonic() - started < 120
    assert _revision(url) == "0000"


def _loops_on(plan: Any, table: str) -> list[int]:
    """The actual loops of every scan of ``table`` in an EXPLAIN (ANALYZE, FORMAT JSON) plan."""
    found = []
    nodes = [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == table:
            found.append(int(node["Actual Loops"]))
        nodes += node.get("Plans", [])
    return found


def test_the_check_after_the_ddl_counts_a_table_only_when_it_has_a_new_file(
    pg_database: str, tmp_path: Path
) -> None:
    """The row-count check runs after the DDL, under its lock: for a table whose type change
    rewrites it in one direction only (varchar(50) -> varchar(200), back a narrowing), the
    direction that keeps its file counts no row (count(*) of 1M rows under ACCESS EXCLUSIVE
    blocked every writer for 0.25-0.6 s: benchmarks/experiments/ops_blockers.py); a new file
    (a rewrite, or a TRUNCATE) is counted and compared."""
    from conftest import pg_url_for
    from test_narrowing import _project

    from generator import runtime

    out = _project(tmp_path, "varchar(50)", "varchar(200)", acknowledge=False)
    url = pg_url_for(pg_database)
    migrate.upgrade(out, sa.make_url(url), "0000")
    execute(url, *(f"INSERT INTO notes (id, v) VALUES ({i}, 'x')" for i in range(1, 6)))
    validation = out / "validation" / "postgresql"
    (pre,) = validation.glob("0001_*.pre.json")
    (post,) = validation.glob("0001_*.post.json")
    snapshots = [c.sql for c in runtime.load_checks(pre) if c.kind == "snapshot"]
    (check,) = [c.sql for c in runtime.load_checks(post) if c.name == "row_counts"]
    engine = db.make_engine(sa.make_url(url))
    try:
        for ddl, counted, failing in (
            ("ALTER TABLE notes ALTER COLUMN v TYPE varchar(200)", False, []),
            ("TRUNCATE notes", True, [("notes", "fewer rows after this change", 5, 0)]),
        ):
            with engine.connect() as conn, conn.begin() as tx:
                for sql in snapshots:
                    conn.exec_driver_sql(sql)
                conn.exec_driver_sql(ddl)
                plan = conn.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) {check.replace('%', '%%')}"
                ).scalar_one()
                loops = _loops_on(plan, "notes")
                assert loops and all(n == (1 if counted else 0) for n in loops), (ddl, loops)
                rows = conn.exec_driver_sql(check.replace("%", "%%")).all()
                assert [tuple(r[:4]) for r in rows] == failing
                tx.rollback()
    finally:
        engine.dispose()
