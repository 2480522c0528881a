"""The validation SQL passes on a correct database and names the rows of a tampered one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ROOT, cli, execute

from generator import db, migrate
from generator.cli import Exit

MIGRATIONS = ROOT / "generated_migrations"
pytestmark = pytest.mark.db


@pytest.fixture
def baseline(db_url: str) -> str:
    migrate.upgrade(MIGRATIONS, sa.make_url(db_url), "0000")
    return db_url


def _verify(url: str) -> tuple[int, str]:
    result = cli("verify", "--url", url, root=ROOT)
    return result.exit_code, result.stdout


def test_post_checks_pass_on_a_correct_database(baseline: str) -> None:
    code, out = _verify(baseline)
    assert code == Exit.OK, out
    assert "at revision 0000 (0000_baseline.post.sql)" in out
    assert "  passed  market_data.indexes" in out
    assert "29 passed, 0 failed" in out


def test_verify_of_an_empty_database_runs_the_first_pre_checks(db_url: str) -> None:
    path = db.sqlite_file(sa.make_url(db_url))
    if path is not None:
        path.touch()  # an empty file is an empty SQLite database; verify never creates one
    code, out = _verify(db_url)
    assert code == Exit.OK, out
    assert "at revision base (0000_baseline.pre.sql)" in out


def test_an_index_dropped_by_hand_is_reported(baseline: str) -> None:
    execute(baseline, "DROP INDEX ix_market_data_price")
    code, out = _verify(baseline)
    assert code == Exit.FAILED
    assert "  FAILED  market_data.indexes" in out
    assert "expected, not found | ix_market_data_price" in out
    assert "28 passed, 1 failed" in out


def test_a_column_of_the_wrong_type_is_reported(baseline: str, dialect: str) -> None:
    if dialect == "postgresql":
        execute(baseline, "ALTER TABLE market_data ALTER COLUMN volume TYPE integer")
        found = "found, not expected | volume      | integer"
    else:
        execute(
            baseline,
            "ALTER TABLE market_data DROP COLUMN volume",
            "ALTER TABLE market_data ADD COLUMN volume INTEGER",
        )
        found = "found, not expected | volume      | INTEGER"
    code, out = _verify(baseline)
    assert code == Exit.FAILED
    assert "  FAILED  market_data.columns" in out
    assert found in out
    assert "expected, not found | volume" in out


def test_a_foreign_key_with_the_wrong_action_is_reported(baseline: str, dialect: str) -> None:
    if dialect == "postgresql":
        execute(
            baseline,
            "ALTER TABLE alert_logs DROP CONSTRAINT fk_alert_logs_rule_id_alert_rules",
            "ALTER TABLE alert_logs ADD CONSTRAINT fk_alert_logs_rule_id_alert_rules "
            "FOREIGN KEY (rule_id) REFERENCES alert_rules (id) ON DELETE RESTRICT",
        )
    else:
        # SQLite cannot alter a constraint; rewrite the stored CREATE TABLE as a DBA might.
        engine = db.make_engine(sa.make_url(baseline))
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA writable_schema=ON")
            raw.execute(
                "UPDATE sqlite_master SET sql = replace(sql, "
                "'REFERENCES alert_rules (id) ON DELETE CASCADE', "
                "'REFERENCES alert_rules (id) ON DELETE RESTRICT') WHERE name = 'alert_logs'"
            )
            raw.execute("PRAGMA writable_schema=OFF")
        engine.dispose()
    code, out = _verify(baseline)
    assert code == Exit.FAILED
    assert "  FAILED  alert_logs.foreign_keys" in out
    assert "RESTRICT" in out and "CASCADE" in out


def test_upgrade_refuses_a_database_whose_state_is_not_the_expected_one(db_url: str) -> None:
    execute(db_url, "CREATE TABLE instruments (id INTEGER PRIMARY KEY)")
    result = cli("upgrade", "--url", db_url, root=ROOT)
    assert result.exit_code == Exit.FAILED
    assert "pre-checks of 0000_baseline failed" in result.stderr
    assert "check tables: 1 failing row(s)" in result.stderr
    assert "found, not expected | instruments" in result.stderr
    assert "Traceback" not in result.output


def test_cli_upgrade_downgrade_and_json_logs(db_url: str, dialect: str) -> None:
    result = cli("--log-format", "json", "upgrade", "--to", "0000", "--url", db_url, root=ROOT)
    assert result.exit_code == Exit.OK, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    steps = [(r["change"], r["step"], r["result"]) for r in records]
    assert ("0000_baseline", "pre-checks", "ok") in steps
    assert ("0000_baseline", "upgrade", "ok") in steps
    assert ("0000_baseline", "post-checks", "ok") in steps
    for r in records:
        assert {"change", "step", "dialect", "duration_ms", "result"} <= set(r)
        assert r["dialect"] == dialect
    post = next(r for r in records if r["step"] == "post-checks")
    assert post["checks"] == 29 and post["failing_rows"] == 0
    assert "database is at revision 0000" in result.stdout

    result = cli("downgrade", "--to", "base", "--url", db_url, root=ROOT)
    assert result.exit_code == Exit.OK, result.output
    assert "0000_baseline: downgrade ok" in result.stdout
    assert "database is at revision base" in result.stdout


def test_async_urls_are_accepted(async_db_url: str) -> None:
    for args in (("upgrade",), ("verify",), ("downgrade", "--to", "base")):
        result = cli(*args, "--url", async_db_url, root=ROOT)
        assert result.exit_code == Exit.OK, result.output


def test_database_url_from_the_environment(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert cli("upgrade", "--to", "0001", root=ROOT).exit_code == Exit.OK
    assert "at revision 0001" in cli("verify", root=ROOT).stdout


def test_default_url_is_a_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    result = cli("upgrade", root=ROOT)
    assert result.exit_code == Exit.OK, result.output
    assert (tmp_path / "marketdata.db").is_file()


def test_unknown_revision_is_a_usage_error(db_url: str) -> None:
    result = cli("upgrade", "--to", "0999", "--url", db_url, root=ROOT)
    assert result.exit_code == Exit.USAGE
    assert "0999" in result.stderr
    assert "Traceback" not in result.output
