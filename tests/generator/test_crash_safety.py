"""A migration process SIGKILLed part-way through a phase-1 change, then run again with
`schemagen upgrade`, reaches head with every check passing and no row or value lost."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import ROOT, assert_prices_within, cli, counts, dump, seed_demo

from generator.cli import Exit

MIGRATIONS = ROOT / "generated_migrations"
KILLER = ROOT / "tests" / "kill_after.py"
pytestmark = pytest.mark.db

# (dialect, marker, nth occurrence, what is happening when the process dies)
KILL_POINTS = [
    ("sqlite", "CREATE TABLE _alembic_tmp_market_data", 1, "0003: new table created"),
    ("sqlite", "INSERT INTO _alembic_tmp_market_data", 1, "0003: rows copied"),
    ("sqlite", "DROP TABLE market_data", 1, "0003: old table dropped, not yet renamed"),
    (
        "sqlite",
        "ALTER TABLE _alembic_tmp_alert_rules RENAME TO alert_rules",
        1,
        "0004: alert_rules rebuilt (the cascade hazard)",
    ),
    ("sqlite", "UPDATE alembic_version", 3, "0003 done, its revision stamp not committed"),
    ("postgresql", "DROP INDEX CONCURRENTLY", 2, "0001: between two concurrent drops"),
    ("postgresql", "CREATE INDEX CONCURRENTLY", 1, "0001: index built, revision not stamped"),
    ("postgresql", "DROP INDEX CONCURRENTLY", 6, "0002: half of the seven drops done"),
    # 0003 is online: killed mid-backfill (a batch's update done, not committed)
    ("postgresql", 'sg_i AS (INSERT INTO "sg_up__market_data"', 1, "0003: inside the backfill"),
    # The swap is one DO block: killed after it ran, before its transaction committed.
    ("postgresql", "RENAME CONSTRAINT", 1, "0004: foreign keys swapped, not committed"),
    ("postgresql", "VALIDATE CONSTRAINT", 2, "0004: keys swapped, half validated"),
    (
        "postgresql",
        "DROP INDEX CONCURRENTLY IF EXISTS ix_market_data_deleted_at",
        1,
        "0005: full deleted_at index dropped, partial one not yet built",
    ),
    ("sqlite", "CREATE INDEX ix_market_data_deleted_at", 2, "0005: partial index built"),
]


@pytest.mark.parametrize(
    ("dialect", "marker", "nth", "point"),
    KILL_POINTS,
    ids=[p[3] for p in KILL_POINTS],
    indirect=["dialect"],
)
def test_killed_migration_is_completed_by_a_rerun(
    db_url: str, dialect: str, marker: str, nth: int, point: str
) -> None:
    seed_demo(db_url)
    original = dump(db_url)

    env = {**os.environ, "KILL_AFTER": marker, "KILL_NTH": str(nth)}
    killed = subprocess.run(
        [sys.executable, str(KILLER), "--root", str(ROOT), "upgrade", "--url", db_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr  # it really died there

    result = cli("upgrade", "--url", db_url, root=ROOT)
    assert result.exit_code == Exit.OK, result.output
    assert "database is at revision 0005" in result.stdout
    verified = cli("verify", "--url", db_url, root=ROOT)
    assert verified.exit_code == Exit.OK, verified.output
    after = dump(db_url)
    assert counts(after) == counts(original)
    assert_prices_within(original, after, db_url)
