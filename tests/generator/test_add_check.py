"""add_check / drop_check: expressions of the grammar only (refused at their YAML line
otherwise), rendered per dialect; the rows failing a check listed before any DDL; its Risk
proven on both databases (storage before and after, pg_locks from a second connection)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from ops_support import declared_mode, pg_locks_during, render_case, rows, storage
from support import GOLDEN, execute

from generator import expr, migrate
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.ops.add_check import AddCheckStep
from generator.ops.drop_check import DropCheckStep
from generator.plan import plan
from generator.runtime import CheckFailed
from generator.state import CheckConstraint

CASE = GOLDEN / "render" / "add_check"


def _project(tmp_path: Path, *specs: str) -> Path:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text((CASE / "changes" / "0000_base.yaml").read_text())
    for i, text in enumerate(specs, 1):
        (changes / f"{i:04d}_c{i}.yaml").write_text(text)
    return changes


def test_the_state_holds_the_tree_and_the_reverse_drops_it() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    first = changes[1]
    checks = {c.name: c for c in first.after.get("orders").checks}
    assert (
        checks["ck_orders_code"].text == "code IS NULL OR lower(code) = code AND length(code) >= 2"
    )
    assert all(isinstance(s, AddCheckStep) and s.online for s in first.steps)
    schema = first.after
    for step in first.inverse_steps:
        assert isinstance(step, DropCheckStep)
        schema = step.apply(schema)
    assert schema == first.before
    (drop,) = changes[2].steps
    assert isinstance(drop, DropCheckStep) and isinstance(drop.reverse(), AddCheckStep)
    assert drop.reverse().apply(changes[2].after) == changes[2].before
    assert [u.kind for u in plan(first.steps, first.before, "postgresql")] == [
        "validated_checks",
        "validated_checks",
    ]


def test_a_range_check_renders_as_before_and_follows_a_rename() -> None:
    check = CheckConstraint.range("ck", "t", "price", 10**8)
    assert check.sql == '"price" > -100000000 AND "price" < 100000000'
    big = CheckConstraint.range("ck", "t", "v", 10**30)  # beyond a bigint literal
    assert big.sql_for("postgresql") == f'"v" > -{10**30} AND "v" < {10**30}'
    renamed = check.renamed("price", "cost")
    assert renamed.sql == '"cost" > -100000000 AND "cost" < 100000000'
    assert renamed.column_types == (("cost", "number"),)
    assert renamed.renamed("cost", "price") == check
    assert expr.columns(renamed.expression) == {"cost"}


def test_refusals_name_the_line_and_what_was_expected(tmp_path: Path) -> None:
    changes = _project(
        tmp_path,
        "id: c1\ndescription: c\noperations:\n"
        '  - {op: add_check, table: orders, name: ck_a, expression: "status = (SELECT 1)"}\n'
        '  - {op: add_check, table: orders, name: ck_b, expression: "nope > 1"}\n'
        '  - {op: add_check, table: orders, name: ck_c, expression: "status + 1"}\n'
        '  - {op: add_check, table: orders, name: ck_d, expression: "status > now"}\n'
        '  - {op: add_check, table: orders, name: orders, expression: "id > 0"}\n'
        "  - {op: drop_check, table: orders, name: ck_none}\n",
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    text = str(info.value)
    assert "0001_c1.yaml:4:" in text and "operations[0].expression:" in text
    assert "at offset 10 of 'status = (SELECT 1)'" in text
    assert "operations[1].expression: unknown column 'nope'" in text
    assert "operations[2].expression: expected number as the left operand of '+'" in text
    assert "operations[3].expression: cannot compare a text with a timestamp" in text
    assert "operations[4].name: name 'orders' is already used" in text
    assert "operations[5].name: table 'orders' has no check 'ck_none'" in text


def test_drop_check_compares_the_expression(tmp_path: Path) -> None:
    changes = _project(
        tmp_path,
        "id: c1\ndescription: c\noperations:\n"
        '  - {op: add_check, table: orders, name: ck_a, expression: "id > 0"}\n',
        "id: c2\ndescription: c\noperations:\n"
        '  - {op: drop_check, table: orders, name: ck_a, expression: "id >= 0"}\n',
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    assert "operations[0].expression: check ck_a is `id > 0`, not `id >= 0`" in str(info.value)


@pytest.mark.db
def test_failing_rows_refused_before_any_ddl_then_up_down_up_with_rows(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    changes, out = render_case("add_check", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO orders (id, status, code) VALUES (1, 'new', 'ab'), (2, 'paid', NULL)",
        "INSERT INTO orders (id, status, code) VALUES (3, 'lost', 'Xy')",
        "INSERT INTO order_items (order_id, line, quantity, price) VALUES (1, 1, 2, 9.5)",
        "INSERT INTO order_items (order_id, line, quantity, price) VALUES (2, 1, 0, NULL)",
    )
    before = {t: storage(db_url, t) for t in ("orders", "order_items")}
    with pytest.raises(CheckFailed) as refused:
        migrate.upgrade(out, url, "0001")
    message = str(refused.value)
    assert "orders.ck_orders_status.failing_rows" in message and "lost" in message
    assert "orders.ck_orders_code.failing_rows" in message and "Xy" in message
    assert "order_items.ck_order_items_amount.failing_rows" in message
    assert {t: storage(db_url, t) for t in before} == before  # no DDL ran
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("0000",)]
    execute(
        db_url,
        "UPDATE orders SET status = 'sent', code = 'xy' WHERE id = 3",
        "UPDATE order_items SET quantity = 1 WHERE order_id = 2",
    )
    data = {
        "orders": rows(db_url, "SELECT id, status, code FROM orders ORDER BY id"),
        "order_items": rows(db_url, "SELECT * FROM order_items ORDER BY order_id, line"),
    }
    migrate.upgrade(out, url, "0001")
    units = plan(changes[1].steps, changes[1].before, dialect)
    for table in before:
        declared = any(u.risk(dialect).rewrites for u in units if u.steps[0].table_name == table)
        assert (storage(db_url, table) != before[table]) == declared, table
    for table, seen in data.items():
        order = "id" if table == "orders" else "order_id, line"
        assert rows(db_url, f"SELECT * FROM {table} ORDER BY {order}") == seen
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO orders (id, status) VALUES (9, 'bogus')")
    migrate.upgrade(out, url, "head")
    execute(db_url, "INSERT INTO orders (id, status, code) VALUES (9, 'new', 'UP')")  # dropped
    with pytest.raises(CheckFailed, match=r"ck_orders_code\.failing_rows"):
        migrate.downgrade(out, url, "0001")  # row 9 fails the check the downgrade adds back
    execute(db_url, "DELETE FROM orders WHERE id = 9")
    migrate.downgrade(out, url, "0000")
    for table, seen in data.items():
        order = "id" if table == "orders" else "order_id, line"
        assert rows(db_url, f"SELECT * FROM {table} ORDER BY {order}") == seen
    execute(db_url, "INSERT INTO orders (id, status) VALUES (9, 'bogus')")  # no check now
    execute(db_url, "DELETE FROM orders WHERE id = 9")
    migrate.upgrade(out, url, "head")
    assert len(rows(db_url, "SELECT * FROM orders")) == 3


@pytest.mark.db
def test_postgresql_locks_the_declared_way(pg_database: str) -> None:
    """NOT VALID: ACCESS EXCLUSIVE, briefly (a catalogue change); VALIDATE: SHARE UPDATE
    EXCLUSIVE only (reads and writes go on while it scans); the storage stays."""
    url = pg_url_for(pg_database)
    step = load_changes(CASE / "changes", display_base=CASE)[1].steps[0]
    declared = step.risk("postgresql")
    execute(
        url,
        "CREATE TABLE t (id integer PRIMARY KEY, status varchar(16))",
        "INSERT INTO t SELECT g, 'new' FROM generate_series(1, 1000) g",
    )
    before = storage(url, "t")
    added = pg_locks_during(
        url, "t", [], ["ALTER TABLE t ADD CONSTRAINT ck CHECK (status IN ('new')) NOT VALID"]
    )
    validating = pg_locks_during(url, "t", [], ["ALTER TABLE t VALIDATE CONSTRAINT ck"])
    assert declared_mode(declared.lock.split(" (")[0]) in added
    assert "ShareUpdateExclusiveLock" in validating and "AccessExclusiveLock" not in validating
    assert "SHARE UPDATE EXCLUSIVE" in declared.lock and declared.scans
    assert storage(url, "t") == before and not declared.rewrites
    assert rows(url, "SELECT convalidated FROM pg_constraint WHERE conname = 'ck'") == [(True,)]
