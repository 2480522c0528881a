"""Run-time integrity: upgrade, downgrade, verify and plain Alembic refuse a generated file
that differs from generated_migrations/schemagen.sum, unless an override with a reason is
given (and logged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import ROOT, cli, copy_project, dump
from support import db_revision as _revision

from generator import db, integrity, migrate
from generator.cli import Exit
from marketdata import demo

pytestmark = pytest.mark.db

CHANGE = "0001_optimize_market_data_indexes"
SCRIPT = f"versions/{CHANGE}.py"
DELETE = '    op.execute("DELETE FROM alert_logs WHERE id % 10 = 0")\n'
# An edit that changes the file but not what it does: the override must run it to the end.
HOTFIX = "    # hotfix INC-42: reviewed by ops\n"


def _seeded_project(tmp_path: Path, db_url: str, at: str = "0000") -> Path:
    root = copy_project(tmp_path / "project")
    migrate.upgrade(ROOT / "generated_migrations", sa.make_url(db_url), at)
    engine = db.make_engine(sa.make_url(db_url))
    with engine.begin() as conn:
        demo.seed(conn, ticks=300, alerts=200)
    engine.dispose()
    return root


def _edit_script(root: Path, line: str = DELETE) -> None:
    """The hand edit of the issue: a DELETE at the start of every dialect's DDL function."""
    path = root / "generated_migrations" / SCRIPT
    text = path.read_text(encoding="utf-8")
    for fn in ("_upgrade_postgresql", "_upgrade_sqlite"):
        head = f"def {fn}() -> None:\n"
        assert head in text
        text = text.replace(head, head + line)
    path.write_text(text, encoding="utf-8")


def test_an_edited_migration_is_refused_and_no_row_is_lost(tmp_path: Path, db_url: str) -> None:
    root = _seeded_project(tmp_path, db_url)
    _edit_script(root)
    before = dump(db_url)
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert f"generated_migrations/{SCRIPT}" in result.output
    assert "differs from its hash in schemagen.sum" in result.output
    assert "+" + DELETE.strip() in result.output.replace("+    ", "+")  # what differs
    assert "--allow-modified" in result.output
    assert dump(db_url) == before
    assert _revision(db_url) == "0000"


def _override(root: Path, db_url: str) -> Any:
    return cli(
        "--log-format",
        "json",
        "upgrade",
        "--url",
        db_url,
        "--to",
        "0001",
        "--allow-modified",
        "hotfix INC-42 approved by ops",
        root=root,
    )


def test_the_override_runs_it_and_logs_the_reason(tmp_path: Path, db_url: str) -> None:
    root = _seeded_project(tmp_path, db_url)
    _edit_script(root, HOTFIX)
    result = _override(root, db_url)
    assert result.exit_code == Exit.OK, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    warnings = [r for r in records if r["level"] == "warning" and "INC-42" in r["message"]]
    assert warnings, result.output
    assert any(SCRIPT in r["message"] for r in warnings)
    assert _revision(db_url) == "0001"


def test_an_overridden_edit_that_loses_rows_is_still_caught_by_the_row_counts(
    tmp_path: Path, db_url: str, dialect: str
) -> None:
    """The override lets the edited file run; the data checks, which count every table,
    still catch the DELETE, and the change rolls back whole on both dialects: on PostgreSQL
    0001's CONCURRENTLY block would commit what ran before it, the DELETE with it, but the
    change's data checks run on what it did so far before that commit (docs/online.md,
    "What is checked when") and refuse it there."""
    root = _seeded_project(tmp_path, db_url)
    _edit_script(root)
    before = dump(db_url)
    result = _override(root, db_url)
    assert result.exit_code == Exit.FAILED, result.output
    assert "row_counts" in result.output
    assert _revision(db_url) == "0000"
    assert dump(db_url) == before


