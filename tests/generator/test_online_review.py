"""The review, plan and status of an online type change say how its backfill runs: in slices
of the key range at once on a table keyed by one integer column, one loop otherwise."""

from __future__ import annotations

from pathlib import Path

from ops_support import render_project
from support import ROOT

from generator import render

BASE = """id: base
description: One table keyed by one integer column, one by two.
operations:
  - op: create_table
    name: ticks
    columns:
      - {name: id, type: bigint, primary_key: true}
      - {name: price, type: "decimal(12,4)", nullable: false}
  - op: create_table
    name: quotes
    columns:
      - {name: venue, type: varchar(8), primary_key: true}
      - {name: seq, type: integer, primary_key: true}
      - {name: price, type: "decimal(12,4)"}
"""
CONVERT = """id: convert
description: Both prices to float, online.
operations:
  - {op: alter_column_type, table: ticks, column: price, from: "decimal(12,4)", to: float}
  - {op: alter_column_type, table: quotes, column: price, from: "decimal(12,4)", to: float}
"""
SLICED = "in slices of the key range at once, each on its own connection"


def _backfill_line(review: str, table: str) -> str:
    (row,) = [
        line
        for line in review.splitlines()
        if line.startswith(f"| online type change (1 op) | {table} |")
    ]
    return row.split("backfill: ", 1)[1].split("; prepare:", 1)[0]


def test_the_review_says_which_backfill_runs_in_slices(tmp_path: Path) -> None:
    changes = tmp_path / "project" / "changes"
    changes.mkdir(parents=True)
    (changes / "0000_base.yaml").write_text(BASE, encoding="utf-8")
    (changes / "0001_convert.yaml").write_text(CONVERT, encoding="utf-8")
    loaded, out = render_project(tmp_path / "project", tmp_path)
    review = (out / render.review_path(loaded[1])).read_text(encoding="utf-8")
    sliced, composite = _backfill_line(review, "ticks"), _backfill_line(review, "quotes")
    assert SLICED in sliced and "--backfill-workers" in sliced
    assert SLICED not in composite
    assert composite.startswith("ROW EXCLUSIVE per batch (keyset batches")
    # the project's own 0003: market_data and alert_logs are keyed by one integer id
    shipped = ROOT / "generated_migrations" / "review" / "0003_convert_decimal_to_float.md"
    text = shipped.read_text(encoding="utf-8")
    assert text.count(SLICED) == 2
