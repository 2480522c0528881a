"""drop_table: with keep_data (the default) the table is renamed aside with its rows, keys and
indexes and the derived downgrade renames it back; a table another live table references is
refused; keep_data: false drops it (lint SG111); the golden change run on both databases with
rows keeps every row, and declares the storage and the lock the server shows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from support import GOLDEN, ROOT, execute, inspect_schema

from generator import files, lint, migrate
from generator.errors import SpecErrors
from generator.load import Change, load_changes
from generator.ops.drop_table import ArchiveTableStep, DropTableStep
from generator.render import generate

CASE = GOLDEN / "render" / "drop_table"


def _load(tmp_path: Path, *specs: str) -> list[Change]:
    changes = tmp_path / "changes"
    changes.mkdir(parents=True)
    shutil.copy(CASE / "changes" / "0000_base.yaml", changes)
    for i, text in enumerate(specs, 1):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{i:04d}_{name}.yaml").write_text(text)
    return load_changes(changes, display_base=tmp_path, lint=False)


def _spec(*lines: str) -> str:
    return "id: drop\ndescription: d\noperations:\n" + "".join(f"  - {x}\n" for x in lines)


def test_the_state_sets_the_table_aside_and_back(tmp_path: Path) -> None:
    change = _load(
        tmp_path,
        _spec("{op: drop_table, table: orders}", "{op: drop_table, table: customers}"),
    )[-1]
    assert all(isinstance(s, ArchiveTableStep) for s in change.steps)
    assert [t.name for t in change.after.tables] == ["audit"]
    orders = change.after.archive("_dropped_0001_orders")
    customers = change.after.archive("_dropped_0001_customers")
    assert orders is not None and customers is not None
    # keys and indexes go with it, under their names; keys to it follow it
    assert [i.name for i in orders.indexes] == ["ix_orders_customer", "ix_orders_open"]
    assert orders.pk_name == "pk_orders"
    assert orders.foreign_keys[0].ref_table == "_dropped_0001_customers"
    assert customers.foreign_keys[0].ref_table == "_dropped_0001_customers"  # itself
    assert "pk_orders" in change.after.relation_names()  # still taken
    schema = change.after
    for step in change.inverse_steps:
        schema = step.apply(schema)
    assert schema == change.before
    assert lint.lint_change(change) == []  # nothing is lost


def test_a_referenced_table_is_refused_and_a_taken_name_named(tmp_path: Path) -> None:
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, _spec("{op: drop_table, table: customers}"))
    assert (
        "operations[0].table: foreign key fk_orders_customer_id_customers of "
        "orders.customer_id references customers: drop it (or orders) earlier in this change"
    ) in str(info.value)
    again = _spec(
        "{op: drop_table, table: audit}",
        "{op: create_table, name: audit, columns: [{name: id, type: bigint, primary_key: true}]}",
    )
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path / "again", again)
    assert "operations[1].name: derived primary key name 'pk_audit' is already used" in str(
        info.value
    )


def test_keep_data_false_drops_and_lint_says_so(tmp_path: Path) -> None:
    change = _load(tmp_path, _spec("{op: drop_table, table: audit, keep_data: false}"))[-1]
    (step,) = change.steps
    assert isinstance(step, DropTableStep)
    assert change.after.archives == ()
    found = {(f.rule.id, f.blocks) for f in lint.lint_change(change)}
    assert ("SG111", True) in found and ("SG107", False) in found


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def _storage(url: str, table: str) -> object:
    query = (
        f"SELECT relfilenode FROM pg_class WHERE relname = '{table}'"
        if url.startswith("postgresql")
        else f"SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
    )
    return _query(url, query)[0][0]


ORDERS = "SELECT id, customer_id, CAST(total AS text) FROM {} ORDER BY id"
CUSTOMERS = "SELECT id, email, referrer_id FROM {} ORDER BY id"


@pytest.mark.db
def test_every_row_index_and_key_comes_back(db_url: str, dialect: str, tmp_path: Path) -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    execute(
        db_url,
        "INSERT INTO customers (id, email, referrer_id) VALUES (1, 'a@x', NULL), (2, 'b@x', 1)",
        "INSERT INTO orders (id, customer_id, total) VALUES (1, 1, 9.5), (2, 2, 0), (3, 1, 1.25)",
        "INSERT INTO audit (id, message) VALUES (1, 'gone')",
    )
    base = inspect_schema(db_url)
    orders, customers = (
        _query(db_url, ORDERS.format("orders")),
        _query(db_url, CUSTOMERS.format("customers")),
    )
    assert len(orders) == 3 and len(customers) == 2
    storage = {t: _storage(db_url, t) for t in ("orders", "customers")}
    migrate.upgrade(out_dir, url, "head")
    assert _query(db_url, ORDERS.format("_dropped_0001_orders")) == orders
    assert _query(db_url, CUSTOMERS.format("_dropped_0001_customers")) == customers
    # catalogue only: each table keeps its storage under its archive name
    for t in ("orders", "customers"):
        assert _storage(db_url, f"_dropped_0001_{t}") == storage[t]
    assert not ArchiveTableStep(changes[0].after.get("orders"), "x", 0).risk(dialect).rewrites
    migrate.downgrade(out_dir, url, "0000")
    assert inspect_schema(db_url) == base  # every index and key as it was
    assert _query(db_url, ORDERS.format("orders")) == orders
    assert _query(db_url, CUSTOMERS.format("customers")) == customers
    assert _query(db_url, "SELECT count(*) FROM audit") == [(0,)]  # keep_data: false
    assert {t: _storage(db_url, t) for t in ("orders", "customers")} == storage
    # the keys work again: an order of a missing customer is refused
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO orders (id, customer_id, total) VALUES (9, 99, 1)")
    migrate.upgrade(out_dir, url, "head")
    migrate.downgrade(out_dir, url, "0000")
    assert _query(db_url, ORDERS.format("orders")) == orders


@pytest.mark.db
def test_postgresql_takes_the_declared_lock_briefly(pg_database: str) -> None:
    url = pg_url_for(pg_database)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id integer PRIMARY KEY, a text)")
            conn.exec_driver_sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g")
        oid = _query(url, "SELECT 't'::regclass::oid")[0][0]
        before = _storage(url, "t")
        altering, watcher = engine.connect(), engine.connect()
        try:
            tx = altering.begin()
            pid = altering.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            altering.exec_driver_sql("ALTER TABLE t RENAME TO _dropped_0001_t")
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
    changes = load_changes(CASE / "changes", display_base=CASE)
    declared = ArchiveTableStep(changes[0].after.get("audit"), "x", 0).risk("postgresql")
    assert "AccessExclusiveLock" in modes and declared.lock.startswith("ACCESS EXCLUSIVE")
    assert (_storage(url, "_dropped_0001_t") != before) == declared.rewrites
    assert _query(url, "SELECT count(*) FROM _dropped_0001_t") == [(1000,)]
