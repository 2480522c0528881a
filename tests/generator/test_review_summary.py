"""The review summary beside each migration: what changes, the risk, the rollback, the checks."""

from __future__ import annotations

from types import SimpleNamespace

import jinja2
from support import ROOT

from generator import render

REVIEW = ROOT / "generated_migrations" / "review"


def _read(name: str) -> str:
    return (REVIEW / f"{name}.md").read_text()


def test_every_change_has_a_review_summary() -> None:
    versions = sorted(p.stem for p in (ROOT / "generated_migrations" / "versions").glob("0*.py"))
    assert sorted(p.stem for p in REVIEW.glob("*.md")) == versions


def test_index_change_shows_before_and_after_and_no_rewrite() -> None:
    text = _read("0001_optimize_market_data_indexes")
    assert (
        "| index `ix_market_data_latest` | (instrument_id, timestamp, price, bid, ask) | — |"
        in text
    )
    assert "| index `ix_market_data_instrument_price` | — | (instrument_id, price) |" in text
    assert "| index count | 5 | 2 |" in text
    assert "| concurrent indexes (5 ops) | market_data | SHARE UPDATE EXCLUSIVE | no |" in text
    assert "`schemagen downgrade --to 0000`" in text


def test_type_change_flags_the_rewrite_on_both_dialects() -> None:
    text = _read("0003_convert_decimal_to_float")
    assert "| column `price` | decimal(12,4) NOT NULL | float NOT NULL |" in text
    # online on PostgreSQL: no rewrite under a lock; SQLite rebuilds (one step per column, its
    # range check with it)
    assert (
        "| online type change (6 ops) | market_data | ACCESS EXCLUSIVE (brief, catalogue only: "
        "expand and contract) | no |"
    ) in text
    assert "| recreate table (6 ops) | market_data | database write lock | **yes** |" in text
    assert "1. `market_data.price`: float → decimal(12,4); drop check" in text
    assert "data checks (market_data.drift" not in text  # names are listed, in order:
    assert "row_counts" in text


def test_foreign_key_swap_and_lossy_rollback_are_spelled_out() -> None:
    text = _read("0004_add_soft_delete_safety")
    assert (
        "| foreign key `fk_alert_logs_rule_id_alert_rules` | → alert_rules.id ON DELETE cascade "
        "| → alert_rules.id ON DELETE restrict |"
    ) in text
    assert "1. drop column `market_data.deleted_at` (**its values are lost**)" in text
    assert "added NOT VALID, validated after commit" in text


def test_a_serial_column_is_shown_with_its_sequence() -> None:
    review = ROOT / "tests" / "golden" / "render" / "create_table_spec" / "expected" / "review"
    text = (review / "0000_base.md").read_text("utf-8")
    assert (
        "| column `id` | — | integer NOT NULL serial (sequence `authors_id_seq` on PostgreSQL) |"
        in text
    )
    assert "| column `author_id` | — | integer NOT NULL |" in text  # not serial: as before


def test_a_units_tables_are_written_as_jinjas_unique_and_join_write_them() -> None:
    """render's unit_tables filter (Python: the review writes it for every unit) says what
    the template's ``unit.steps | map(attribute="table_name") | unique | join(", ")`` said:
    each name once, in order, the first of those equal but for case."""
    env = jinja2.Environment()
    jinja = env.from_string('{{ unit.steps | map(attribute="table_name") | unique | join(", ") }}')
    for names in ([], ["a"], ["a", "b", "a"], ["b", "a", "B", "A", "c"], ["Orders", "orders"]):
        unit = SimpleNamespace(steps=[SimpleNamespace(table_name=n) for n in names])
        assert render._unit_tables(unit) == jinja.render(unit=unit)  # type: ignore[arg-type]
