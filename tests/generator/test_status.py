"""`schemagen status`: revision, pending changes with their risk, file currency, last verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import cli, copy_project

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
        "pending:  0003_convert_decimal_to_float: PostgreSQL rewrites alert_logs, market_data; "
        "SQLite rebuilds alert_logs, market_data" in result.stdout
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
