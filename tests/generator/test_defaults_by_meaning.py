"""Schema checks compare defaults by meaning: a market-data database built by raw SQL with
``now()`` (PostgreSQL; what SQLAlchemy's ``server_default=func.now()`` creates) or
``datetime('now')`` (SQLite) timestamp defaults is what the baseline describes, so
``schemagen stamp`` accepts it and the next changes' pre-checks pass on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ROOT, cli, copy_project, execute, last_change_number

from generator import migrate
from generator.cli import Exit

NOW = {"postgresql": "now()", "sqlite": "(datetime('now'))"}


def _raw_baseline(dialect: str, now: str) -> list[str]:
    """The baseline's DDL as a DBA would have run it: no alembic_version, `now` defaults."""
    plan = migrate.plan_sql(ROOT / "generated_migrations", dialect, "upgrade", "0000")
    out = []
    for statement in migrate.statements(plan):
        if "alembic_version" in statement or statement.startswith(("BEGIN", "COMMIT", "SET ")):
            continue
        out.append(statement.replace("DEFAULT CURRENT_TIMESTAMP", f"DEFAULT {now}"))
    return out


@pytest.mark.parametrize("spelling", ["now", "transaction_timestamp"])
def test_market_data_baseline_accepts_now_defaults(
    dialect: str, db_url: str, tmp_path: Path, spelling: str
) -> None:
    if dialect == "sqlite" and spelling == "transaction_timestamp":
        pytest.skip("SQLite has no transaction_timestamp()")
    now = NOW[dialect] if spelling == "now" else "transaction_timestamp()"
    statements = _raw_baseline(dialect, now)
    assert any(f"DEFAULT {now}" in s for s in statements)
    execute(db_url, *statements)
    project = copy_project(tmp_path / "p")
    result = cli("stamp", "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    assert "0 failed" in result.stdout
    result = cli("upgrade", "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    assert f"database is at revision {last_change_number():04d}" in result.stdout


def test_a_different_default_still_fails(dialect: str, db_url: str, tmp_path: Path) -> None:
    """By meaning, not anything goes: a clock that is not the transaction's is refused."""
    other = {"postgresql": "clock_timestamp()", "sqlite": "(datetime('now', '+1 hour'))"}
    execute(db_url, *_raw_baseline(dialect, other[dialect]))
    result = cli("stamp", "--url", db_url, root=copy_project(tmp_path / "p"))
    assert result.exit_code == Exit.FAILED, result.output
    assert "FAILED  instruments.columns" in result.stdout
