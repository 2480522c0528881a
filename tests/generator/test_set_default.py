"""set_default: the state sets and restores defaults, the refusals name the field, and the
golden change run for real keeps every row, takes the lock its Risk declares and rewrites
(or rebuilds) exactly when its Risk says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from ops_support import declared_mode, pg_locks_during, render_case, rows, storage
from support import GOLDEN, execute

from generator import migrate
from generator.coltypes import parse_type
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.ops.set_default import SetDefaultStep
from generator.plan import plan
from generator.state import Column

CASE = GOLDEN / "render" / "set_default"


def test_the_state_sets_and_the_reverse_restores() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    change = changes[1]
    after = change.after.get("products")
    assert [(c.name, c.default) for c in after.columns] == [
        ("id", None),
        ("status", "pending"),
        ("price", 9.99),
        ("note", None),
        ("created_at", "now"),
    ]
    schema = change.after
    for step in change.inverse_steps:
        schema = step.apply(schema)
    assert schema == change.before
    assert all(isinstance(s, SetDefaultStep) for s in change.steps)
    assert [u.kind for u in plan(change.steps, change.before, "sqlite")] == ["recreate_table"]


def test_refusals(tmp_path: Path) -> None:
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "0000_base.yaml").write_text(
        (CASE / "changes" / "0000_base.yaml").read_text()
    )
    (tmp_path / "changes" / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: set_default, table: products, column: price, default: abc}\n"
        '  - {op: set_default, table: products, column: note, default: "it\'s new"}\n'
        "  - {op: set_default, table: products, column: status, default: null}\n"
        "  - {op: set_default, table: products, column: id, default: 1}\n"
        "  - {op: set_default, table: products, column: nope, default: 1}\n"
        "  - {op: set_default, table: products, column: created_at, default: yesterday}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(tmp_path / "changes", display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text
    assert "operations[0].default: a decimal(10,2) default must be a number" in text
    assert 'operations[1].default: products.note already has default "it\'s new"' in text
    assert "operations[2].default: products.status already has no default" in text
    assert "operations[3].column: products.id is an identity" in text
    assert "operations[4].column: column 'nope' does not exist" in text
    assert "operations[5].default: a timestamptz default must be `now`" in text


@pytest.mark.db
def test_run_for_real_keeps_rows_and_the_declared_storage(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    changes, out = render_case("set_default", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO products (id, status, note) VALUES (1, 'sold', NULL)",
        "INSERT INTO products (id, status) VALUES (2, 'new')",
        "INSERT INTO reviews (id, product_id) VALUES (1, 2)",
    )
    seen = "SELECT id, status, price, note FROM products ORDER BY id"
    first = rows(db_url, seen)
    assert [r[3] for r in first] == [None, "it's new"]
    before = storage(db_url, "products")
    migrate.upgrade(out, url, "head")
    assert (storage(db_url, "products") != before) == any(
        u.risk(dialect).rewrites for u in plan(changes[1].steps, changes[1].before, dialect)
    )
    assert rows(db_url, seen) == first  # existing rows keep their values
    execute(db_url, "INSERT INTO products (id) VALUES (3)")
    new = rows(
        db_url, "SELECT status, price, note, created_at IS NOT NULL FROM products WHERE id = 3"
    )
    assert [tuple(str(v) for v in r) for r in new] == [("pending", "9.99", "None", str(new[0][3]))]
    assert new[0][3] in (True, 1)
    execute(db_url, "DELETE FROM products WHERE id = 3")
    migrate.downgrade(out, url, "0000")
    assert rows(db_url, seen) == first
    execute(db_url, "INSERT INTO products (id, status) VALUES (3, 'x')")
    old = rows(db_url, "SELECT price, note, created_at FROM products WHERE id = 3")
    assert [(float(p), n, c) for p, n, c in old] == [(0.0, "it's new", None)]
    assert rows(db_url, "SELECT id, product_id FROM reviews") == [(1, 2)]


@pytest.mark.db
def test_postgresql_takes_the_declared_lock_and_keeps_the_storage(pg_database: str) -> None:
    url = pg_url_for(pg_database)
    """The statement the golden migration runs (SET DEFAULT), held open in a transaction."""
    step = SetDefaultStep("t", Column("a", parse_type("integer"), True), 7)
    declared = step.risk("postgresql")
    execute(
        url,
        "CREATE TABLE t (id integer PRIMARY KEY, a integer)",
        "INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g",
    )
    before = storage(url, "t")
    modes = pg_locks_during(url, "t", [], ['ALTER TABLE "t" ALTER COLUMN "a" SET DEFAULT 7'])
    assert declared_mode(declared.lock) in modes
    assert "AccessExclusiveLock" in modes and not declared.rewrites and not declared.scans
    assert storage(url, "t") == before
