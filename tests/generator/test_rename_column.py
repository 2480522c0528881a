"""rename_column: the state renames the column everywhere it is named, the reverse restores
the state exactly, and the refusals name the field."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from support import GOLDEN, ROOT, execute

from generator import files, migrate
from generator.errors import SpecErrors
from generator.load import Change, load_changes
from generator.ops.rename_column import RenameColumnStep
from generator.plan import plan
from generator.render import generate

BASE = """\
id: base
description: base
operations:
  - op: create_table
    name: parents
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: code, type: varchar(8), unique: true}
      - {name: price, type: "decimal(10,2)", nullable: true}
      - {name: gone_at, type: timestamptz, nullable: true}
    indexes:
      - {name: ix_parents_gone, columns: [gone_at, code], where: gone_at IS NOT NULL}
  - op: create_table
    name: children
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: parent_id, type: integer, references: {table: parents}}
"""
CHECK = """\
id: to_float
description: a range check on price
operations:
  - {op: alter_column_type, table: parents, column: price, from: "decimal(10,2)", to: float,
     range_check: true}
"""


def _load(tmp_path: Path, *specs: str) -> list[Change]:
    changes = tmp_path / "changes"
    changes.mkdir()
    for i, text in enumerate((BASE, CHECK, *specs)):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{i:04d}_{name}.yaml").write_text(text)
    return load_changes(changes, display_base=tmp_path, lint=False)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("parents", "id"),
        ("parents", "code"),
        ("parents", "gone_at"),
        ("parents", "price"),
        ("children", "parent_id"),
    ],
)
def test_the_state_renames_everywhere_and_back(tmp_path: Path, table: str, column: str) -> None:
    spec = (
        "id: ren\ndescription: r\noperations:\n"
        f"  - {{op: rename_column, table: {table}, column: {column}, to: renamed}}\n"
    )
    change = _load(tmp_path, spec)[-1]
    (step,) = change.steps
    assert isinstance(step, RenameColumnStep)
    renamed = change.after.get(table)
    # the old name survives only inside constraint and index names, which stay
    names = [i.name for i in renamed.indexes] + [u.name for u in renamed.uniques]
    names += [f.name for f in renamed.foreign_keys] + [c.name for c in renamed.checks]
    stripped = repr(renamed)
    for name in names:
        stripped = stripped.replace(repr(name), "")
    assert f"'{column}'" not in stripped
    assert f"{column} IS NOT NULL" not in stripped
    assert "'renamed'" in stripped
    for t in change.after.tables:
        assert not [f for f in t.foreign_keys if (f.ref_table, f.ref_column) == (table, column)]
    assert step.reverse().apply(change.after) == change.before
    assert [u.kind for u in plan(change.steps, change.before, "sqlite")] == ["rename_column"]
    assert not step.risk("postgresql").rewrites and not step.risk("sqlite").rewrites


def test_refusals(tmp_path: Path) -> None:
    spec = (
        "id: ren\ndescription: r\noperations:\n"
        "  - {op: rename_column, table: parents, column: nope, to: x}\n"
        "  - {op: rename_column, table: parents, column: code, to: price}\n"
        "  - {op: rename_column, table: parents, column: code, to: code}\n"
    )
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, spec)
    text = str(info.value)
    assert (
        "0002_ren.yaml:4:" in text and "operations[0].column: column 'nope' does not exist" in text
    )
    assert "operations[1].to: column 'price' already exists in 'parents'" in text
    assert "operations[2].to: column parents.code is already named so" in text


def _storage(url: str, table: str) -> object:
    """Where the table's rows live: a new value means the table was rewritten or rebuilt."""
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


