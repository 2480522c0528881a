"""The calculation suite's application-path cases: ``--quick --suite calc`` on SQLite and
PostgreSQL shows the analytics cases and the goal verdict, with results that agree."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench_support import quick_results

from benchmarks import calc, data, report

ANALYTICS = ("analytics fetch", "analytics compute", "analytics fetch + compute")


def test_compute_analytics_agrees_with_decimal() -> None:
    rows = [(n % 3 + 1, Decimal(data.price_units(n)).scaleb(-4), n % 7) for n in range(1, 301)]
    columns = {
        "instrument_id": np.array([r[0] for r in rows]),
        "price": np.array([float(r[1]) for r in rows]),
        "volume": np.array([r[2] for r in rows]),
    }
    decimal = calc.compute_decimal(rows, 20)
    assert calc.worst_difference(decimal, calc.compute_analytics(columns, 20)) < 1e-12
    # Fewer ticks than the window: the last "moving average" is the mean, as elsewhere.
    assert (
        calc.worst_difference(calc.compute_decimal(rows, 500), calc.compute_analytics(columns, 500))
        < 1e-12
    )


@pytest.mark.db
def test_quick_calc_suite(dialect: str, quick_bench: tuple[dict[str, Any], Path]) -> None:
    doc = quick_results(quick_bench, dialect)
    cases = {c["name"]: c for c in doc["results"][dialect]["calc"]}
    settings = doc["settings"]
    assert set(ANALYTICS) <= set(cases)
    # Every case reads the same ticks: from first_id on (all live at head), calc_rows of them
    # or as many as there are.
    first = {c["first_id"] for c in cases.values()}
    assert len(first) == 1
    rows = min(settings["calc_rows"], settings["prefill"] - first.pop() + 1)
    assert rows > 0
    for name in ANALYTICS:
        c = cases[name]
        assert c["rows"] == c["baseline"]["rows"] == c["head"]["rows"] == rows
        assert c["baseline"]["rounds"] == c["head"]["rounds"] == settings["rounds"]
        assert c["head"]["median_s"] > 0
        assert math.isclose(c["ratio"], c["head"]["median_s"] / c["baseline"]["median_s"])
    # The baseline side is what the baseline application does: the same samples as the
    # like-for-like cases' baseline (DECIMAL rows through SQLAlchemy, Decimal arithmetic).
    goal = cases[calc.GOAL_CASE]
    assert goal["baseline"] == cases["fetch + compute numpy"]["baseline"]
    assert cases["analytics fetch"]["baseline"] == cases["fetch"]["baseline"]
    assert goal["results_close"] is True
    assert goal["worst_relative_difference"] < 1e-9
    assert goal["goal_speedup"] == calc.GOAL_SPEEDUP
    assert goal["goal_met"] == (1 / goal["ratio"] >= calc.GOAL_SPEEDUP)
    sums = [
        a + b
        for a, b in zip(
            cases["analytics fetch"]["head"]["samples_s"],
            cases["analytics compute"]["head"]["samples_s"],
            strict=True,
        )
    ]
    assert goal["head"]["samples_s"] == pytest.approx(sums)

    # The report: the goal case in the table with its verdict, and a headline for it.
    table = report.tables(doc)
    assert "| analytics fetch + compute | fetch + Decimal:" in table
    assert report.calc_verdict(goal) in table
    lines = report.headlines(doc)
    assert any("calculation goal" in line and report.calc_verdict(goal) in line for line in lines)
