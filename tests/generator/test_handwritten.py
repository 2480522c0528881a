"""Hand-written Alembic revisions beside the generated ones: generate keeps them, the chain
check counts them, verify and status work at them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import cli, copy_project, last_change_number

from generator.cli import Exit

HEAD = f"{last_change_number():04d}"
HANDWRITTEN = f'''"""Hand-written: a data fix the specs do not describe."""

from alembic import op

revision = "a1b2c3d4"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE instruments SET name = name")


def downgrade() -> None:
    pass
'''
NEXT_SPEC = """\
id: index_alert_rules_by_active
description: |
  Why: a test change after a hand-written revision.
  Cost: one small index.
  Roll back: drop it.
operations:
  - {op: create_index, table: alert_rules, name: ix_alert_rules_test_only, columns: [id, threshold]}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = copy_project(tmp_path / "project")
    (root / "generated_migrations" / "versions" / "a1b2c3d4_data_fix.py").write_text(HANDWRITTEN)
    return root


def test_generate_keeps_a_hand_written_revision(project: Path) -> None:
    script = project / "generated_migrations" / "versions" / "a1b2c3d4_data_fix.py"
    result = cli("generate", root=project)
    assert result.exit_code == Exit.OK, result.output
    assert script.is_file(), result.output
    assert "deleted" not in result.output.replace("0 deleted", "")
    result = cli("generate", "--check", root=project)
    assert result.exit_code == Exit.OK, result.output


def test_generate_deletes_only_files_the_sum_lists(project: Path) -> None:
    """A file with the generated header that the sum does not list is kept and reported."""
    versions = project / "generated_migrations" / "versions"
    stray = versions / "0042_copied.py"
    stray.write_text((versions / f"{HEAD}_index_ticks_by_instrument_time.py").read_text())
    result = cli("generate", root=project)
    assert stray.is_file()
    assert "0042_copied.py" in result.output and "not in schemagen.sum" in result.output


def test_a_second_head_is_refused(project: Path) -> None:
    """A new spec and the hand-written revision both follow the old head: two heads."""
    number = int(HEAD) + 1
    (project / "changes" / f"{number:04d}_index_alert_rules_by_active.yaml").write_text(NEXT_SPEC)
    result = cli("generate", root=project)
    assert result.exit_code == Exit.FAILED, result.output
    assert "2 heads" in result.output and "a1b2c3d4_data_fix.py" in result.output
    assert not list((project / "generated_migrations" / "versions").glob(f"{number:04d}_*"))
    # pointing the hand-written revision at the new change makes one chain again
    script = project / "generated_migrations" / "versions" / "a1b2c3d4_data_fix.py"
    script.write_text(HANDWRITTEN.replace(f'"{HEAD}"', f'"{number:04d}"'))
    result = cli("generate", root=project)
    assert result.exit_code == Exit.OK, result.output
    assert cli("generate", "--check", root=project).exit_code == Exit.OK


@pytest.mark.db
def test_upgrade_verify_status_at_a_hand_written_revision(project: Path, db_url: str) -> None:
    result = cli("upgrade", "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    assert "database is at revision a1b2c3d4" in result.output
    assert cli("generate", root=project).exit_code == Exit.OK
    result = cli("verify", "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    assert "hand-written" in result.output and f"generated ancestor {HEAD}" in result.output
    result = cli("status", "--json", "--url", db_url, root=project)
    report = json.loads(result.output)
    assert (report["revision"], report["head"], report["at_head"]) == ("a1b2c3d4",) * 2 + (True,)
    assert result.exit_code == Exit.OK, result.output
    # one step back: the hand-written revision is pending
    result = cli("downgrade", "--url", db_url, "--to", HEAD, root=project)
    assert result.exit_code == Exit.OK, result.output
    result = cli("status", "--json", "--url", db_url, root=project)
    report = json.loads(result.output)
    assert result.exit_code == Exit.FAILED, result.output
    assert [p["change"] for p in report["pending"]] == ["a1b2c3d4_data_fix"]
