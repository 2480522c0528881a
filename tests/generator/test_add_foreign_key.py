"""add_foreign_key / drop_foreign_key: orphans listed before any DDL; NOT VALID then VALIDATE
apart on PostgreSQL, a foreign-key-safe rebuild on SQLite; rows kept through up, down, up;
the Risk proven (storage, pg_locks on both tables from a second connection)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from ops_support import pg_locks_during, render_case, rows, storage
from support import GOLDEN, execute

from generator import migrate
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.ops.add_foreign_key import AddForeignKeyStep
from generator.ops.drop_foreign_key import DropForeignKeyStep
from generator.plan import plan
from generator.runtime import CheckFailed

CASE = GOLDEN / "render" / "add_foreign_key"
TABLES = ("categories", "products", "order_items")


def test_the_state_and_its_reverse() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    first = changes[1]
    assert [
        (f.name, f.ref_table, f.ref_column) for f in first.after.get("products").foreign_keys
    ] == [("fk_products_category", "categories", "code")]
    schema = first.after
    for step in first.inverse_steps:
        assert isinstance(step, DropForeignKeyStep)
        schema = step.apply(schema)
    assert schema == first.before
    (drop,) = changes[2].steps
    assert isinstance(drop.reverse(), AddForeignKeyStep)
    assert [u.kind for u in plan(first.steps, first.before, "postgresql")] == [
        "validated_foreign_keys"
    ]


def test_refusals(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text((CASE / "changes" / "0000_base.yaml").read_text())
    (changes / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: add_foreign_key, table: products, name: fk_a, columns: [category_code], "
        "references: {table: categories, columns: [id]}}\n"
        "  - {op: add_foreign_key, table: order_items, name: fk_b, columns: [order_id, line], "
        "references: {table: products, columns: [id, category_code]}}\n"
        "  - {op: add_foreign_key, table: order_items, name: fk_c, columns: [product_id], "
        "references: {table: nope, columns: [id]}}\n"
        "  - {op: add_foreign_key, table: order_items, name: fk_d, columns: [line], "
        "references: {table: products, columns: [category_code]}}\n"
        "  - {op: add_foreign_key, table: order_items, name: fk_e, columns: [line], "
        "references: {table: products, columns: [id]}, on_delete: set_null}\n"
        "  - {op: drop_foreign_key, table: products, name: fk_none}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text
    assert "operations[0].columns[0]: column type varchar(8) does not match" in text
    assert "operations[1].references.columns: products.(id, category_code) is neither" in text
    assert "operations[2].references.table: table 'nope' does not exist" in text
    assert "operations[3].references.columns[0]: products.category_code is neither" in text
    assert "operations[4].on_delete: ON DELETE set_null needs a nullable column" in text
    assert "operations[5].name: table 'products' has no foreign key 'fk_none'" in text


@pytest.mark.db
def test_orphans_refused_then_up_down_up_with_rows(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    changes, out = render_case("add_foreign_key", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO categories (id, code, parent_id) VALUES (1, 'a', NULL), (2, 'b', 1)",
        "INSERT INTO categories (id, code, parent_id) VALUES (3, 'c', 7)",
        "INSERT INTO products (id, category_code) VALUES (1, 'a'), (2, NULL), (3, 'zz')",
        "INSERT INTO order_items (order_id, line, product_id) VALUES (1, 1, 1), (1, 2, 3)",
    )
    before = {t: storage(db_url, t) for t in TABLES}
    with pytest.raises(CheckFailed) as refused:
        migrate.upgrade(out, url, "head")
    message = str(refused.value)
    assert "categories.fk_categories_parent.orphans" in message
    assert "products.fk_products_category.orphans" in message and "zz" in message
    assert "order_items.fk_order_items_product.orphans" not in message
    assert {t: storage(db_url, t) for t in TABLES} == before
    execute(
        db_url,
        "UPDATE categories SET parent_id = 2 WHERE id = 3",
        "UPDATE products SET category_code = 'c' WHERE id = 3",
    )
    data = {t: rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}
    migrate.upgrade(out, url, "0001")
    units = plan(changes[1].steps, changes[1].before, dialect)
    for table in TABLES:
        declared = any(
            u.risk(dialect).rewrites for u in units if any(s.table_name == table for s in u.steps)
        )
        assert (storage(db_url, table) != before[table]) == declared, table
    for t, seen in data.items():
        assert rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") == seen
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO products (id, category_code) VALUES (9, 'nope')")
    migrate.upgrade(out, url, "head")  # the key to the code dropped
    execute(db_url, "INSERT INTO products (id, category_code) VALUES (9, 'nope')")
    with pytest.raises(CheckFailed, match=r"products\.fk_products_category\.orphans"):
        migrate.downgrade(out, url, "0001")
    execute(db_url, "DELETE FROM products WHERE id = 9")
    migrate.downgrade(out, url, "0000")
    for t, seen in data.items():
        assert rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") == seen
    migrate.upgrade(out, url, "head")
    for t, seen in data.items():
        assert rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") == seen


@pytest.mark.db
def test_postgresql_locks_the_declared_way(pg_database: str) -> None:
    url = pg_url_for(pg_database)
    declared = load_changes(CASE / "changes", display_base=CASE)[1].steps[2].risk("postgresql")
    execute(
        url,
        "CREATE TABLE p (id integer PRIMARY KEY)",
        "CREATE TABLE c (id integer PRIMARY KEY, p_id integer)",
        "INSERT INTO p SELECT g FROM generate_series(1, 1000) g",
        "INSERT INTO c SELECT g, g FROM generate_series(1, 1000) g",
    )
    before = {t: storage(url, t) for t in ("p", "c")}
    # The statements the template runs, in one transaction (a leftover dropped, then added).
    add = [
        "ALTER TABLE c DROP CONSTRAINT IF EXISTS fk_c_p",
        "ALTER TABLE c ADD CONSTRAINT fk_c_p FOREIGN KEY(p_id) REFERENCES p (id) "
        "ON DELETE CASCADE NOT VALID",
    ]
    on_child = pg_locks_during(url, "c", [], add)
    execute(url, "ALTER TABLE c DROP CONSTRAINT fk_c_p")
    on_parent = pg_locks_during(url, "p", [], add)
    validating_child = pg_locks_during(url, "c", [], ["ALTER TABLE c VALIDATE CONSTRAINT fk_c_p"])
    assert "AccessExclusiveLock" in on_child and declared.lock.startswith("ACCESS EXCLUSIVE")
    assert "ShareRowExclusiveLock" in on_parent and "AccessExclusiveLock" not in on_parent
    assert "SHARE ROW EXCLUSIVE on the referenced" in declared.lock
    assert "ShareUpdateExclusiveLock" in validating_child
    assert "AccessExclusiveLock" not in validating_child
    assert {t: storage(url, t) for t in ("p", "c")} == before and not declared.rewrites
