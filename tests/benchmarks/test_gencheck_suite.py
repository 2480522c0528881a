"""The tool-speed suite (``python -m benchmarks --suite gencheck``): its synthetic histories are
valid and lint-clean or acknowledged, it times a real ``generate --check`` (a hand edit makes
the check fail), and a quick run reports medians, a linear fit and a chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cli, gencheck, report
from benchmarks.timing import Progress
from generator.lint import lint
from generator.load import load_changes


def test_fit_of_a_line_is_exact() -> None:
    f = gencheck.fit([10, 20, 40], [0.5 + 0.002 * n for n in (10, 20, 40)])
    assert f["a_s"] == pytest.approx(0.5)
    assert f["b_ms"] == pytest.approx(2.0)
    assert f["r2"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        gencheck.fit([5, 5], [1.0, 2.0])


def test_synthetic_history_is_valid_and_every_finding_acknowledged(tmp_path: Path) -> None:
    n = 2 * gencheck.CYCLE + 3  # every kind of change, twice, and a cycle begun
    changes_dir = tmp_path / "changes"
    changes_dir.mkdir()
    (changes_dir / "0000_baseline.yaml").write_bytes(gencheck.BASELINE.read_bytes())
    for number in range(1, n):
        ident, text = gencheck._change(number)
        (changes_dir / f"{number:04d}_{ident}.yaml").write_text(text, encoding="utf-8")
    changes = load_changes(changes_dir, display_base=tmp_path)  # raises on any error
    assert len(changes) == n
    ops = {op.op for c in changes[1:] for op in c.spec.operations}
    assert ops == {
        "create_index",
        "drop_index",
        "add_column",
        "swap_fk_action",
        "alter_column_type",
    }
    findings = [f for f in lint(changes) if f.file != "changes/0000_baseline.yaml"]
    assert findings, "the narrowing and the added columns are findings"
    assert all(f.acknowledged for f in findings), [str(f) for f in findings]


def test_suite_times_a_real_check(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    files = gencheck.build_repo(root, 3)
    out = root / "generated_migrations"
    # per change a migration, four validation .sql files and their four .json checks, a
    # review; the sum
    assert files == 3 * 10 + 1
    assert gencheck.time_check(root) > 0
    review = next((out / "review").glob("0002_*.md"))
    review.write_text(review.read_text() + "hand edit\n")
    with pytest.raises(RuntimeError, match="stale or edited"):
        gencheck.time_check(root)


def test_quick_run_reports_the_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--suite", "gencheck", "--quick", "--rounds", "1", "--json", "--no-progress"]
    assert cli.main(argv) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert doc["suites"] == ["gencheck"]
    assert doc["dialects"] == []  # no database was built
    result = doc["results"]["tool"]["gencheck"]
    sizes = [c["changes"] for c in result["sizes"]]
    assert sizes == list(doc["settings"]["gencheck_sizes"]) == [5, 10, 20]
    for c in result["sizes"]:
        assert c["rounds"] == len(c["samples_s"]) == 1
        assert all(s > 0 for s in c["samples_s"])
        assert c["median_s"] > 0
        assert c["per_change_ms"] == pytest.approx(c["median_s"] / c["changes"] * 1000)
        assert c["files"] == 10 * c["changes"] + 1
    fit = result["fit"]
    assert all(math.isfinite(fit[k]) for k in ("a_s", "b_s", "b_ms", "r2"))
    assert fit["r2"] <= 1.0
    assert result["goal_s"] == 2.0 and result["goal_changes"] == 500
    assert result["goal_median_s"] is None  # 500 changes is not a quick size
    assert result["goal_predicted_s"] == pytest.approx(fit["a_s"] + fit["b_s"] * 500)
    assert result["command"].endswith("generate --check --no-cache")  # the top level: cold
    # The same check with the cache filled, timed in the same rounds.
    warm = result["warm"]
    assert warm["command"].endswith("generate --check")
    assert [c["changes"] for c in warm["sizes"]] == sizes
    assert all(c["rounds"] == 1 and c["files"] == 10 * c["changes"] + 1 for c in warm["sizes"])
    assert warm["goal_s"] == 0.5 and warm["goal_changes"] == 500
    assert math.isfinite(warm["fit"]["b_ms"])

    # The report: a Tool speed section with the table, the fit and the chart.
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(doc))
    page = tmp_path / "perf.md"
    assert cli.main(["--from-json", str(saved), "--report", str(page), "--no-progress"]) == 0
    text = page.read_text()
    assert "## Tool speed" in text and "least-squares fit t = a + b·N" in text
    assert text.count("| 20 | 201 |") == 2  # cold and warm (10 files a change, the sum)
    assert "generate --check --no-cache`** (cold) over 20 changes" in text
    assert "generate --check`** (warm) over 20 changes" in text
    assert "![generate --check time" in text
    png = tmp_path / "perf" / "gencheck-tool.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The terminal tables too.
    assert cli.main(["--from-json", str(saved), "--no-progress"]) == 0
    assert "Tool speed" in capsys.readouterr().out


def test_a_previous_tool_is_timed_in_the_same_rounds(tmp_path: Path) -> None:
    """``--gencheck-previous DIR``: the tool in DIR (here this very tree, run from its
    sources) is timed beside the cold and warm checks, on the same repositories."""
    progress = Progress(enabled=False)
    result = gencheck.measure([2, 3], 1, 0, progress, workdir=tmp_path, previous=gencheck.PROJECT)
    for key in ("previous_cold", "previous"):  # its cold check and its warm one
        previous = result[key]
        assert previous["tool"] == gencheck.PROJECT.name
        assert [c["changes"] for c in previous["sizes"]] == [2, 3]
        assert all(c["rounds"] == 1 and c["median_s"] > 0 for c in previous["sizes"])
    assert result["previous_cold"]["command"].endswith("--check --no-cache")
    assert result["started"] and len(result["load_average"]) == 2
    section = report.gencheck_section(result, None)
    assert f"(previous tool, {gencheck.PROJECT.name}, cold) over 3 changes" in section
    assert f"(previous tool, {gencheck.PROJECT.name}, warm) over 3 changes" in section
    # cold, warm, previous cold and warm (10 files a change, the sum)
    assert section.count("| 3 | 31 |") == 4
