"""The benchmark runner's smoke run: ``--quick --json`` on SQLite and PostgreSQL, the shape of
its JSON, and the report written from it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from bench_support import quick_results

from benchmarks import cli, insert
from marketdata import queries

pytestmark = pytest.mark.db

# Every catalogue function that has a *_statement builder must be benchmarked.
DIALECT_TITLE = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
CATALOGUE = {
    name.removesuffix("_statement")
    for name in dir(queries)
    if name.endswith("_statement") and callable(getattr(queries, name))
}


def _check_side(side: dict[str, Any]) -> None:
    assert side["median_s"] > 0
    assert side["latency_ms"] > 0
    assert all(s > 0 for s in side["samples_s"])
    assert side["rounds"] == len(side["samples_s"]) >= 1
    assert side["timed_out"] is False


def test_quick_json_run(
    dialect: str, tmp_path: Path, quick_bench: tuple[dict[str, Any], Path]
) -> None:
    doc = quick_results(quick_bench, dialect)
    assert doc["suites"][:4] == ["query", "calc", "insert", "migrate"]
    # tool: gencheck (test_gencheck_suite.py), ops (test_ops_suite.py)
    assert set(doc["results"]) == {*doc["dialects"], "tool"}
    results = doc["results"][dialect]
    assert set(results) == {"insert", "calc", "query", "migrate"}
    settings = doc["settings"]
    for suite, cases in results.items():
        assert cases, suite
        if suite == "migrate":
            continue  # no baseline/head sides: tests/benchmarks/test_migrate_suite.py
        for c in cases:
            assert c["suite"] == suite
            _check_side(c["baseline"])
            _check_side(c["head"])
            assert c["baseline"]["rounds"] == settings["rounds"]
            assert math.isclose(c["ratio"], c["head"]["median_s"] / c["baseline"]["median_s"])

    inserted = {(c["table"], c["path"], c["fill"]) for c in results["insert"]}
    assert inserted == {
        (t, p, f)
        for t in ("market_data", "alert_logs")
        for p in (*insert.PATHS[dialect], insert.BULK)  # bulk: test_bench_bulk.py
        for f in ("empty", "filled")
    }
    for c in results["insert"]:
        assert c["baseline"]["rows"] == c["head"]["rows"] == settings["insert_rows"]
        assert c["rows_before"] == (
            0
            if c["fill"] == "empty"
            else settings["prefill"]
            if c["table"] == "market_data"
            else settings["prefill_alerts"]
        )

    calc = {c["name"]: c for c in results["calc"]}
    assert set(calc) == {
        "fetch",
        "compute float",
        "compute numpy",
        "fetch + compute float",
        "fetch + compute numpy",
        "analytics fetch",
        "analytics compute",
        "analytics fetch + compute",  # the goal: tests/benchmarks/test_bench_calc.py
    }
    assert all(c["results_close"] for c in results["calc"] if "results_close" in c)

    by_name = {c["name"]: c for c in results["query"]}
    assert {c["function"] for c in results["query"]} == CATALOGUE
    for c in results["query"]:
        assert c["results_equal"] is True, c["name"]
        # every catalogue query at 0000, 0004 and head; soft-delete ones at 0004 and head
        sides = (
            ("phase1", "head") if c["group"] == "soft_delete" else ("baseline", "phase1", "head")
        )
        assert set(c["plans"]) == set(sides), c["name"]
        for side in sides:
            assert c["plans"][side]["plan"], (c["name"], side)
    assert by_name["latest_ticks"]["result_rows"] == 6  # one per instrument
    assert by_name["purge_ticks"]["result_rows"] > 0  # the soft-deleted rows are there
    assert by_name["purge_ticks"]["compared"] == "0004"
    # The plans name real indexes: the dropped ones only at the baseline.
    used = {
        s: set().union(
            *(set(c["plans"][s]["indexes"]) for c in results["query"] if s in c["plans"])
        )
        for s in ("baseline", "phase1", "head")
    }
    assert "ix_market_data_latest" not in used["head"]
    assert "ix_market_data_instrument_price" not in used["head"]
    assert "ix_market_data_instrument_timestamp" in used["head"]
    assert {"ix_market_data_deleted_at", "ix_alert_logs_deleted_at"} <= used["head"]

    assert not list(quick_bench[1].iterdir())  # the SQLite scratch files are gone

    # The report from those results: Markdown, one chart per suite, results.json beside it.
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(doc))
    page = tmp_path / "perf.md"
    assert cli.main(["--from-json", str(saved), "--report", str(page), "--no-progress"]) == 0
    assert {p.name for p in (tmp_path / "perf").iterdir()} == {
        "results.json",
        "gencheck-tool.png",
        *(f"{s}-{d}.png" for s in ("insert", "calc", "query", "migrate") for d in doc["dialects"]),
    }
    text = page.read_text()
    assert "## Headlines" in text and "latest_ticks" in text
    # the goals table reads every goal of this dialect from the results
    goal_rows = [
        line
        for line in text.split("## Goals", 1)[1].split("## Headlines")[0].splitlines()
        if line.startswith("| ") and DIALECT_TITLE[dialect] in line
    ]
    assert any("INSERT, application path" in r for r in goal_rows)
    assert any("bulk ingest >= 85%" in r for r in goal_rows)
    assert any("calculation" in r for r in goal_rows)
    assert any("no catalogued query" in r for r in goal_rows)
    assert json.loads((tmp_path / "perf" / "results.json").read_text()) == doc
    for png in (tmp_path / "perf").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
