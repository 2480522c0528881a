"""examples/shop: a second project (issue 12), its change history using every registered
operation, and its generated files kept current."""

from __future__ import annotations

from support import ROOT, cli

from generator import files
from generator.cli import Exit
from generator.load import load_changes
from generator.ops import op_names
from generator.render import generate

SHOP = ROOT / "examples" / "shop"


def test_the_history_uses_every_registered_operation() -> None:
    """From the registry, so an operation added to generator/ops/ (backfill) fails this test
    until examples/shop uses it."""
    used = {op.op for change in load_changes(SHOP / "changes") for op in change.spec.operations}
    missing = sorted(set(op_names()) - used)
    assert not missing, f"examples/shop/changes uses no {missing}"


def test_the_baseline_has_the_shapes_asked_for() -> None:
    base = load_changes(SHOP / "changes")[0].after
    tables = {t.name: t for t in base.tables}
    assert {"users", "products", "orders", "order_items", "reviews"} <= set(tables)
    assert [c.name for c in tables["order_items"].columns if c.primary_key] == ["order_id", "line"]
    users_fks = [fk for fk in tables["users"].foreign_keys if fk.ref_table == "users"]
    assert users_fks, "users.referred_by refers to users"


def test_generated_files_are_current() -> None:
    drift = files.compare(
        generate(load_changes(SHOP / "changes", display_base=SHOP)), SHOP / "generated_migrations"
    )
    assert drift.clean, "".join(drift.diff)
    result = cli("generate", "--check", root=SHOP)
    assert result.exit_code == Exit.OK, result.output
