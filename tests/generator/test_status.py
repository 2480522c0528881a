"""`schemagen status`: revision, pending changes with their risk, file currency, last verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ROOT, cli, copy_project, execute
from support import db_revision as _revision

from generator import migrate
from generator.cli import Exit

pytestmark = pytest.mark.db


def test_status_of_a_database_behind_and_at_head(db_url: str, tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    migrate.upgrade(root / "generated_migrations", sa.make_url(db_url), "0002")

    result = cli("status", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED  # not at head
    assert "revision: 0002 (head: 0005)" in result.stdout
    assert (
        "pending:  0003_convert_decimal_to_float: PostgreSQL: online type change of "
        "alert_logs, market_data (expand, backfill, prepare, contract), no rewrite under a "
        "lock; SQLite rebuilds alert_logs, market_data" in result.stdout
    )
    assert "generated files: current" in result.stdout
    assert "last verify: none recorded" in result.stdout

    assert cli("verify", "--url", db_url, root=root).exit_code == Exit.OK
    assert cli("upgrade", "--url", db_url, root=root).exit_code == Exit.OK
    review = root / "generated_migrations" / "review" / "0001_optimize_market_data_indexes.md"
    review.write_text(review.read_text() + "edited\n")

    result = cli("status", "--json", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    report = json.loads(result.stdout)
    assert report["revision"] == report["head"] == "0005"
    assert report["at_head"] is True and report["pending"] == []
    assert report["files_current"] is False
    assert report["last_verify"]["revision"] == "0002"
    assert report["last_verify"]["failed"] == 0 and report["last_verify"]["passed"] > 0


HAND_WRITTEN = '''"""A hand-written revision after the generated ones (not rendered)."""

revision = "a1b2c3handmade"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
'''


def _set_revision(url: str, revision: str) -> None:
    execute(url, f"UPDATE alembic_version SET version_num = '{revision}'")


@pytest.mark.parametrize(
    ("recorded", "state"),
    [("0042", "ahead"), ("zzzz", "unknown_revision"), ("ae1027a6acf", "unknown_revision")],
)
def test_a_database_off_the_revision_graph_is_reported_never_at_head(
    db_url: str, tmp_path: Path, recorded: str, state: str
) -> None:
    root = copy_project(tmp_path / "project")
    migrate.upgrade(root / "generated_migrations", sa.make_url(db_url), "0003")
    _set_revision(db_url, recorded)

    result = cli("status", "--json", "--url", db_url, root=root)
    assert result.exit_code == Exit.DATABASE, result.output
    report = json.loads(result.stdout)
    assert report["state"] == state
    assert report["at_head"] is False
    assert report["revision"] == recorded and report["head"] == "0005"
    assert recorded in report["message"]

    text = cli("status", "--url", db_url, root=root)
    assert text.exit_code == Exit.DATABASE
    assert f"state:    {state}: the database is at revision '{recorded}'" in text.stdout
    assert "pending:  unknown" in text.stdout

    # The runner says the same, with the database-state exit code, and changes nothing.
    for command in (("upgrade",), ("downgrade", "--to", "0001"), ("verify",)):
        result = cli(*command, "--url", db_url, root=root)
        assert result.exit_code == Exit.DATABASE, (command, result.output)
        assert f"the database is at revision '{recorded}'" in result.stderr
        assert "usage" not in result.output.lower()
        assert "Traceback" not in result.output
        assert _revision(db_url) == recorded


def test_an_unknown_target_revision_is_still_a_usage_error(db_url: str, tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    migrate.upgrade(root / "generated_migrations", sa.make_url(db_url), "0002")
    result = cli("upgrade", "--to", "0042", "--url", db_url, root=root)
    assert result.exit_code == Exit.USAGE
    assert "0042" in result.stderr


def test_hand_written_revisions_are_part_of_the_graph(db_url: str, tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    (root / "generated_migrations" / "versions" / "a1b2c3_handmade.py").write_text(HAND_WRITTEN)
    migrate.upgrade(root / "generated_migrations", sa.make_url(db_url), "0005")

    result = cli("status", "--json", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    report = json.loads(result.stdout)
    assert report["state"] == "behind" and report["head"] == "a1b2c3handmade"
    assert [p["change"] for p in report["pending"]] == ["a1b2c3_handmade"]

    assert cli("upgrade", "--url", db_url, root=root).exit_code == Exit.OK
    result = cli("status", "--json", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    report = json.loads(result.stdout)
    assert report["state"] == "at_head" and report["revision"] == "a1b2c3handmade"
    assert report["pending"] == []
    # verify checks the nearest generated revision below the hand-written one
    result = cli("verify", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert "(0005_index_ticks_by_instrument_time.post.sql)" in result.stdout


def test_status_of_an_empty_database(db_url: str, tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    execute(db_url, "CREATE TABLE unrelated (id integer)")
    result = cli("status", "--json", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED
    report = json.loads(result.stdout)
    assert report["state"] == "empty" and report["revision"] is None
    assert [p["change"][:4] for p in report["pending"]] == [
        "0000",
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
    ]


@pytest.mark.parametrize(
    "command", [("status",), ("status", "--json"), ("verify",), ("downgrade", "--to", "base")]
)
def test_a_missing_sqlite_file_is_reported_not_created(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "missing.db"
    for url in (f"sqlite:///{missing}", f"sqlite+aiosqlite:///{missing}"):
        result = cli(*command, "--url", url, root=ROOT)
        assert result.exit_code == Exit.DATABASE, result.output
        assert f"no database at {missing}" in result.stderr
        assert not missing.exists()
    # upgrade is the command that creates a database
    assert cli("upgrade", "--to", "0000", "--url", f"sqlite:///{missing}", root=ROOT).exit_code == 0
    assert missing.is_file()


def test_the_risk_comes_from_the_risk_model_not_the_review_file(
    db_url: str, tmp_path: Path
) -> None:
    """status asks the risk model: a review summary rewritten (or deleted) by hand changes
    nothing in what it reports, and the files are then reported stale."""
    root = copy_project(tmp_path / "project")
    migrate.upgrade(root / "generated_migrations", sa.make_url(db_url), "0002")
    review = root / "generated_migrations" / "review" / "0003_convert_decimal_to_float.md"
    review.write_text(review.read_text().replace("**Risk:**", "**Risk:** none at all;"))
    (root / "generated_migrations" / "review" / "0004_add_soft_delete_safety.md").unlink()

    result = cli("status", "--json", "--url", db_url, root=root)
    report = json.loads(result.stdout)
    risks = {p["change"]: p["risk"] for p in report["pending"]}
    assert risks["0003_convert_decimal_to_float"] == (
        "PostgreSQL: online type change of alert_logs, market_data (expand, backfill, "
        "prepare, contract), no rewrite under a lock; SQLite rebuilds alert_logs, market_data"
    )
    assert risks["0004_add_soft_delete_safety"].startswith("PostgreSQL")
    assert report["files_current"] is False
    # the same Risk objects, as data: 0003 is online on PostgreSQL (nothing rewritten under a
    # lock; brief ACCESS EXCLUSIVE at expand and contract)
    (pending,) = [p for p in report["pending"] if p["change"] == "0003_convert_decimal_to_float"]
    pg = pending["units"]["postgresql"]
    online = sorted(t for u in pg if u["unit"] == "online_type_change" for t in u["tables"])
    assert online == ["alert_logs", "market_data"]
    assert not any(u["rewrites"] for u in pg)
    assert all(u["lock"].startswith("ACCESS EXCLUSIVE (brief") for u in pg)
    assert all(u["unit"] == "recreate_table" for u in pending["units"]["sqlite"] if u["rewrites"])
