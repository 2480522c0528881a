"""rename_table: the state renames the table wherever it is named (and, with
rename_dependents, its convention-named keys and its indexes), the reverse restores the state
exactly, the refusals name the field, and the golden change run on both databases keeps
every row and declares the storage and the lock the server shows."""

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
from generator.ops.rename_table import RenameTableStep
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
    indexes:
      - {name: ix_parents_code, columns: [code, price]}
      - {name: by_price, columns: [price]}
  - op: create_table
    name: children
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: parent_id, type: integer, references: {table: parents}}
  - {op: alter_column_type, table: parents, column: price, from: "decimal(10,2)", to: float,
     range_check: true}
"""


def _load(tmp_path: Path, *specs: str) -> list[Change]:
    changes = tmp_path / "changes"
    changes.mkdir()
    for i, text in enumerate((BASE, *specs)):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{i:04d}_{name}.yaml").write_text(text)
    return load_changes(changes, display_base=tmp_path, lint=False)


def _spec(line: str) -> str:
    return f"id: ren\ndescription: r\noperations:\n  - {line}\n"


@pytest.mark.parametrize("dependents", [False, True])
def test_the_state_renames_everywhere_and_back(tmp_path: Path, dependents: bool) -> None:
    flag = ", rename_dependents: true" if dependents else ""
    change = _load(tmp_path, _spec(f"{{op: rename_table, table: parents, to: folks{flag}}}"))[-1]
    (step,) = change.steps
    assert isinstance(step, RenameTableStep)
    assert change.after.table("parents") is None
    folks = change.after.get("folks")
    children = change.after.get("children")
    assert [t.name for t in change.after.tables] == ["folks", "children"]  # order kept
    assert children.foreign_keys[0].ref_table == "folks"
    assert {i.table for i in folks.indexes} | {u.table for u in folks.uniques} == {"folks"}
    assert {c.table for c in folks.checks} == {"folks"}
    names = sorted(
        [folks.pk_name, *(u.name for u in folks.uniques), *(c.name for c in folks.checks)]
        + [i.name for i in folks.indexes]
        + [children.foreign_keys[0].name]
    )
    if dependents:
        assert names == [
            "by_price",  # the table's name is not a part of it: kept
            "ck_folks_price_range",
            "fk_children_parent_id_folks",
            "ix_folks_code",
            "pk_folks",
            "uq_folks_code",
        ]
    else:
        assert names == [
            "by_price",
            "ck_parents_price_range",
            "fk_children_parent_id_parents",
            "ix_parents_code",
            "pk_parents",
            "uq_parents_code",
        ]
    assert step.reverse().apply(change.after) == change.before
    assert step.reverse().reverse() == step
    assert not step.risk("postgresql").rewrites
    # SQLite keeps constraint names only in the DDL: renaming them rebuilds, and says so
    assert step.risk("sqlite").rewrites == dependents


def test_refusals(tmp_path: Path) -> None:
    spec = (
        "id: ren\ndescription: r\noperations:\n"
        "  - {op: rename_table, table: nope, to: x}\n"
        "  - {op: rename_table, table: parents, to: children}\n"
        "  - {op: rename_table, table: parents, to: parents}\n"
        "  - {op: rename_table, table: parents, to: by_price}\n"
    )
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, spec)
    text = str(info.value)
    assert "0001_ren.yaml:4:" in text and "operations[0].table: table 'nope' does not exist" in text
    assert "operations[1].to: name 'children' is already used" in text
    assert "operations[2].to: table 'parents' is already named so" in text
    assert "operations[3].to: name 'by_price' is already used" in text


def test_a_dependent_name_taken_is_refused(tmp_path: Path) -> None:
    taken = (
        "id: taken\ndescription: t\noperations:\n"
        "  - op: create_table\n    name: other\n    columns: [{name: id, type: integer}]\n"
        "    indexes: [{name: ix_folks_code, columns: [id]}]\n"
    )
    spec = _spec("{op: rename_table, table: parents, to: folks, rename_dependents: true}")
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, taken, spec)
    assert "operations[0].rename_dependents: name 'ix_folks_code' is already used" in str(
        info.value
    )


def _storage(url: str, tables: tuple[str, ...]) -> dict[str, object]:
    """Where each table's rows live (by its name then): a new value means a rewrite/rebuild."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = (
                "SELECT relfilenode FROM pg_class WHERE relname = :t"
                if engine.dialect.name == "postgresql"
                else "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = :t"
            )
            return {t: conn.execute(sa.text(query), {"t": t}).scalar_one() for t in tables}
    finally:
        engine.dispose()


