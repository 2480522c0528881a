"""drop_column: with keep_data (the default) the column is renamed aside with its values and
the derived downgrade brings every value back; keep_data: false drops it (lint SG111); the
refusals name the field; the golden change run on both databases with rows in the table
keeps every value, and declares the storage and the lock the server shows."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from support import GOLDEN, ROOT, execute

from generator import files, lint, migrate, runtime
from generator.coltypes import parse_type
from generator.errors import SpecErrors
from generator.load import Change, load_changes
from generator.ops.drop_column import DropColumnStep, SetColumnAsideStep
from generator.ops.drop_index import DropIndexStep
from generator.plan import plan
from generator.render import generate
from generator.state import Column

BASE = """\
id: base
description: base
operations:
  - op: create_table
    name: parents
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: code, type: varchar(8), unique: true}
      - {name: price, type: "decimal(10,2)", nullable: false, default: 0}
      - {name: note, type: text, nullable: true}
      - {name: tail, type: integer, nullable: true}
    indexes:
      - {name: ix_parents_price, columns: [price, code]}
      - {name: ix_parents_noted, columns: [id], where: note IS NOT NULL}
  - op: create_table
    name: children
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: parent_id, type: integer, references: {table: parents}}
"""


def _load(tmp_path: Path, *specs: str, lint_them: bool = False) -> list[Change]:
    changes = tmp_path / "changes"
    changes.mkdir(parents=True)
    for i, text in enumerate((BASE, *specs)):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{i:04d}_{name}.yaml").write_text(text)
    return load_changes(changes, display_base=tmp_path, lint=lint_them)


def _spec(*lines: str) -> str:
    return "id: drop\ndescription: d\noperations:\n" + "".join(f"  - {x}\n" for x in lines)


def test_keep_data_sets_the_column_aside_and_back(tmp_path: Path) -> None:
    change = _load(tmp_path, _spec("{op: drop_column, table: parents, column: price}"))[-1]
    drop_index, aside = change.steps
    assert isinstance(drop_index, DropIndexStep) and drop_index.index.name == "ix_parents_price"
    assert isinstance(aside, SetColumnAsideStep) and aside.aside == "_dropped_0001_price"
    parents = change.after.get("parents")
    assert parents.column("price") is None
    assert [c.name for c in parents.physical()] == [
        "id",
        "code",
        "_dropped_0001_price",  # where it was: renamed in place
        "note",
        "tail",
    ]
    kept = parents.physical()[2]
    assert kept.nullable and kept.default is None  # writers no longer burdened
    assert [i.name for i in parents.indexes] == ["ix_parents_noted"]
    schema = change.after
    for step in change.inverse_steps:
        schema = step.apply(schema)
    assert schema == change.before
    assert lint.lint_change(change) == []  # nothing is lost: no finding


def test_keep_data_false_is_the_schema_only_drop_and_lint_says_so(tmp_path: Path) -> None:
    spec = _spec("{op: drop_column, table: parents, column: note, keep_data: false}")
    change = _load(tmp_path, spec)[-1]
    drop_index, drop = change.steps
    assert isinstance(drop_index, DropIndexStep) and drop_index.index.name == "ix_parents_noted"
    assert isinstance(drop, DropColumnStep)
    assert [c.name for c in change.after.get("parents").physical()] == [
        "id",
        "code",
        "price",
        "tail",
    ]
    findings = {(f.rule.id, f.blocks) for f in lint.lint_change(change)}
    assert ("SG111", True) in findings  # an error until acknowledged
    assert ("SG107", False) in findings


def test_a_later_drop_keeps_the_columns_set_aside_in_place(tmp_path: Path) -> None:
    spec = _spec(
        "{op: drop_column, table: parents, column: price}",
        "{op: drop_column, table: parents, column: code, keep_data: false}",
    )
    with pytest.raises(SpecErrors):  # code is a unique key: refused
        _load(tmp_path, spec)
    spec = _spec(
        "{op: drop_column, table: parents, column: note}",
        "{op: drop_column, table: parents, column: price, keep_data: false}",
        "{op: drop_column, table: parents, column: tail}",
    )
    change = _load(tmp_path / "again", spec)[-1]
    parents = change.after.get("parents")
    assert [c.name for c in parents.physical()] == [
        "id",
        "code",
        "_dropped_0001_note",
        "_dropped_0001_tail",
    ]
    schema = change.after
    for step in change.inverse_steps:
        schema = step.apply(schema)
    # the kept columns come back where they were; price (keep_data: false) is added back
    # at the end, as the database adds a column
    restored = schema.get("parents")
    assert [c.name for c in restored.physical()] == ["id", "code", "note", "tail", "price"]
    assert set(restored.columns) == set(change.before.get("parents").columns)
    assert restored.aside == ()


def test_refusals(tmp_path: Path) -> None:
    spec = _spec(
        "{op: drop_column, table: parents, column: nope}",
        "{op: drop_column, table: parents, column: id}",
        "{op: drop_column, table: parents, column: code}",
        "{op: drop_column, table: children, column: parent_id}",
    )
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, spec)
    text = str(info.value)
    assert "0001_drop.yaml:4:" in text
    assert "operations[0].column: column 'nope' does not exist" in text
    assert "operations[1].column: column parents.id is in the primary key" in text
    assert "operations[1].column: column parents.id is in a foreign key of children" in text
    assert "operations[2].column: column parents.code is in unique key uq_parents_code" in text
    assert "operations[3].column: column children.parent_id is in its foreign key" in text


def _storage(url: str, table: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = (
                "SELECT relfilenode FROM pg_class WHERE relname = :t"
                if engine.dialect.name == "postgresql"
                else "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = :t"
            )
            return conn.execute(sa.text(query), {"t": table}).scalar_one()
    finally:
        engine.dispose()


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


ROWS = [
    (1, "a", Decimal("9.50"), "first", True, 7),
    (2, "b", Decimal("0.00"), None, False, None),
    (3, "c", Decimal("-1.25"), "", True, 0),
]
SELECT = "SELECT id, name, price, note, active, legacy FROM items ORDER BY id"


@pytest.mark.db
def test_every_kept_value_comes_back(db_url: str, dialect: str, tmp_path: Path) -> None:
    """The golden change with rows: up (the values stay aside, writers insert without the
    dropped columns), down (every value back; the new row gets the default), up again. The
    table is rewritten exactly when a plan unit on it declares so."""
    case = GOLDEN / "render" / "drop_column"
    changes = load_changes(case / "changes", display_base=case)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    true, false = ("1", "0") if dialect == "sqlite" else ("true", "false")
    execute(
        db_url,
        "INSERT INTO items (id, name, price, note, active, legacy) VALUES "
        f"(1, 'a', 9.5, 'first', {true}, 7), (2, 'b', 0, NULL, {false}, NULL), "
        f"(3, 'c', -1.25, '', {true}, 0)",
        "INSERT INTO orders (id, item_id) VALUES (1, 1), (2, 3)",
    )

    def rows() -> list[tuple[object, ...]]:
        out = _query(db_url, SELECT)
        return [
            (*r[:2], Decimal(str(r[2])).quantize(Decimal("0.01")), r[3], bool(r[4]), r[5])
            for r in out
        ]

    assert rows() == ROWS
    before = _storage(db_url, "items")
    migrate.upgrade(out_dir, url, "head")
    rewritten = any(
        u.risk(dialect).rewrites for u in plan(changes[1].steps, changes[1].before, dialect)
    )
    assert rewritten == (dialect == "sqlite")
    if dialect == "postgresql":
        assert _storage(db_url, "items") == before  # catalogue only
    else:
        # SQLite cannot drop NOT NULL or a default in place: only a rebuild leaves this
        # (its root page may be reused by the second rebuild, so it proves nothing here)
        info = _query(
            db_url, "SELECT name, \"notnull\", dflt_value FROM pragma_table_info('items')"
        )
        assert ("_dropped_0001_price", 0, None) in info
    aside = _query(
        db_url, 'SELECT id, "_dropped_0001_price", "_dropped_0001_note" FROM items ORDER BY id'
    )
    assert [(i, Decimal(str(p)).quantize(Decimal("0.01")), n) for i, p, n in aside] == [
        (r[0], r[2], r[3]) for r in ROWS
    ]
    # a writer that no longer knows the dropped columns is not burdened
    execute(db_url, f"INSERT INTO items (id, name, active) VALUES (4, 'd', {true})")
    migrate.downgrade(out_dir, url, "0000")
    # every kept value back; legacy (keep_data: false) comes back empty; the new row
    # gets price's default
    expected = [(*r[:5], None) for r in ROWS] + [(4, "d", Decimal("0.00"), None, True, None)]
    assert rows() == expected
    indexes = _query(
        db_url,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'items' ORDER BY 1"
        if dialect == "postgresql"
        else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'items' "
        "AND sql IS NOT NULL ORDER BY 1",
    )
    assert ("ix_items_noted",) in indexes and ("ix_items_price",) in indexes
    migrate.upgrade(out_dir, url, "head")
    migrate.downgrade(out_dir, url, "0000")
    assert rows() == expected


@pytest.mark.db
def test_the_downgrade_refuses_a_not_null_column_without_a_value(
    pg_database: str, tmp_path: Path
) -> None:
    """NOT NULL without a default, a row written since the drop: the downgrade fails and
    rolls back; nothing is lost (the column stays aside with its values)."""
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "0000_base.yaml").write_text(
        "id: base\ndescription: b\noperations:\n  - op: create_table\n    name: t\n"
        "    columns:\n      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: must, type: integer, nullable: false}\n"
    )
    (tmp_path / "changes" / "0001_drop.yaml").write_text(
        "id: drop\ndescription: d\noperations:\n  - {op: drop_column, table: t, column: must}\n"
    )
    changes = load_changes(tmp_path / "changes", display_base=tmp_path)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    db_url = pg_url_for(pg_database)
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "head")
    execute(
        db_url,
        "INSERT INTO t (id, _dropped_0001_must) VALUES (1, 5)",
        "INSERT INTO t (id) VALUES (2)",
    )
    with pytest.raises(runtime.CheckFailed) as info:
        migrate.downgrade(out_dir, url, "0000")
    # refused before any DDL, the row named by its key
    assert info.value.before_ddl
    assert "check t._dropped_0001_must.fits_not_null: 1 failing row(s)" in str(info.value)
    assert str(info.value).splitlines()[-1].split() == ["2", "|", "NULL"]
    assert _query(db_url, "SELECT id, _dropped_0001_must FROM t ORDER BY id") == [(1, 5), (2, None)]


@pytest.mark.db
def test_postgresql_takes_the_declared_lock_briefly(pg_database: str) -> None:
    """pg_locks from a second connection while the set-aside statements' transaction is open:
    the lock the Risk declares; the storage stays (no rewrite)."""
    url = pg_url_for(pg_database)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE t (id integer PRIMARY KEY, a integer NOT NULL DEFAULT 3)"
            )
            conn.exec_driver_sql("INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g")
        before = _storage(url, "t")
        altering, watcher = engine.connect(), engine.connect()
        try:
            tx = altering.begin()
            pid = altering.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            altering.exec_driver_sql("ALTER TABLE t RENAME COLUMN a TO _dropped_0001_a")
            altering.exec_driver_sql(
                "ALTER TABLE t ALTER COLUMN _dropped_0001_a DROP NOT NULL, "
                "ALTER COLUMN _dropped_0001_a DROP DEFAULT"
            )
            modes = set(
                watcher.exec_driver_sql(
                    "SELECT l.mode FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
                    f"WHERE l.pid = {pid} AND c.relname = 't' AND l.granted"
                ).scalars()
            )
            tx.commit()
        finally:
            altering.close()
            watcher.close()
    finally:
        engine.dispose()
    step = SetColumnAsideStep("t", Column("a", parse_type("integer"), False, default=3), "x")
    declared = step.risk("postgresql")
    assert "AccessExclusiveLock" in modes and declared.lock.startswith("ACCESS EXCLUSIVE")
    assert (_storage(url, "t") != before) == declared.rewrites
    assert _query(url, "SELECT count(*), sum(_dropped_0001_a) FROM t") == [(1000, 500500)]
