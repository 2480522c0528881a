"""set_nullable: NOT NULL refused while NULL rows exist (listed before any DDL); with a fill,
the filled rows' keys kept aside and set back to NULL exactly by the downgrade; its Risk
proven on both databases (storage, pg_locks from a second connection, and PostgreSQL's own
word that SET NOT NULL was proven by the validated check instead of a scan)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from ops_support import pg_locks_during, render_case, render_project, rows, storage
from support import GOLDEN, execute

from generator import migrate
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.ops.set_nullable import SetNullableStep
from generator.plan import plan
from generator.runtime import CheckFailed

CASE = GOLDEN / "render" / "set_nullable"
ASIDE = "filled_0001_customers_country"


def test_the_state_and_its_reverse() -> None:
    change = load_changes(CASE / "changes", display_base=CASE)[1]
    after = change.after.get("customers")
    assert [(c.name, c.nullable) for c in after.columns] == [
        ("id", False),
        ("email", False),
        ("country", False),
        ("score", True),
    ]
    aside = change.after.get(ASIDE)
    assert aside.primary_key == ("id",)
    schema = change.after
    for step in change.inverse_steps:
        assert isinstance(step, SetNullableStep)
        schema = step.apply(schema)
    assert schema == change.before
    assert [u.kind for u in plan(change.steps, change.before, "postgresql")] == [
        "validated_not_null",
        "set_nullable",
    ]


def test_refusals(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text((CASE / "changes" / "0000_base.yaml").read_text())
    (changes / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: set_nullable, table: customers, column: score, nullable: false}\n"
        "  - {op: set_nullable, table: customers, column: email, nullable: false, fill: 3}\n"
        "  - {op: set_nullable, table: customers, column: id, nullable: true}\n"
        "  - {op: set_nullable, table: customers, column: email, nullable: true, fill: x}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text
    assert "operations[0].nullable: customers.score is already NOT NULL" in text
    assert "operations[1].fill: a varchar(64) default must be a string" in text
    assert "operations[2].nullable: a primary key column cannot be nullable" in text
    assert "operations[3].fill: fill is for nullable: false" in text


@pytest.mark.db
def test_nulls_refused_then_filled_and_restored_exactly(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    changes, out = render_case("set_nullable", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO customers (id, email, country) VALUES (1, NULL, NULL)",
        "INSERT INTO customers (id, email, country) VALUES (2, 'b@x', 'ZZ')",
        "INSERT INTO customers (id, email, country) VALUES (3, 'c@x', NULL)",
        "INSERT INTO customers (id, email, country) VALUES (4, 'd@x', 'DE')",
        "INSERT INTO orders (id, customer_id) VALUES (1, 3)",
    )
    before = storage(db_url, "customers")
    with pytest.raises(CheckFailed) as refused:
        migrate.upgrade(out, url, "head")
    assert "customers.email.nulls" in str(refused.value)
    assert storage(db_url, "customers") == before  # no DDL ran
    execute(db_url, "UPDATE customers SET email = 'a@x' WHERE id = 1")
    seen = "SELECT id, email, country, score FROM customers ORDER BY id"
    original = rows(db_url, seen)
    migrate.upgrade(out, url, "head")
    assert rows(db_url, seen) == [
        (1, "a@x", "ZZ", 0),
        (2, "b@x", "ZZ", 0),
        (3, "c@x", "ZZ", 0),
        (4, "d@x", "DE", 0),
    ]
    assert rows(db_url, f"SELECT id FROM {ASIDE} ORDER BY id") == [(1,), (3,)]
    units = plan(changes[1].steps, changes[1].before, dialect)
    assert (storage(db_url, "customers") != before) == any(u.risk(dialect).rewrites for u in units)
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO customers (id, email, country) VALUES (9, 'x', NULL)")
    execute(db_url, "INSERT INTO customers (id, email, score) VALUES (9, 'x', NULL)")  # nullable
    execute(db_url, "DELETE FROM customers WHERE id = 9")
    migrate.downgrade(out, url, "0000")
    assert rows(db_url, seen) == original  # row 2's own 'ZZ' stays, rows 1 and 3 NULL again
    assert rows(db_url, "SELECT id, customer_id FROM orders") == [(1, 3)]
    migrate.upgrade(out, url, "head")
    assert rows(db_url, f"SELECT id FROM {ASIDE} ORDER BY id") == [(1,), (3,)]


@pytest.mark.db
def test_postgresql_never_scans_under_access_exclusive(pg_database: str) -> None:
    url = pg_url_for(pg_database)
    step = load_changes(CASE / "changes", display_base=CASE)[1].steps[0]
    declared = step.risk("postgresql")
    execute(
        url,
        "CREATE TABLE t (id integer PRIMARY KEY, a text)",
        "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 2000) g",
    )
    before = storage(url, "t")
    added = pg_locks_during(
        url, "t", [], ["ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID"]
    )
    validating = pg_locks_during(url, "t", [], ["ALTER TABLE t VALIDATE CONSTRAINT t_a_nn"])
    assert "AccessExclusiveLock" in added and declared.lock.startswith("ACCESS EXCLUSIVE")
    assert "ShareUpdateExclusiveLock" in validating and "AccessExclusiveLock" not in validating
    assert "SHARE UPDATE EXCLUSIVE" in declared.lock
    # PostgreSQL says, at DEBUG1, when a valid CHECK proves the column has no NULL (no scan).
    notices: list[str] = []
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            raw: Any = conn.connection.driver_connection
            raw.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            conn.exec_driver_sql("SET client_min_messages = debug1")
            conn.exec_driver_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL")
            conn.exec_driver_sql("ALTER TABLE t DROP CONSTRAINT t_a_nn")
    finally:
        engine.dispose()
    assert any("sufficient to prove" in n for n in notices), notices
    assert storage(url, "t") == before and not declared.rewrites


@pytest.mark.db
def test_a_fill_that_would_repeat_a_unique_value_is_refused_before_any_ddl(
    db_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    (root / "changes").mkdir(parents=True)
    (root / "changes" / "0000_base.yaml").write_text(
        "id: base\ndescription: b\noperations:\n"
        "  - op: create_table\n    name: t\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: code, type: varchar(8), nullable: true, unique: true}\n"
    )
    (root / "changes" / "0001_fill.yaml").write_text(
        "id: fill\ndescription: f\noperations:\n"
        "  - {op: set_nullable, table: t, column: code, nullable: false, fill: z}\n"
    )
    _, out = render_project(root, tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(db_url, "INSERT INTO t (id, code) VALUES (1, NULL), (2, 'a'), (3, 'z')")
    with pytest.raises(CheckFailed, match=r"t\.code\.fill_repeats"):
        migrate.upgrade(out, url, "head")
    execute(db_url, "DELETE FROM t WHERE id = 3")  # one NULL, no 'z': the fill is unique
    migrate.upgrade(out, url, "head")
    assert rows(db_url, "SELECT id, code FROM t ORDER BY id") == [(1, "z"), (2, "a")]
    migrate.downgrade(out, url, "0000")
    assert rows(db_url, "SELECT id, code FROM t ORDER BY id") == [(1, None), (2, "a")]