def _rows(url: str, accounts: str, orders: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text(
                        f"SELECT a.id, a.email, a.closed_at IS NULL, o.id, o.total "
                        f"FROM {accounts} AS a JOIN {orders} AS o ON o.account_id = a.id "
                        "ORDER BY o.id"
                    )
                )
            ]
    finally:
        engine.dispose()


@pytest.mark.db
def test_the_golden_change_keeps_every_row_and_declares_its_storage(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """Up, down, up with rows in both tables: every row comes back; a table's storage
    changes exactly when its plan unit's Risk says it rewrites (PostgreSQL: never)."""
    case = GOLDEN / "render" / "rename_table"
    changes = load_changes(case / "changes", display_base=case)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    execute(
        db_url,
        "INSERT INTO accounts (id, email) VALUES (1, 'a@x'), (2, 'b@x')",
        "INSERT INTO orders (id, account_id, total) VALUES (1, 1, 9.5), (2, 2, 1.25), (3, 1, 0)",
    )
    rows = _rows(db_url, "accounts", "orders")
    assert len(rows) == 3
    before = _storage(db_url, ("accounts", "orders"))
    migrate.upgrade(out_dir, url, "head")
    assert _rows(db_url, "customers", "purchases") == rows
    after = _storage(db_url, ("customers", "purchases"))
    (step, *_) = changes[1].steps
    declared = step.risk(dialect).rewrites
    assert (before["accounts"] != after["customers"]) == declared, (before, after)
    if dialect == "postgresql":
        assert before["orders"] == after["purchases"]  # catalogue only
    migrate.downgrade(out_dir, url, "0000")
    assert _rows(db_url, "accounts", "orders") == rows
    if dialect == "postgresql":
        assert _storage(db_url, ("accounts", "orders")) == before
    migrate.upgrade(out_dir, url, "head")
    assert _rows(db_url, "customers", "purchases") == rows
    assert rows[0][4] == Decimal("9.50") or rows[0][4] == 9.5
    # the foreign key followed the rename: a child of a missing customer is refused
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO purchases (id, account_id, total) VALUES (9, 99, 1)")


@pytest.mark.db
def test_postgresql_takes_the_declared_lock_briefly(pg_database: str) -> None:
    """pg_locks, read from a second connection while the rename's transaction is open, shows
    the lock its Risk declares, and neither table changes storage."""
    url = pg_url_for(pg_database)
    engine = sa.create_engine(url)
    declared = RenameTableStep("t", "u").risk("postgresql")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id integer CONSTRAINT pk_t PRIMARY KEY, a text)")
            conn.exec_driver_sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
        before = _storage(url, ("t",))["t"]
        altering, watcher = engine.connect(), engine.connect()
        try:
            tx = altering.begin()
            pid = altering.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            oid = altering.exec_driver_sql("SELECT 't'::regclass::oid").scalar()
            altering.exec_driver_sql("ALTER TABLE t RENAME TO u")
            altering.exec_driver_sql("ALTER TABLE u RENAME CONSTRAINT pk_t TO pk_u")
            modes = set(
                watcher.exec_driver_sql(
                    f"SELECT mode FROM pg_locks WHERE pid = {pid} AND relation = {oid} AND granted"
                ).scalars()
            )
            tx.commit()
        finally:
            altering.close()
            watcher.close()
    finally:
        engine.dispose()
    assert "AccessExclusiveLock" in modes and declared.lock.startswith("ACCESS EXCLUSIVE")
    assert (_storage(url, ("u",))["u"] != before) == declared.rewrites
