"""purge: destroys the archives of an earlier change (the columns its drop_column set aside,
the tables its drop_table renamed aside), lint SG112 until acknowledged; a downgrade past it
refuses before anything runs, naming the change, and leaves the database as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import GOLDEN, ROOT, cli, execute, inspect_schema

from generator import files, lint, migrate, runtime
from generator.errors import SpecErrors
from generator.load import Change, load_changes
from generator.ops.purge import IrreversibleStep, PurgeColumnStep, PurgeTableStep
from generator.render import generate

CASE = GOLDEN / "render" / "purge"


def _load(tmp_path: Path, *specs: str) -> list[Change]:
    changes = tmp_path / "changes"
    changes.mkdir(parents=True)
    for name in ("0000_base.yaml", "0001_drop.yaml"):
        shutil.copy(CASE / "changes" / name, changes)
    for i, text in enumerate(specs, 2):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{i:04d}_{name}.yaml").write_text(text)
    return load_changes(changes, display_base=tmp_path, lint=False)


def _spec(name: str, *lines: str) -> str:
    return f"id: {name}\ndescription: d\noperations:\n" + "".join(f"  - {x}\n" for x in lines)


def test_purge_destroys_the_archives_of_the_change(tmp_path: Path) -> None:
    change = _load(tmp_path, _spec("purge", "{op: purge, change: drop}"))[-1]
    column, table = change.steps
    assert isinstance(column, PurgeColumnStep) and column.column.name == "_dropped_0001_price"
    assert isinstance(table, PurgeTableStep) and table.table.name == "_dropped_0001_events"
    assert change.after.archives == ()
    assert change.after.get("items").aside == ()
    assert "pk_events" not in change.after.relation_names()  # its names are free again
    # the downgrade is only its refusals, and their state is the one before the purge
    assert all(isinstance(s, IrreversibleStep) for s in change.inverse_steps)
    schema = change.after
    for step in change.inverse_steps:
        schema = step.apply(schema)
    assert schema == change.before
    found = {(f.rule.id, f.blocks) for f in lint.lint_change(change)}
    assert found == {("SG112", True)}


def test_refusals(tmp_path: Path) -> None:
    spec = _spec("purge", "{op: purge, change: nope}", "{op: purge, change: base}")
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, spec)
    text = str(info.value)
    assert "operations[0].change: no earlier change has id 'nope' (ids: base, drop)" in text
    assert "operations[1].change: change 'base' has no archives left" in text
    # purged twice: nothing left the second time
    twice = _spec("purge", "{op: purge, change: drop}", "{op: purge, change: drop}")
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path / "twice", twice)
    assert "operations[1].change: change 'drop' has no archives left" in str(info.value)


def test_a_column_kept_inside_a_later_archive_is_named(tmp_path: Path) -> None:
    later = _spec("later", "{op: drop_table, table: items}")
    spec = _spec("purge", "{op: purge, change: drop}")
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, later, spec)
    assert (
        "column _dropped_0001_price of change drop is in _dropped_0002_items, archived by a "
        "later change: purge that change"
    ) in str(info.value)


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


@pytest.mark.db
def test_a_downgrade_past_a_purge_refuses_and_changes_nothing(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    execute(
        db_url,
        "INSERT INTO items (id, price, note) VALUES (1, 2.5, 'a'), (2, 0, NULL)",
        "INSERT INTO events (id, item_id) VALUES (1, 1), (2, 1), (3, 2)",
    )
    migrate.upgrade(out_dir, url, "0001")
    assert _query(db_url, 'SELECT count(*) FROM "_dropped_0001_events"') == [(3,)]
    migrate.upgrade(out_dir, url, "head")
    tables = set(inspect_schema(db_url))
    assert tables == {"items"}
    assert [c[0] for c in inspect_schema(db_url, by_name=False)["items"]["columns"]] == [
        "id",
        "note",
        "extra",
    ]
    execute(db_url, "INSERT INTO items (id, note, extra) VALUES (3, 'c', 7)")
    head = inspect_schema(db_url)
    with pytest.raises(runtime.Irreversible) as info:
        migrate.downgrade(out_dir, url, "0001")
    message = str(info.value)
    assert message.startswith("change 0002_purge cannot be downgraded: it destroyed table")
    assert "kept by change drop" in message
    assert "nothing of it was kept" in (runtime.rolled_back_of(info.value) or "")
    assert inspect_schema(db_url) == head  # nothing ran: "extra" is still there
    assert _query(db_url, "SELECT id, note, extra FROM items ORDER BY id") == [
        (1, "a", None),
        (2, None, None),
        (3, "c", 7),
    ]
    assert _query(db_url, "SELECT version_num FROM alembic_version") == [("0002",)]


@pytest.mark.db
def test_the_cli_names_the_change_and_exits_non_zero(db_url: str, tmp_path: Path) -> None:
    """`schemagen downgrade` past a purge: one clear error naming the change, exit code 4, no
    traceback, the database at the purge's revision."""
    project = tmp_path / "project"
    shutil.copytree(CASE / "changes", project / "changes")
    out_dir = project / "generated_migrations"
    files.write(generate(load_changes(project / "changes", display_base=project)), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    assert cli("upgrade", "--url", db_url, root=project).exit_code == 0
    result = cli("downgrade", "--to", "0001", "--url", db_url, root=project)
    assert result.exit_code == 4, result.output
    assert "change 0002_purge cannot be downgraded: it destroyed table _dropped_0001_events" in (
        result.output
    )
    assert "nothing of it was kept" in result.output
    assert "Traceback" not in result.output
    assert _query(db_url, "SELECT version_num FROM alembic_version") == [("0002",)]
