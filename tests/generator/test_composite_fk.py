"""Composite foreign keys: ``add_foreign_key`` / ``drop_foreign_key`` and ``create_table``'s
``foreign_keys`` with several columns referencing a composite primary key; orphans (MATCH
SIMPLE: every key column non-NULL, no parent row) listed before any DDL and the change refused
with nothing changed; PostgreSQL NOT VALID + VALIDATE, SQLite's foreign-key safe rebuild; the
catalogue checks compare every column of the key (a single-column key where a composite one is
expected fails verify); swap_fk_action, rename_column and rename_table carry the key along."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from ops_support import render_case, rows, storage
from support import GOLDEN, execute

from generator import migrate
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.ops.add_foreign_key import AddForeignKeyStep
from generator.ops.drop_foreign_key import DropForeignKeyStep
from generator.plan import plan
from generator.runtime import CheckFailed

CASE = GOLDEN / "render" / "composite_fk"
TABLES = ("orders", "order_items", "shipments", "returns")


def _failing(out: Path, url: str) -> list[tuple[str, object]]:
    _, _, results, _ = migrate.verify(out, sa.make_url(url))
    assert any(r.check.name == "returns.foreign_keys" for r in results)
    return [(r.check.name, r.rows) for r in results if not r.passed]


def test_the_state_carries_the_key_through_swap_renames_and_back() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    shipments = changes[0].after.get("shipments")
    (fk,) = shipments.foreign_keys
    assert fk.columns == ("order_id", "line") and fk.ref_columns == ("order_id", "line")
    assert fk.ref_table == "order_items" and fk.on_delete == "cascade"
    first = changes[1]
    (added, _swap) = first.steps
    assert isinstance(added, AddForeignKeyStep) and added.fk.composite
    assert first.after.get("shipments").foreign_keys[0].on_delete == "restrict"
    assert [u.kind for u in plan(first.steps[:1], first.before, "postgresql")] == [
        "validated_foreign_keys"
    ]
    renamed = changes[2].after
    (returns_fk,) = renamed.get("returns").foreign_keys
    assert returns_fk.columns == ("ord_id", "line")
    assert returns_fk.ref_table == "lines" and returns_fk.ref_columns == ("order_id", "line_no")
    (shipments_fk,) = renamed.get("shipments").foreign_keys
    assert shipments_fk.columns == ("order_id", "line")
    assert shipments_fk.ref_columns == ("order_id", "line_no")
    for change in changes[1:]:
        schema = change.after
        for step in change.inverse_steps:
            schema = step.apply(schema)
        assert schema == change.before, change.name
    (drop,) = changes[3].steps
    assert isinstance(drop, DropForeignKeyStep)
    assert drop.reverse().fk == returns_fk
    lines = [s.describe() for s in first.steps]
    assert lines[0] == (
        "add foreign key `fk_returns_item`: `returns.(order_id, line)` → "
        "`order_items.(order_id, line)` ON DELETE set_null"
    )


def test_refusals_at_their_line(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text((CASE / "changes" / "0000_base.yaml").read_text())
    (changes / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: add_foreign_key, table: returns, name: fk_a, columns: [order_id, line], "
        "references: {table: order_items, columns: [order_id]}}\n"
        "  - {op: add_foreign_key, table: returns, name: fk_b, columns: [line, order_id], "
        "references: {table: order_items, columns: [line, order_id]}}\n"
        "  - {op: add_foreign_key, table: returns, name: fk_c, columns: [order_id, reason], "
        "references: {table: order_items, columns: [order_id, line]}}\n"
        "  - {op: add_foreign_key, table: returns, name: fk_d, columns: [order_id, order_id], "
        "references: {table: order_items, columns: [order_id, line]}}\n"
        "  - {op: add_foreign_key, table: shipments, name: fk_e, columns: [order_id, line], "
        "references: {table: order_items, columns: [order_id, line]}, on_delete: set_default}\n"
        "  - {op: add_foreign_key, table: shipments, name: fk_f, columns: [order_id, line], "
        "references: {table: order_items, columns: [order_id, line]}}\n"
        "  - {op: widen_key, table: order_items, column: line, from: integer, to: bigint}\n"
        "  - {op: alter_column_type, table: shipments, column: line, from: integer, "
        "to: bigint}\n"
        "  - {op: drop_column, table: order_items, column: line}\n"
        "  - op: create_table\n    name: t\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: a, type: integer}\n"
        "    foreign_keys:\n"
        "      - {name: fk_t, columns: [a, id], references: {table: order_items, "
        "columns: [order_id, nope]}}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text and "operations[0].references.columns: 2 column(s)" in text
    assert (
        "operations[1].references.columns: order_items.(line, order_id) is neither the primary "
        "key nor a unique constraint"
    ) in text
    assert "operations[2].columns[1]: column type text does not match the referenced" in text
    assert "operations[3].columns[1]: column 'order_id' is listed twice" in text
    assert "operations[4].on_delete: ON DELETE set_default needs a default on each" in text
    assert "operations[5].columns: shipments.(order_id, line) already has a foreign key" in text
    assert "operations[6].column: order_items.line is in composite foreign key" in text
    assert "operations[7].column: cannot change the type of a column in a foreign key" in text
    assert "operations[8].column:" in text and "a foreign key of shipments" in text
    assert "operations[9].foreign_keys[0].references.columns[1]: column 'nope'" in text


@pytest.mark.db
def test_an_orphan_refuses_the_composite_key_then_up_down_up(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """A return naming a line that does not exist refuses the key before any DDL, the row
    named; a return with a NULL in its key is no orphan (MATCH SIMPLE). With the orphan fixed
    the key holds on both dialects (a composite orphan refused by the database), swaps,
    renames, and every row comes back through down and up."""
    _, out = render_case("composite_fk", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO orders (id, note) VALUES (1, 'a'), (2, NULL)",
        "INSERT INTO order_items (order_id, line, sku) VALUES (1, 1, 'x'), (1, 2, 'y'), "
        "(2, 1, 'z')",
        "INSERT INTO shipments (id, order_id, line) VALUES (1, 1, 1), (2, 2, 1)",
        # 10: a real line; 11: no line 2 on order 2, an orphan; 12 and 13: a NULL in the key
        "INSERT INTO returns (id, order_id, line, reason) VALUES (10, 1, 2, 'ok'), "
        "(11, 2, 2, 'orphan'), (12, 2, NULL, 'half'), (13, NULL, 7, 'other half')",
    )
    before = {t: storage(db_url, t) for t in TABLES}
    data = {t: rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}
    with pytest.raises(CheckFailed) as refused:
        migrate.upgrade(out, url, "head")
    message = str(refused.value)
    assert "returns.fk_returns_item.orphans" in message and "orphan" in message
    assert "half" not in message and "'ok'" not in message
    assert {t: storage(db_url, t) for t in TABLES} == before
    assert {t: rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES} == data
    assert _failing(out, db_url) == []  # still the baseline, exactly
    execute(db_url, "UPDATE returns SET line = 1 WHERE id = 11")
    data = {t: rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}
    migrate.upgrade(out, url, "0001")
    assert _failing(out, db_url) == []
    for t, seen in data.items():
        assert rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") == seen
    # the database holds the composite key: a pair without a line is refused, a half NULL not
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO returns (id, order_id, line) VALUES (20, 1, 9)")
    execute(db_url, "INSERT INTO returns (id, order_id, line) VALUES (21, 1, NULL)")
    execute(db_url, "DELETE FROM returns WHERE id = 21")
    # shipments' key is RESTRICT now: a shipped line cannot be deleted
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "DELETE FROM order_items WHERE order_id = 2 AND line = 1")
    # verify compares every column of the key: a key on order_id alone is not the same key
    if dialect == "postgresql":
        execute(
            db_url,
            "ALTER TABLE returns DROP CONSTRAINT fk_returns_item",
            "ALTER TABLE returns ADD CONSTRAINT fk_returns_item FOREIGN KEY (order_id) "
            "REFERENCES orders (id) ON DELETE SET NULL",
        )
        failing = _failing(out, db_url)
        assert [name for name, _ in failing] == ["returns.foreign_keys"], failing
        execute(
            db_url,
            "ALTER TABLE returns DROP CONSTRAINT fk_returns_item",
            "ALTER TABLE returns ADD CONSTRAINT fk_returns_item FOREIGN KEY (order_id, line) "
            "REFERENCES order_items (order_id, line) ON DELETE SET NULL",
        )
        assert _failing(out, db_url) == []
    migrate.upgrade(out, url, "0002")
    assert _failing(out, db_url) == []
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO returns (id, ord_id, line) VALUES (20, 1, 9)")
    migrate.upgrade(out, url, "head")  # the returns' key dropped
    execute(db_url, "INSERT INTO returns (id, ord_id, line, reason) VALUES (20, 1, 9, 'gone')")
    with pytest.raises(CheckFailed, match=r"returns\.fk_returns_item\.orphans"):
        migrate.downgrade(out, url, "0002")
    execute(db_url, "DELETE FROM returns WHERE id = 20")
    migrate.downgrade(out, url, "0000")
    assert _failing(out, db_url) == []
    for t, seen in data.items():
        assert rows(db_url, f"SELECT * FROM {t} ORDER BY 1, 2") == seen
    migrate.upgrade(out, url, "head")
    assert _failing(out, db_url) == []
    assert rows(db_url, "SELECT * FROM returns ORDER BY 1") == data["returns"]