@pytest.mark.db
def test_the_declared_risk_is_what_the_database_does(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """The golden case's rename change, run for real: a table is rewritten (PostgreSQL) or
    rebuilt (SQLite) exactly when a unit of the plan on it declares so (the renames never)."""
    case = GOLDEN / "render" / "rename_column"
    changes = load_changes(case / "changes", display_base=case)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    execute(
        db_url,
        "INSERT INTO accounts (id, email) VALUES (1, 'a@x')",
        "INSERT INTO orders (id, account_id, total) VALUES (1, 1, 9.5)",
    )
    before = {t: _storage(db_url, t) for t in ("accounts", "orders")}
    migrate.upgrade(out_dir, url, "head")
    after = {t: _storage(db_url, t) for t in ("accounts", "orders")}
    change = changes[1]
    units = plan(change.steps, change.before, dialect)
    for table in ("accounts", "orders"):
        declared = any(u.risk(dialect).rewrites for u in units if u.steps[0].table_name == table)
        assert (before[table] != after[table]) == declared, (table, before, after)
    assert before["accounts"] == after["accounts"]  # four renames, no rebuild
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT o.customer_no, a.email_address, o.total FROM orders AS o "
                    "JOIN accounts AS a ON a.account_no = o.customer_no"
                )
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == (1, "a@x", Decimal("9.50"))


@pytest.mark.db
def test_postgresql_takes_the_declared_lock_briefly(pg_database: str) -> None:
    """pg_locks, read from a second connection while the rename's transaction is open, shows
    the lock its Risk declares, and the table keeps its storage."""
    url = pg_url_for(pg_database)
    engine = sa.create_engine(url)
    declared = RenameColumnStep("t", "a", "b").risk("postgresql")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id integer PRIMARY KEY, a text)")
            conn.exec_driver_sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
        before = _storage(url, "t")
        altering, watcher = engine.connect(), engine.connect()
        try:
            tx = altering.begin()
            pid = altering.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            altering.exec_driver_sql("ALTER TABLE t RENAME COLUMN a TO b")
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
    assert "AccessExclusiveLock" in modes and declared.lock.startswith("ACCESS EXCLUSIVE")
    assert (_storage(url, "t") != before) == declared.rewrites


TYPED = {
    "0000_base.yaml": (
        "id: base\ndescription: b\noperations:\n"
        "  - op: create_table\n    name: t\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: u, type: uuid, nullable: true}\n"
        "      - {name: j, type: json, nullable: true}\n"
    ),
    "0001_rn.yaml": (
        "id: rn\ndescription: r\nacknowledge: {SG110: test}\noperations:\n"
        "  - {op: rename_column, table: t, column: u, to: u2}\n"
        "  - {op: rename_column, table: t, column: j, to: j2}\n"
    ),
}
UUID = "00000000-0000-0000-0000-000000000001"


@pytest.mark.db
def test_a_uuid_or_json_column_keeps_its_type_check_under_its_new_name(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """SQLite holds a uuid or json column to its form with a CHECK named after the column: the
    rename renames the CHECK too (a rebuild), the checks after it pass, a malformed value is
    still refused, and the downgrade renames both back."""
    (tmp_path / "changes").mkdir()
    for name, text in TYPED.items():
        (tmp_path / "changes" / name).write_text(text)
    changes = load_changes(tmp_path / "changes", display_base=tmp_path)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    execute(db_url, f"INSERT INTO t (id, u, j) VALUES (1, '{UUID}', '{{\"a\": 1}}')")
    migrate.upgrade(out_dir, url, "head")  # its post-checks expect u2_is_uuid, j2_is_json
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert str(conn.execute(sa.text("SELECT u2 FROM t")).scalar_one()) == UUID
            if dialect == "sqlite":
                ddl = conn.execute(
                    sa.text("SELECT sql FROM sqlite_master WHERE name = 't'")
                ).scalar_one()
                assert "u2_is_uuid" in ddl and "j2_is_json" in ddl and "u_is_uuid" not in ddl
    finally:
        engine.dispose()
    with pytest.raises(sa.exc.DBAPIError):
        execute(db_url, "INSERT INTO t (id, u2) VALUES (2, 'not a uuid')")
    with pytest.raises(sa.exc.DBAPIError):
        execute(db_url, "INSERT INTO t (id, j2) VALUES (3, '{not json')")
    migrate.downgrade(out_dir, url, "0000")
    with pytest.raises(sa.exc.DBAPIError):
        execute(db_url, "INSERT INTO t (id, u) VALUES (2, 'not a uuid')")
    migrate.upgrade(out_dir, url, "head")