def test_plain_alembic_refuses_unless_the_environment_allows_it(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _seeded_project(tmp_path, db_url)
    _edit_script(root, HOTFIX)
    before = dump(db_url)
    migrations = root / "generated_migrations"
    with pytest.raises(integrity.ModifiedFiles, match=SCRIPT):
        migrate.upgrade(migrations, sa.make_url(db_url), "0001")
    assert dump(db_url) == before
    monkeypatch.setenv(integrity.ENV_VAR, "replaying the incident on a copy")
    migrate.upgrade(migrations, sa.make_url(db_url), "0001")
    assert _revision(db_url) == "0001"


def test_the_run_time_check_covers_a_change_called_without_the_preflight(
    tmp_path: Path, db_url: str
) -> None:
    """A migration run by an env.py that does not check first still refuses itself."""
    root = _seeded_project(tmp_path, db_url)
    _edit_script(root)
    env = root / "generated_migrations" / "env.py"
    text = env.read_text(encoding="utf-8")
    assert "integrity.preflight(" in text
    env.write_text(text.replace("integrity.preflight(", "(lambda *a: None)("), encoding="utf-8")
    before = dump(db_url)
    with pytest.raises(integrity.ModifiedFiles, match=SCRIPT):
        migrate.upgrade(root / "generated_migrations", sa.make_url(db_url), "0001")
    assert dump(db_url) == before


def test_an_edited_validation_file_is_refused(tmp_path: Path, db_url: str, dialect: str) -> None:
    """A check emptied by hand would let a broken state through: refused before the run."""
    root = _seeded_project(tmp_path, db_url)
    rel = f"validation/{dialect}/{CHANGE}.post.sql"
    path = root / "generated_migrations" / rel
    path.write_text(path.read_text(encoding="utf-8") + "-- check: nothing\nSELECT 1 WHERE 1 = 0\n")
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert f"generated_migrations/{rel}" in result.output
    assert _revision(db_url) == "0000"
    # verify at 0001 reads the same file: it refuses it too
    migrate.upgrade(ROOT / "generated_migrations", sa.make_url(db_url), "0001")
    result = cli("verify", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert rel in result.output
    result = cli("verify", "--url", db_url, "--allow-modified", "checking a draft", root=root)
    assert result.exit_code == Exit.OK, result.output
    assert "checking a draft" in result.output
    # downgrade reads it first
    result = cli("downgrade", "--url", db_url, "--to", "0000", root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert _revision(db_url) == "0001"


def test_an_edited_checks_file_is_refused(tmp_path: Path, db_url: str, dialect: str) -> None:
    """The .json beside a validation .sql is what the runtime runs: an edit to it is refused
    like an edit to the .sql; run anyway (with a reason), the edited checks are the ones run."""
    root = _seeded_project(tmp_path, db_url)
    rel = f"validation/{dialect}/{CHANGE}.post.json"
    path = root / "generated_migrations" / rel
    data = json.loads(path.read_text(encoding="utf-8"))
    data["checks"].append({"name": "edited", "kind": "check", "table": "", "sql": "SELECT 7"})
    path.write_text(json.dumps(data), encoding="utf-8")
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert f"generated_migrations/{rel}" in result.output
    assert _revision(db_url) == "0000"
    migrate.upgrade(ROOT / "generated_migrations", sa.make_url(db_url), "0001")
    result = cli("verify", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert rel in result.output
    result = cli("verify", "--url", db_url, "--allow-modified", "trying a check", root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert "edited" in result.output  # the check added to the .json ran (and returned a row)
    result = cli("downgrade", "--url", db_url, "--to", "0000", root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert _revision(db_url) == "0001"


def test_a_missing_or_edited_sum_is_a_refusal(tmp_path: Path, db_url: str) -> None:
    root = _seeded_project(tmp_path, db_url)
    sum_file = root / "generated_migrations" / "schemagen.sum"
    lines = sum_file.read_text(encoding="utf-8").splitlines(True)
    sum_file.write_text("".join(lines[:1] + lines[2:]), encoding="utf-8")
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert "schemagen.sum was edited" in result.output
    sum_file.unlink()
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert "schemagen.sum is missing" in result.output
    assert _revision(db_url) == "0000"
