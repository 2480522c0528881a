"""sql: raw SQL per dialect, then its checks; no schema effect (the change's own post-checks
refuse SQL that alters the modelled schema); the downgrade runs `down`, or refuses, naming
the change, when the SQL is irreversible."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import GOLDEN, ROOT, execute, inspect_schema

from generator import files, lint, migrate, runtime
from generator.errors import SpecErrors
from generator.load import Change, load_changes
from generator.ops.purge import IrreversibleStep
from generator.ops.sql import SqlStep
from generator.render import generate

CASE = GOLDEN / "render" / "sql"
BASE = (CASE / "changes" / "0000_base.yaml").read_text()


def _write(tmp_path: Path, *specs: str) -> Path:
    changes = tmp_path / "changes"
    changes.mkdir(parents=True)
    for i, text in enumerate((BASE, *specs)):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{i:04d}_{name}.yaml").write_text(text)
    return changes


def _load(tmp_path: Path, *specs: str) -> list[Change]:
    return load_changes(_write(tmp_path, *specs), display_base=tmp_path, lint=False)


def _sql(name: str, body: str) -> str:
    return f"id: {name}\ndescription: d\noperations:\n  - op: sql\n{body}"


def _both(key: str, sql: str) -> str:
    return f"    {key}:\n      postgresql: {sql}\n      sqlite: {sql}\n"


def test_no_schema_effect_and_the_inverse_runs_down(tmp_path: Path) -> None:
    spec = _sql("s", _both("up", "SELECT 1") + _both("down", "SELECT 2"))
    change = _load(tmp_path, spec)[-1]
    (step,) = change.steps
    assert isinstance(step, SqlStep)
    assert change.after == change.before
    (inverse,) = change.inverse_steps
    assert isinstance(inverse, SqlStep) and inverse.text("sqlite") == "SELECT 2"
    assert inverse.reverse() == step
    assert {f.rule.id for f in lint.lint_change(change)} == {"SG113"}
    irreversible = _sql("i", _both("up", "SELECT 1") + "    irreversible: true\n")
    (refusal,) = _load(tmp_path / "i", irreversible)[-1].inverse_steps
    assert isinstance(refusal, IrreversibleStep)
    assert refusal.message.startswith("change 0001_i cannot be downgraded: its raw SQL")


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, _sql("s", _both("up", "SELECT 1")))
    assert "operations[0].down: give `down` (SQL undoing `up`) or `irreversible: true`" in str(
        info.value
    )
    both = _both("up", "SELECT 1") + _both("down", "SELECT 2") + "    irreversible: true\n"
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path / "both", _sql("s", both))
    assert "operations[0].irreversible: `irreversible: true` and a `down`: give one" in str(
        info.value
    )
    one = "    up: {postgresql: SELECT 1}\n    irreversible: true\n"
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path / "one", _sql("s", one))
    assert "0001_s.yaml:5:" in str(info.value) and "up.sqlite" in str(info.value)


def _project(tmp_path: Path, *specs: str) -> Path:
    changes = load_changes(_write(tmp_path, *specs), display_base=tmp_path)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    return out_dir


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


ACK = "acknowledge: {SG113: a test}\n"


@pytest.mark.db
def test_the_golden_changes_with_rows(db_url: str, tmp_path: Path) -> None:
    """The view comes and goes with its change; the irreversible fix lowers the rows' status
    and a downgrade past it refuses, leaving every row as it is."""
    changes = load_changes(CASE / "changes", display_base=CASE)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    execute(
        db_url,
        "INSERT INTO accounts (id, balance, status) VALUES (1, 5, 'open'), (2, 0, 'OPEN'), "
        "(3, 1, 'closed')",
    )
    migrate.upgrade(out_dir, url, "0001")
    assert _query(db_url, "SELECT id FROM open_accounts ORDER BY id") == [(1,)]
    migrate.downgrade(out_dir, url, "0000")
    with pytest.raises(sa.exc.DatabaseError):
        _query(db_url, "SELECT id FROM open_accounts")
    migrate.upgrade(out_dir, url, "head")
    assert _query(db_url, "SELECT id FROM open_accounts ORDER BY id") == [(1,), (2,)]
    rows = _query(db_url, "SELECT id, status FROM accounts ORDER BY id")
    assert rows == [(1, "open"), (2, "open"), (3, "closed")]
    head = inspect_schema(db_url)
    with pytest.raises(runtime.Irreversible, match="change 0002_fix cannot be downgraded"):
        migrate.downgrade(out_dir, url, "0001")
    assert inspect_schema(db_url) == head
    assert _query(db_url, "SELECT id, status FROM accounts ORDER BY id") == rows


@pytest.mark.db
def test_a_failing_check_rolls_the_change_back(db_url: str, tmp_path: Path) -> None:
    spec = _sql(
        "fix",
        _both("up", "UPDATE accounts SET balance = balance - 10")
        + _both("down", "UPDATE accounts SET balance = balance + 10")
        + "    checks:\n"
        + "      - postgresql: SELECT id, balance FROM accounts WHERE balance < 0\n"
        + "        sqlite: SELECT id, balance FROM accounts WHERE balance < 0\n",
    ).replace("operations:", ACK + "operations:")
    out_dir = _project(tmp_path, spec)
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    execute(db_url, "INSERT INTO accounts (id, balance) VALUES (1, 50), (2, 5)")
    with pytest.raises(runtime.CheckFailed) as info:
        migrate.upgrade(out_dir, url, "head")
    text = str(info.value)
    assert "SQL-checks of 0001_fix failed" in text and "check sql_check_1: 1 failing row(s)" in text
    assert text.replace(".00", "").splitlines()[-1].split() == ["2", "|", "-5"]  # the row
    # rolled back: every value as it was, still at the revision before
    assert [(i, float(str(b))) for i, b in _query(db_url, "SELECT id, balance FROM accounts")] == [
        (1, 50.0),
        (2, 5.0),
    ]
    assert _query(db_url, "SELECT version_num FROM alembic_version") == [("0000",)]


@pytest.mark.db
def test_sql_that_alters_the_modelled_schema_is_refused(db_url: str, tmp_path: Path) -> None:
    """No schema effect is declared, so the change's post-checks see the added column."""
    spec = _sql(
        "sneaky",
        _both("up", "ALTER TABLE accounts ADD COLUMN sneaky integer")
        + _both("down", "ALTER TABLE accounts DROP COLUMN sneaky"),
    ).replace("operations:", ACK + "operations:")
    out_dir = _project(tmp_path, spec)
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    with pytest.raises(runtime.CheckFailed, match=r"accounts\.columns"):
        migrate.upgrade(out_dir, url, "head")
    assert [c[0] for c in inspect_schema(db_url, by_name=False)["accounts"]["columns"]] == [
        "id",
        "balance",
        "status",
    ]
