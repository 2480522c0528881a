"""examples/shop with rows, on SQLite and PostgreSQL: upgrade, verify, downgrade to the
baseline, upgrade again, every row and value compared with what it should be after each step
(issue 12). The values drop_column and drop_table set aside and set_nullable's fill are
followed: aside after the upgrade, back in place after the downgrade.

The history has a purge (0006), past which no downgrade goes: the round trip runs to the
change before it (0005), downgrades to the baseline, then upgrades to the head; a downgrade to
the baseline from the head is refused before any step runs, nothing changed. 0007 (a unique
index on lower(email), a composite foreign key from reviews to order lines) goes down to 0006
and up again; addresses equal but for their case refuse it with nothing changed."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import ROOT, execute

from generator import db, migrate, runtime

SHOP = ROOT / "examples" / "shop"

Rows = dict[str, list[dict[str, Any]]]

SEED: Rows = {
    "users": [
        {
            "id": 1,
            "email": "ann@example.com",
            "name": "Ann",
            "referred_by": None,
            "legacy_score": 5,
        },
        {"id": 2, "email": "bob@example.com", "name": None, "referred_by": 1, "legacy_score": 0},
        {"id": 3, "email": "cy@example.com", "name": "Çy ''", "referred_by": 1, "legacy_score": 12},
        {"id": 4, "email": "dee@example.com", "name": None, "referred_by": 3, "legacy_score": -7},
    ],
    "products": [
        {
            "id": 1,
            "sku": "A-1",
            "name": "Mug",
            "price": Decimal("12.5"),
            "stock": 3,
            "note": "blue",
        },
        {"id": 2, "sku": "B-2", "name": "Tea", "price": Decimal("4.25"), "stock": 0, "note": None},
        {"id": 3, "sku": "C-3", "name": "Pot", "price": Decimal("30"), "stock": 7, "note": "it's"},
    ],
    "orders": [
        {"id": 1, "user_id": 1, "status": "pending", "total": Decimal("29.25")},
        {"id": 2, "user_id": 2, "status": "shipped", "total": Decimal("30")},
        {"id": 3, "user_id": 1, "status": "pending", "total": Decimal("0")},
    ],
    "order_items": [
        {"order_id": 1, "line": 1, "product_id": 1, "quantity": 2},
        {"order_id": 1, "line": 2, "product_id": 2, "quantity": 1},
        {"order_id": 2, "line": 1, "product_id": 3, "quantity": 1},
    ],
    "reviews": [
        {"id": 1, "user_id": 1, "product_id": 1, "rating": 5, "body": "great"},
        {"id": 2, "user_id": 2, "product_id": 1, "rating": 4, "body": None},
        {"id": 3, "user_id": 3, "product_id": 3, "rating": 1, "body": "cracked"},
    ],
    "audit_log": [{"id": 1, "message": "created"}, {"id": 2, "message": "order 2 shipped"}],
}


def _renamed(row: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return {(new if k == old else k): v for k, v in row.items()}


def after_0005() -> Rows:
    """What 0001-0005 make of the seed."""
    users = [
        {
            **_renamed(u, "legacy_score", "_dropped_0004_legacy_score"),  # aside, kept
            "name": u["name"] if u["name"] is not None else "anonymous",  # set_nullable fill
            "phone": None,  # add_column
        }
        for u in SEED["users"]
    ]
    return {
        "users": users,
        # the keys of the filled rows, for the downgrade to put NULL back
        "filled_0002_users_name": [{"id": u["id"]} for u in SEED["users"] if u["name"] is None],
        "products": [_renamed(p, "note", "description") for p in SEED["products"]],
        # the backfill of 0002: pending orders are open (the old values kept in its archive)
        "orders": [
            {**o, "status": "open" if o["status"] == "pending" else o["status"]}
            for o in SEED["orders"]
        ],
        "order_items": SEED["order_items"],
        "product_reviews": SEED["reviews"],
        "_dropped_0004_audit_log": SEED["audit_log"],  # the table set aside with its rows
    }


def after_0006() -> Rows:
    """0006 purges what 0004 kept aside."""
    rows = after_0005()
    del rows["_dropped_0004_audit_log"]
    rows["users"] = [
        {k: v for k, v in u.items() if k != "_dropped_0004_legacy_score"} for u in rows["users"]
    ]
    return rows


def at_head() -> Rows:
    """0007 gives reviews the order line they review (empty until set)."""
    rows = after_0006()
    rows["product_reviews"] = [
        {**r, "order_id": None, "line": None} for r in rows["product_reviews"]
    ]
    return rows


def _value(v: Any) -> Any:
    if isinstance(v, float | Decimal):
        return Decimal(str(v))  # SQLite gives a float, PostgreSQL a Decimal; compared as numbers
    return v


def snapshot(url: str) -> Rows:
    """Every table's rows (alembic_version aside), each a dict of every column, by key."""
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            out: Rows = {}
            for table in sa.inspect(conn).get_table_names():
                if table == "alembic_version":
                    continue
                result = conn.exec_driver_sql(f'SELECT * FROM "{table}"')
                keys = list(result.keys())
                rows = [{k: _value(v) for k, v in zip(keys, r, strict=True)} for r in result]
                # by key (the first columns: id, or order_id and line)
                out[table] = sorted(rows, key=lambda r: tuple(r.values())[:2])
            return out
    finally:
        engine.dispose()


