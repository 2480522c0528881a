"""The constraint operations that commit part of themselves on PostgreSQL (a CHECK or foreign
key added NOT VALID then validated apart, a NOT NULL through its transient check, a unique
index built CONCURRENTLY then attached) tolerate, when resumed, exactly the catalogue rows a
kill part-way leaves: derived from their steps (``Step.interrupted``) and the schema states."""

from __future__ import annotations

from support import GOLDEN

from generator import resume
from generator.load import Change, load_changes


def _change(case: str, number: int) -> Change:
    root = GOLDEN / "render" / case
    return load_changes(root / "changes", display_base=root)[number]


def test_add_check_tolerates_each_check_not_yet_validated() -> None:
    tolerated = resume.tolerance(_change("add_check", 1), "upgrade", "postgresql")
    rows = set(tolerated["orders.check_constraints"])
    for name in ("ck_orders_status", "ck_orders_code"):
        assert ("found, not expected", name, "NO") in rows
        assert ("found, not expected", name, "YES") in rows
    assert len(rows) == 4
    assert set(tolerated) == {"orders.check_constraints", "order_items.check_constraints"}
    assert resume.tolerance(_change("add_check", 1), "upgrade", "sqlite") == {}


def test_set_nullable_tolerates_its_transient_check_and_the_table_of_filled_keys() -> None:
    tolerated = resume.tolerance(_change("set_nullable", 1), "upgrade", "postgresql")
    checks = {r[1:] for r in tolerated["customers.check_constraints"]}
    assert checks == {
        (name, v)
        # score's: the derived downgrade makes it NOT NULL again the same way
        for name in (
            "customers_email_notnull",
            "customers_country_notnull",
            "customers_score_notnull",
        )
        for v in ("NO", "YES")
    }
    assert ("found, not expected", "filled_0001_customers_country") in tolerated["tables"]


def test_add_unique_tolerates_the_index_built_but_not_attached() -> None:
    tolerated = resume.tolerance(_change("add_unique", 1), "upgrade", "postgresql")
    rows = set(tolerated["reviews.indexes"])
    index = ("uq_reviews_user_product", "user_id,product", "YES")
    assert ("found, not expected", *index, "YES", "") in rows
    assert ("found, not expected", *index, "NO", "") in rows


def test_add_foreign_key_tolerates_each_key_not_yet_validated() -> None:
    tolerated = resume.tolerance(_change("add_foreign_key", 1), "upgrade", "postgresql")
    rows = {r[:2] + r[-1:] for r in tolerated["products.foreign_keys"]}
    assert ("found, not expected", "fk_products_category", "NO") in rows
    assert ("found, not expected", "fk_products_category", "YES") in rows


def test_a_drop_tolerates_what_its_half_done_downgrade_leaves() -> None:
    assert resume.tolerance(_change("set_default", 1), "upgrade", "postgresql") == {}
    # drop_check is one transaction; its downgrade (the check added back) is not
    tolerated = resume.tolerance(_change("add_check", 2), "upgrade", "postgresql")
    assert {r[1:] for r in tolerated["orders.check_constraints"]} == {
        ("ck_orders_code", "YES"),
        ("ck_orders_code", "NO"),
    }


def test_drop_column_tolerates_its_downgrade_killed_in_the_not_null_validation() -> None:
    """drop_column's downgrade restores NOT NULL through a transient check validated after a
    commit: killed there, the column is back with its default but still nullable, the check
    there (not yet valid, or valid). Both directions tolerate exactly that."""
    change = _change("drop_column", 1)
    for direction in ("upgrade", "downgrade"):
        tolerated = resume.tolerance(change, direction, "postgresql")
        assert {r[1:] for r in tolerated["items.check_constraints"]} == {
            ("items_price_notnull", "NO"),
            ("items_price_notnull", "YES"),
        }
        assert ("found, not expected", "price", "numeric(10,2)", "YES", "0") in tolerated[
            "items.columns"
        ]
    assert resume.tolerance(change, "downgrade", "sqlite") == {}


def test_a_composite_key_and_an_expression_index_are_tolerated_column_by_column() -> None:
    """The rows read back as the catalogue queries (the same on every table) write them: a
    composite key's columns in order, an expression key as pg_get_indexdef deparses it."""
    tolerated = resume.tolerance(_change("composite_fk", 1), "upgrade", "postgresql")
    rows = set(tolerated["returns.foreign_keys"])
    key = ("fk_returns_item", "order_id,line", "order_items", "order_id,line", "SET NULL")
    assert ("found, not expected", *key, "NO") in rows
    tolerated = resume.tolerance(_change("expression_index", 1), "upgrade", "postgresql")
    rows = set(tolerated["users.indexes"])
    assert ("found, not expected", "ux_users_lower_email", "loweremail", "YES", "NO", "") in rows
    assert (
        "found, not expected",
        "ix_users_tenant_name",
        "tenant_id,uppername::text,email",
        "NO",
        "NO",
        "",
    ) in rows
