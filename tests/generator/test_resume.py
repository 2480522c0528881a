"""Exact resume: a re-run tolerates only what the interrupted change's own steps that commit
on their own (CONCURRENTLY, VALIDATE) can leave, refuses any other drift before its first
step, and a half-applied change can be finished with `upgrade` or undone with `downgrade`."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from support import ROOT, assert_prices_within, cli, counts, dump, execute, seed_demo
from support import db_revision as _revision

from generator import db, migrate, resume, runtime
from generator.cli import Exit
from generator.load import load_changes

MIGRATIONS = ROOT / "generated_migrations"
KILLER = ROOT / "tests" / "kill_after.py"
UPGRADE_0001 = "0001_optimize_market_data_indexes: upgrade ..."


def _indexes(url: str, table: str = "market_data") -> list[tuple[str, bool]]:
    """(name, valid) of the indexes of ``table``; valid is always True on SQLite."""
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                rows = conn.exec_driver_sql(
                    "SELECT name, 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                    "AND name NOT LIKE 'sqlite_autoindex%'",
                    (table,),
                ).all()
            else:
                rows = conn.exec_driver_sql(
                    "SELECT i.relname, x.indisvalid FROM pg_index AS x "
                    "JOIN pg_class AS i ON i.oid = x.indexrelid "
                    "JOIN pg_class AS t ON t.oid = x.indrelid "
                    "WHERE t.relname = %s AND NOT x.indisprimary",
                    (table,),
                ).all()
            return sorted((str(r[0]), bool(r[1])) for r in rows)
    finally:
        engine.dispose()


def _seeded(url: str, at: str) -> dict[str, list[tuple[Any, ...]]]:
    """A database at revision ``at`` with demo rows in every table; returns its rows."""
    seed_demo(url)
    if at != "0000":
        migrate.upgrade(MIGRATIONS, sa.make_url(url), at)
    return dump(url)


def _run_killed(url: str, marker: str, nth: int, *args: str, sql: str | None = None) -> Any:
    env = {**os.environ, "KILL_AFTER": marker, "KILL_NTH": str(nth), "KILL_URL": url}
    if sql is not None:
        env["RUN_SQL"] = sql
    return subprocess.run(
        [sys.executable, str(KILLER), "--root", str(ROOT), *args, "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_verified(url: str, revision: str) -> None:
    verified = cli("verify", "--url", url, root=ROOT)
    assert verified.exit_code == Exit.OK, verified.output
    assert f"at revision {revision}" in verified.output


# ------------------------------------------------------------------ the tolerance, offline


def _tolerance(number: str, direction: str) -> dict[str, list[tuple[str | None, ...]]]:
    change = next(c for c in load_changes(ROOT / "changes") if c.revision == number)
    return resume.tolerance(change, direction, "postgresql")


def test_0001_tolerates_only_the_indexes_it_drops_and_builds() -> None:
    for direction in ("upgrade", "downgrade"):
        tolerated = _tolerance("0001", direction)
        assert set(tolerated) == {"market_data.indexes"}, direction
        names = {row[1] for row in tolerated["market_data.indexes"]}
        assert names == {
            "ix_market_data_timestamp",
            "ix_market_data_instrument",
            "ix_market_data_price",
            "ix_market_data_latest",
            "ix_market_data_instrument_price",
        }
        assert "ix_market_data_timestamp_instrument" not in names


def test_0001_upgrade_tolerates_each_index_in_the_states_its_step_leaves() -> None:
    rows = set(_tolerance("0001", "upgrade")["market_data.indexes"])
    # dropped by the upgrade: absent, or present INVALID (an interrupted concurrent drop)
    assert ("expected, not found", "ix_market_data_price", "price", "NO", "YES", "") in rows
    assert ("found, not expected", "ix_market_data_price", "price", "NO", "NO", "") in rows
    # built by the upgrade: present, valid or INVALID (an interrupted concurrent build)
    new = ("ix_market_data_instrument_price", "instrument_id,price", "NO")
    assert ("found, not expected", *new, "YES", "") in rows
    assert ("found, not expected", *new, "NO", "") in rows
    # nothing else, and never a row of an index the change does not touch
    # 4 dropped (absent or INVALID: 2 rows each), 1 built (valid or INVALID); the downgrade's
    # half-done states (the 4 rebuilt INVALID, the new one dropped) are among these rows
    assert len(rows) == 4 * 2 + 2


def test_a_transactional_change_tolerates_nothing() -> None:
    assert _tolerance("0000", "upgrade") == {}
    assert _tolerance("0000", "downgrade") == {}


def test_0003_online_tolerates_its_shadows_and_the_contracted_state() -> None:
    """0003 is online on PostgreSQL: killed before a table's contract, that table has its
    shadow columns, their checks (validated or not) and the shadow index; after it, the new
    types; by shadow table, the new table of either direction. Nothing else, and no table the
    change does not touch."""
    for direction in ("upgrade", "downgrade"):
        tolerated = _tolerance("0003", direction)
        assert set(tolerated) == {
            f"{t}.{aspect}"
            for t in ("market_data", "alert_logs")
            for aspect in ("columns", "check_constraints")
        } | {
            "market_data.indexes",
            "tables",
            "market_data.foreign_keys",
            "alert_logs.foreign_keys",
        }, direction
        # after a swap, until they are validated, the tables' own keys NOT VALID
        assert {r[0] for r in tolerated["alert_logs.foreign_keys"]} == {
            "expected, not found",
            "found, not expected",
        }
        assert sorted(tolerated["tables"]) == [
            ("found, not expected", f"sg_{d}__{t}")
            for d in ("down", "up")
            for t in ("alert_logs", "market_data")
        ]
        columns = {row[1] for row in tolerated["market_data.columns"]}
        assert "sg_up__price" in columns and "sg_down__price" in columns
        assert columns <= {
            *(f"{p}{c}" for p in ("", "sg_up__", "sg_down__") for c in PRICE_COLUMNS)
        }
        indexes = {row[1] for row in tolerated["market_data.indexes"]}
        assert indexes == {
            "sg_up__ix_market_data_instrument_price",
            "sg_down__ix_market_data_instrument_price",
        }


PRICE_COLUMNS = ("price", "bid", "ask", "open_price", "high_price", "low_price")


def test_0004_tolerates_the_swapped_keys_not_yet_validated() -> None:
    tolerated = _tolerance("0004", "upgrade")
    fk = [r for r in tolerated["market_data.foreign_keys"] if r[0] == "found, not expected"]
    assert ("found, not expected", "fk_market_data_instrument_id_instruments") in {
        r[:2] for r in fk
    }
    # swapped (validated or not), or swapped back by a half-done downgrade, not yet validated
    assert {r[-2:] for r in fk} == {("RESTRICT", "NO"), ("RESTRICT", "YES"), ("CASCADE", "NO")}
    # the columns it adds (committed with the first concurrent index build), nothing more
    columns = tolerated["market_data.columns"]
    assert [r[:2] for r in columns] == [("found, not expected", "deleted_at")]
    assert "instruments.columns" not in tolerated


def test_every_tolerated_check_is_a_check_of_the_file_it_tolerates() -> None:
    """checks.catalogue_rows names the checks as the validation templates do."""
    for change in load_changes(ROOT / "changes"):
        for direction, phase in (("upgrade", "pre"), ("downgrade", "post")):
            tolerated = resume.tolerances(change)[direction].get("postgresql", {})
            file = MIGRATIONS / "validation" / "postgresql" / f"{change.name}.{phase}.json"
            names = {c.name for c in runtime.load_checks(file)}
            assert set(tolerated) <= names, (change.name, direction)


# ------------------------------------------------------------------ refused before any DDL


def test_hand_dropped_index_is_refused_before_any_ddl(db_url: str, dialect: str) -> None:
    original = _seeded(db_url, "0000")
    execute(db_url, 'DROP INDEX "ix_market_data_timestamp_instrument"')
    before = _indexes(db_url)
    assert len(before) == 4

    result = cli("upgrade", "--url", db_url, root=ROOT)

    assert result.exit_code == Exit.FAILED, result.output
    assert "ix_market_data_timestamp_instrument" in result.output
    assert "expected, not found" in result.output
    assert "nothing was changed" in result.output
    assert UPGRADE_0001 not in result.output  # not one statement of the change ran
    assert _indexes(db_url) == before
    assert _revision(db_url) == "0000"
    assert dump(db_url) == original


@pytest.mark.kill
@pytest.mark.parametrize(
    ("drift", "undo", "named"),
    [
        (
            'ALTER TABLE "market_data" ADD COLUMN "extra" integer',
            'ALTER TABLE "market_data" DROP COLUMN "extra"',
            "extra",
        ),
        (
            'ALTER TABLE "market_data" DROP CONSTRAINT "fk_market_data_instrument_id_instruments"',
            'ALTER TABLE "market_data" ADD CONSTRAINT "fk_market_data_instrument_id_instruments" '
            'FOREIGN KEY ("instrument_id") REFERENCES "instruments" ("id") ON DELETE CASCADE',
            "fk_market_data_instrument_id_instruments",
        ),
    ],
    ids=["column", "foreign key"],
)
def test_resume_of_0001_refuses_column_and_foreign_key_drift(
    pg_database: str, drift: str, undo: str, named: str
) -> None:
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    original = _seeded(url, "0000")
    killed = _run_killed(url, "DROP INDEX CONCURRENTLY", 2, "upgrade")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    half = _indexes(url)
    execute(url, drift)

    refused = cli("upgrade", "--url", url, root=ROOT)

    assert refused.exit_code == Exit.FAILED, refused.output
    assert named in refused.output
    assert UPGRADE_0001 not in refused.output
    assert _indexes(url) == half
    assert _revision(url) == "0000"

    execute(url, undo)
    resumed = cli("upgrade", "--url", url, root=ROOT)
    assert resumed.exit_code == Exit.OK, resumed.output
    assert "resuming" in resumed.output
    _assert_verified(url, "0005")
    assert counts(dump(url)) == counts(original)


# ------------------------------------------------------------------ killed, then on or back

# (marker, nth, the command that is killed, the revision before the change, what is happening)
KILLS = [
    ("DROP INDEX CONCURRENTLY", 2, "upgrade", "0000", "0001 upgrade: between two drops"),
    ("CREATE INDEX CONCURRENTLY", 1, "upgrade", "0000", "0001 upgrade: index built"),
    ("VALIDATE CONSTRAINT", 2, "upgrade", "0003", "0004 upgrade: keys swapped, half validated"),
    # each key's swap commits on its own: killed after two of the four
    ("DO $swap$", 2, "upgrade", "0003", "0004 upgrade: two keys swapped, two not"),
    ("DO $swap$", 3, "downgrade", "0003", "0004 downgrade: three keys swapped back, one not"),
    (
        "DROP INDEX CONCURRENTLY IF EXISTS ix_market_data_deleted_at",
        1,
        "upgrade",
        "0004",
        "0005 upgrade: full index dropped, partial one not built",
    ),
    (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_market_data_deleted_at",
        1,
        "downgrade",
        "0004",
        "0005 downgrade: full index rebuilt, the others not",
    ),
]


@pytest.mark.kill
@pytest.mark.parametrize("way", ["finish", "undo"])
@pytest.mark.parametrize(
    ("marker", "nth", "command", "previous", "point"), KILLS, ids=[k[4] for k in KILLS]
)
def test_killed_change_is_finished_or_undone(
    pg_database: str, marker: str, nth: int, command: str, previous: str, point: str, way: str
) -> None:
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    change = f"{int(previous) + 1:04d}"
    start = previous if command == "upgrade" else change
    original = _seeded(url, start)
    args = ("upgrade",) if command == "upgrade" else ("downgrade", "--to", previous)
    killed = _run_killed(url, marker, nth, *args)
    assert killed.returncode == -9, killed.stdout + killed.stderr

    # on: the interrupted direction, again; back: the other one
    to_change = (command == "upgrade") == (way == "finish")
    if to_change:
        result = cli("upgrade", "--to", change, "--url", url, root=ROOT)
        target = change
    else:
        result = cli("downgrade", "--to", previous, "--url", url, root=ROOT)
        target = previous
    assert result.exit_code == Exit.OK, result.output
    assert f"database is at revision {target}" in result.output
    _assert_verified(url, target)
    after = dump(url)
    assert counts(after) == counts(original)
    if target == start:
        assert after == original
    assert_prices_within(original, after, url)

    # and from there the whole way up
    final = cli("upgrade", "--url", url, root=ROOT)
    assert final.exit_code == Exit.OK, final.output
    _assert_verified(url, "0005")


@pytest.mark.kill
def test_invalid_index_of_an_interrupted_build_is_undone(pg_database: str) -> None:
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    original = _seeded(url, "0000")
    killed = _run_killed(url, "CREATE INDEX CONCURRENTLY", 1, "upgrade")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    # what a build killed part-way leaves (the kill above lands after it finished)
    execute(
        url,
        "UPDATE pg_index SET indisvalid = false "
        "WHERE indexrelid = 'ix_market_data_instrument_price'::regclass",
    )

    result = cli("downgrade", "--to", "0000", "--url", url, root=ROOT)

    assert result.exit_code == Exit.OK, result.output
    _assert_verified(url, "0000")
    assert dump(url) == original


# ------------------------------------------------------------------ a failed check, honestly


@pytest.mark.kill
def test_failed_post_check_after_committed_steps_says_what_was_done(pg_database: str) -> None:
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    original = _seeded(url, "0000")
    # another session adds an index while 0001 runs: its post-checks must fail
    intruder = 'CREATE INDEX "ix_intruder" ON "market_data" ("volume")'
    failed = _run_killed(url, "CREATE INDEX CONCURRENTLY", 1, "upgrade", sql=intruder)

    assert failed.returncode == Exit.FAILED, failed.stdout + failed.stderr
    message = failed.stderr
    assert "post-checks of 0001_optimize_market_data_indexes failed" in message
    assert "ix_intruder" in message
    assert "rolled back" not in message
    assert "DROP INDEX CONCURRENTLY IF EXISTS ix_market_data_timestamp" in message
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_market_data_instrument_price" in message
    assert "revision 0000" in message
    assert "schemagen upgrade" in message
    assert "schemagen downgrade --to 0000" in message

    # the intruder is drift no step of 0001 explains: refused, by name, before any DDL
    again = cli("upgrade", "--url", url, root=ROOT)
    assert again.exit_code == Exit.FAILED, again.output
    assert "ix_intruder" in again.output
    assert UPGRADE_0001 not in again.output

    execute(url, 'DROP INDEX "ix_intruder"')
    back = cli("downgrade", "--to", "0000", "--url", url, root=ROOT)
    assert back.exit_code == Exit.OK, back.output
    _assert_verified(url, "0000")
    assert dump(url) == original
    on = cli("upgrade", "--url", url, root=ROOT)
    assert on.exit_code == Exit.OK, on.output
    _assert_verified(url, "0005")