def _norm(rows: Rows) -> Rows:
    return {t: [{k: _value(v) for k, v in r.items()} for r in rs] for t, rs in rows.items()}


def _seed_sql(dialect: str) -> list[str]:
    out = []
    for table, rows in SEED.items():
        for row in rows:
            cols = ", ".join(f'"{c}"' for c in row)
            vals = ", ".join(
                "NULL"
                if v is None
                else "'" + v.replace("'", "''") + "'"
                if isinstance(v, str)
                else str(v)
                for v in row.values()
            )
            out.append(f'INSERT INTO "{table}" ({cols}) VALUES ({vals})')
    return out


def _verified(out_dir: Path, url: sa.URL, revision: str) -> None:
    current, phase, results, _note = migrate.verify(out_dir, url)
    assert current == revision, (current, phase)
    failed = [(r.check, r.rows) for r in results if not r.passed]
    assert results and not failed, failed


@pytest.mark.slow
def test_upgrade_verify_downgrade_upgrade_keeps_every_value(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    project = tmp_path / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns(".schemagen", "__pycache__"))
    out_dir = project / "generated_migrations"
    url = sa.make_url(db_url)

    migrate.upgrade(out_dir, url, "0000")
    execute(db_url, *_seed_sql(dialect))
    assert snapshot(db_url) == _norm(SEED)
    _verified(out_dir, url, "0000")

    migrate.upgrade(out_dir, url, "0005")
    assert snapshot(db_url) == _norm(after_0005())
    _verified(out_dir, url, "0005")

    migrate.downgrade(out_dir, url, "0000")
    assert snapshot(db_url) == _norm(SEED)  # every value back, the filled names NULL again
    _verified(out_dir, url, "0000")

    migrate.upgrade(out_dir, url, "head")
    assert snapshot(db_url) == _norm(at_head())
    _verified(out_dir, url, "0007")

    with pytest.raises(runtime.Irreversible, match="0006_purge_retired cannot be downgraded"):
        migrate.downgrade(out_dir, url, "0000")
    assert snapshot(db_url) == _norm(at_head())
    _verified(out_dir, url, "0007")

    # 0007: a review names its order line (the composite key holds: an orphan pair is
    # refused, a half-NULL pair is not checked), an address in another case is refused
    execute(db_url, "UPDATE product_reviews SET order_id = 1, line = 2 WHERE id = 1")
    execute(db_url, "UPDATE product_reviews SET order_id = 2, line = NULL WHERE id = 2")
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "UPDATE product_reviews SET order_id = 2, line = 5 WHERE id = 3")
    with pytest.raises(sa.exc.IntegrityError):
        execute(
            db_url,
            "INSERT INTO users (id, email, name) VALUES (9, 'ANN@example.com', 'Ann again')",
        )
    linked = at_head()
    linked["product_reviews"][0].update(order_id=1, line=2)
    linked["product_reviews"][1].update(order_id=2, line=None)
    assert snapshot(db_url) == _norm(linked)
    _verified(out_dir, url, "0007")

    # down to 0006 (the key, the columns and the index go) and up again: the links are lost
    # with their columns, every other value stays
    migrate.downgrade(out_dir, url, "0006")
    assert snapshot(db_url) == _norm(after_0006())
    _verified(out_dir, url, "0006")
    migrate.upgrade(out_dir, url, "head")
    assert snapshot(db_url) == _norm(at_head())
    _verified(out_dir, url, "0007")


@pytest.mark.slow
def test_case_duplicates_refuse_0007_with_nothing_changed(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """Addresses equal but for their case refuse the unique index on lower(email), naming
    both rows; nothing of 0007 runs and every value stays."""
    project = tmp_path / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns(".schemagen", "__pycache__"))
    out_dir = project / "generated_migrations"
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    execute(db_url, *_seed_sql(dialect))
    migrate.upgrade(out_dir, url, "0006")
    execute(db_url, "UPDATE users SET email = 'ANN@Example.com' WHERE id = 4")
    before = snapshot(db_url)
    with pytest.raises(runtime.CheckFailed) as refused:
        migrate.upgrade(out_dir, url, "head")
    message = str(refused.value)
    assert "users.ux_users_lower_email.duplicates" in message
    assert "ann@example.com" in message and "ANN@Example.com" in message
    assert "bob@example.com" not in message
    assert snapshot(db_url) == before
    _verified(out_dir, url, "0006")
    execute(db_url, "UPDATE users SET email = 'dee@example.com' WHERE id = 4")
    migrate.upgrade(out_dir, url, "head")
    _verified(out_dir, url, "0007")
