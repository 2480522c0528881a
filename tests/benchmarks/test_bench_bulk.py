"""The insert suite's bulk-ingest case: ``python -m benchmarks --quick --suite insert`` on
SQLite and PostgreSQL runs, per (table, fill), baseline Core, head bulk and head's raw-driver
ceiling in the same rounds, and the report renders it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from bench_support import one_dialect, quick_results

from benchmarks import insert, report

pytestmark = pytest.mark.db


def test_quick_insert_has_the_bulk_case(
    dialect: str, quick_bench: tuple[dict[str, Any], Path]
) -> None:
    doc = one_dialect(quick_results(quick_bench, dialect), dialect)
    settings = doc["settings"]
    cases = doc["results"][dialect]["insert"]
    bulk = [c for c in cases if c["path"] == insert.BULK]
    assert [(c["table"], c["fill"]) for c in bulk] == [
        (t, f) for t in ("market_data", "alert_logs") for f in ("empty", "filled")
    ]
    # The existing per-path cases are still there, unchanged in kind.
    assert {c["path"] for c in cases} == {*insert.PATHS[dialect], insert.BULK}
    for c in bulk:
        assert c["name"] == f"{c['table']} bulk {c['fill']}"
        assert c["ceiling_path"] == insert.CEILING[dialect]
        for side in (c["baseline"], c["head"], c["ceiling"]):
            assert side["rounds"] == settings["rounds"] == len(side["samples_s"])
            assert all(s > 0 for s in side["samples_s"])
            assert side["rows"] == settings["insert_rows"]
        # ratio: head bulk / baseline core; fraction: ceiling / bulk (medians).
        assert math.isclose(c["ratio"], c["head"]["median_s"] / c["baseline"]["median_s"])
        assert math.isclose(
            c["fraction_of_ceiling"], c["ceiling"]["median_s"] / c["head"]["median_s"]
        )
        assert 0 < c["fraction_of_ceiling"] < 10
        # the start: plain SQLAlchemy at 0000 (PostgreSQL: per-row executemany, beside the
        # application's multi-row Core path; SQLite: the two are one path)
        assert c["start_path"] == ("plain" if dialect == "postgresql" else "core")
        assert math.isclose(c["core_ratio"], c["head"]["median_s"] / c["core"]["median_s"])
        if dialect == "sqlite":
            assert c["core"] == c["baseline"]

    # The tables and the headlines show it; the main INSERT table keeps the per-path cases.
    text = report.tables(doc)
    assert "Bulk ingest" in text and "end-to-end speed-up" in text
    bulk_rows = [line for line in text.splitlines() if "(copy)" in line or "(driver)" in line]
    assert len(bulk_rows) == 4
    assert not any(
        line.startswith(f"| {t} | bulk |")
        for t in ("market_data", "alert_logs")
        for line in text.splitlines()
    )
    (headline,) = [h for h in report.headlines(doc) if "bulk ingest" in h]
    assert headline.count(" ceiling)") == 4


def test_bulk_rendering_marks_missed_goals() -> None:
    side = {"rows_per_s": 1000.0, "median_s": 1.0}
    case = {
        "table": "market_data",
        "fill": "empty",
        "rows_before": 0,
        "baseline": side,
        "head": side,
        "ceiling": side,
        "ceiling_path": "copy",
    }
    hit = {**case, "ratio": 0.25, "fraction_of_ceiling": 0.9}  # 4x, 90 %
    miss = {**case, "ratio": 0.5, "fraction_of_ceiling": 0.8}  # 2x, 80 %
    assert "| 4.00x | 90% |" in report.bulk_table([hit])
    assert "| **2.00x** | **80%** |" in report.bulk_table([miss])
    assert report.bulk_headline("SQLite", [hit]).endswith("Both goals met.")
    assert "misses in bold" in report.bulk_headline("SQLite", [hit, miss])


def _goal_doc(base: list[float], head: list[float], ceiling: list[float]) -> dict[str, Any]:
    def side(samples: list[float]) -> dict[str, Any]:
        ordered = sorted(samples)
        return {"samples_s": samples, "median_s": ordered[len(ordered) // 2]}

    b, h, top = side(base), side(head), side(ceiling)
    bulk = {
        "table": "alert_logs",
        "path": "bulk",
        "fill": "filled",
        "baseline": b,
        "head": h,
        "ceiling": top,
        "ratio": h["median_s"] / b["median_s"],
        "fraction_of_ceiling": top["median_s"] / h["median_s"],
    }
    return {"results": {"postgresql": {"insert": [bulk]}}}


def test_goal_verdicts_show_the_round_to_round_spread() -> None:
    # Round by round 2.4x, 2.5x, 2.6x: the medians give 2.5x (met), and the goal lies inside
    # the spread, so the verdict says another run may judge it the other way.
    close = _goal_doc([2.4, 2.5, 2.6], [1.0, 1.0, 1.0], [0.95, 0.95, 0.95])
    (end_to_end, ceiling) = report.goals(close)
    assert "`alert_logs` 2.50x (rounds 2.40x-2.60x)" in end_to_end[2]
    assert end_to_end[3] == "met (within round-to-round spread)"
    # the ceiling fraction per round is ceiling time / bulk time (95 %), not its inverse
    assert "`alert_logs` 95% (rounds 95%-95%)" in ceiling[2]
    assert ceiling[3] == "met"
    clear = _goal_doc([3.0, 3.1, 3.2], [1.0, 1.0, 1.0], [0.5, 0.6, 0.5])
    end_to_end, ceiling = report.goals(clear)
    assert end_to_end[3] == "met"
    assert ceiling[3] == "**not met**" and "(rounds 50%-60%)" in ceiling[2]
    short = _goal_doc([2.3, 2.4, 2.6], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert report.goals(short)[0][3] == "**not met** (within round-to-round spread)"
    assert report.round_speedups({"samples_s": [2.0, 3.0]}, {"samples_s": [1.0, 2.0]}) == [2.0, 1.5]
