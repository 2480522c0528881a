"""Each lint rule: a spec that trips it (with its exact message) and one that does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ROOT, cli, copy_project, last_change_number

from generator.cli import Exit
from generator.lint import RULES, lint
from generator.load import load_changes

NEXT = f"{last_change_number() + 1:04d}"

BASE = """\
id: base
description: A small schema for the lint cases.
operations:
  - op: create_table
    name: venues
    columns:
      - {name: id, type: integer, primary_key: true}
  - op: create_table
    name: trades
    columns:
      - {name: id, type: bigint, primary_key: true}
      - {name: venue_id, type: integer, nullable: false, references: {table: venues}}
      - {name: price, type: "decimal(12,4)", nullable: false}
      - {name: wide, type: "decimal(20,8)", nullable: true}
      - {name: qty, type: bigint, nullable: true}
      - {name: note, type: varchar(20), nullable: true}
    indexes:
      - {name: ix_trades_venue, columns: [venue_id]}
  - op: create_table
    name: gone
    columns:
      - {name: id, type: integer, primary_key: true}
  - {op: drop_table, table: gone}
"""

# rule -> (operations that trip it, operations that do not, expected message)
CASES = {
    "SG101": (
        "- {op: create_index, table: trades, name: ix_trades_price, columns: [price], "
        "concurrently: false}",
        "- {op: create_index, table: trades, name: ix_trades_price, columns: [price]}",
        "index ix_trades_price on trades runs without CONCURRENTLY",
    ),
    "SG102": (
        # the blocking path (online: false); online, nothing rewrites under the lock
        '- {op: alter_column_type, table: trades, column: qty, from: bigint, to: "decimal(20,0)",'
        " online: false}",
        "- {op: alter_column_type, table: trades, column: note, from: varchar(20), to: text}",
        "trades.qty: bigint -> decimal(20,0) rewrites trades",
    ),
    "SG103": (
        '- {op: alter_column_type, table: trades, column: wide, from: "decimal(20,8)", to: float,'
        " range_check: true}",
        '- {op: alter_column_type, table: trades, column: price, from: "decimal(12,4)", to: float,'
        " range_check: true}",
        "trades.wide: decimal(20,8) -> float can lose precision",
    ),
    "SG104": (
        '- {op: alter_column_type, table: trades, column: price, from: "decimal(12,4)", to: float}',
        '- {op: alter_column_type, table: trades, column: price, from: "decimal(12,4)", to: float,'
        " range_check: true}",
        "trades.price: decimal(12,4) -> float without range_check",
    ),
    "SG105": (
        "- {op: create_table, name: fills, columns: [{name: id, type: integer, primary_key: true},"
        " {name: venue_id, type: integer, references: {table: venues}}]}",
        "- {op: create_table, name: fills, columns: [{name: id, type: integer, primary_key: true},"
        " {name: venue_id, type: integer}]}",
        "fills.venue_id references existing table venues",
    ),
    "SG106": (
        "- {op: drop_index, table: trades, name: ix_trades_venue}",
        "- {op: create_index, table: trades, name: ix_trades_venue_price,"
        " columns: [venue_id, price]}\n  - {op: drop_index, table: trades, name: ix_trades_venue}",
        "after this change trades.venue_id has no index leading with it",
    ),
    "SG107": (
        "- {op: add_column, table: trades, column: {name: extra, type: text}}",
        "- {op: create_index, table: trades, name: ix_trades_price, columns: [price]}",
        "the downgrade drops column trades.extra",
    ),
    "SG108": (
        "- {op: add_column, table: trades, column: {name: side, type: varchar(4),"
        " nullable: false}}",
        "- {op: add_column, table: trades, column: {name: side, type: varchar(4), nullable: false,"
        " default: buy}}",
        "trades.side is NOT NULL without a default",
    ),
    "SG109": (
        "- {op: add_column, table: trades, column: {name: deleted_at, type: timestamptz}}",
        "- {op: add_column, table: trades, column: {name: deleted_at, type: timestamptz}}\n"
        "  - {op: create_index, table: trades, name: ix_trades_deleted_at, columns: [deleted_at]}",
        "trades.deleted_at has no index leading with it",
    ),
    "SG110": (
        "- {op: rename_column, table: trades, column: note, to: memo}",
        "- {op: create_index, table: trades, name: ix_trades_note, columns: [note]}",
        "trades.note is renamed to memo: running code that still uses note fails from the "
        "moment the rename commits",
    ),
    "SG111": (
        "- {op: drop_column, table: trades, column: qty, keep_data: false}",
        "- {op: drop_column, table: trades, column: qty}",
        "trades.qty is dropped with keep_data: false: its values are lost, and the downgrade "
        "brings the column back empty",
    ),
    "SG112": (
        "- {op: purge, change: base}",
        "- {op: drop_column, table: trades, column: qty}",
        "destroys table _dropped_0000_gone, the rows change base kept: no downgrade can pass "
        "this change",
    ),
    "SG113": (
        "- {op: sql, up: {postgresql: SELECT 1, sqlite: SELECT 1}, irreversible: true}",
        "- {op: drop_column, table: trades, column: qty}",
        "raw SQL: its locks and effects are not checked by the tool; it cannot be undone",
    ),
    "SG120": (
        "- {op: set_nullable, table: trades, column: price, nullable: true}",
        "- {op: set_nullable, table: trades, column: note, nullable: false, fill: x}",
        "makes trades.price nullable",
    ),
}


def _findings(tmp_path: Path, operations: str, acknowledge: str = "") -> list[tuple[str, str]]:
    changes = tmp_path / "changes"
    changes.mkdir(parents=True, exist_ok=True)
    (changes / "0000_base.yaml").write_text(BASE)
    (changes / "0001_case.yaml").write_text(
        f"id: case\ndescription: a lint case\n{acknowledge}operations:\n  {operations}\n"
    )
    found = lint(load_changes(changes, display_base=tmp_path, lint=False))
    return [(f.rule.id, str(f)) for f in found if f.file.endswith("0001_case.yaml")]


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_trips_with_its_exact_message(tmp_path: Path, rule: str) -> None:
    tripping, passing, message = CASES[rule]
    found = dict(_findings(tmp_path / "bad", tripping))
    r = RULES[rule]
    assert found[rule].splitlines() == [
        f"changes/0001_case.yaml:4:5: operations[0]: {rule} {r.name} [{r.severity}]: {message}",
        f"    why: {r.why}",
        f"    instead: {r.instead}",
    ]
    assert rule not in dict(_findings(tmp_path / "good", passing))


def test_a_partial_index_does_not_cover_a_foreign_key(tmp_path: Path) -> None:
    """A partial index holds some rows only, so a RESTRICT check cannot use it: replacing the
    foreign key's index with a partial one still trips SG106; a partial soft-delete index
    satisfies SG109 (purge and restore look for deleted rows only)."""
    partial_fk = (
        "- {op: create_index, table: trades, name: ix_trades_venue_open, columns: [venue_id],"
        " where: note IS NULL}\n  - {op: drop_index, table: trades, name: ix_trades_venue}"
    )
    assert "SG106" in dict(_findings(tmp_path / "fk", partial_fk))
    partial_soft_delete = (
        "- {op: add_column, table: trades, column: {name: deleted_at, type: timestamptz}}\n"
        "  - {op: create_index, table: trades, name: ix_trades_deleted_at, columns: [deleted_at],"
        " where: deleted_at is not null}"
    )
    assert "SG109" not in dict(_findings(tmp_path / "soft", partial_soft_delete))


def test_an_unacknowledged_error_blocks_generate_and_an_acknowledged_one_does_not(
    tmp_path: Path,
) -> None:
    root = copy_project(tmp_path)
    spec = root / "changes" / f"{NEXT}_risky.yaml"
    spec.write_text(
        "id: risky\ndescription: drop the only index on a foreign key\noperations:\n"
        "  - {op: drop_index, table: alert_rules, name: ix_alert_rules_instrument}\n"
    )
    result = cli("generate", root=root)
    assert result.exit_code == Exit.INVALID_SPEC
    assert (
        f"changes/{NEXT}_risky.yaml:4:5: operations[0]: SG106 drop-last-fk-index: "
        "after this change alert_rules.instrument_id has no index leading with it" in result.stderr
    )
    assert not (root / "generated_migrations" / "versions" / f"{NEXT}_risky.py").exists()
    assert cli("lint", root=root).exit_code == Exit.FAILED

    spec.write_text(
        spec.read_text().replace(
            "ix_alert_rules_instrument}",
            "ix_alert_rules_instrument,\n"
            "     acknowledge: {SG106: rules are few and never deleted in bulk}}",
        )
    )
    result = cli("generate", root=root)
    assert result.exit_code == Exit.OK, result.output
    review = (root / "generated_migrations" / "review" / f"{NEXT}_risky.md").read_text()
    assert "SG106 drop-last-fk-index [error]" in review
    assert "*Acknowledged:* rules are few and never deleted in bulk" in review
    assert cli("lint", root=root).exit_code == Exit.OK


def test_phase1_specs_lint_clean_or_acknowledged() -> None:
    result = cli("lint", root=ROOT)
    assert result.exit_code == Exit.OK, result.output
    # 0003 converts online on PostgreSQL: its eight SG102 (a rewrite under ACCESS EXCLUSIVE)
    # are gone with the blocking path
    assert "2 finding(s): 0 blocking, 2 acknowledged, 0 warning(s)" in result.stdout
    review = ROOT / "generated_migrations" / "review" / "0003_convert_decimal_to_float.md"
    assert "SG102" not in review.read_text()
