"""Experiment: the ``ops`` suite (benchmarks/ops.py) for a few operations only (a history
of SUBSET's changes in the order given, on the base table), baseline against head in the same
run, rounds alternating: the longest single-row INSERT into ``t`` while each change upgrades.

    python -m benchmarks.experiments.ops_subset [--rows N] [--rounds R] OP... \\
        [--into docs/performance/results.json --report docs/performance.md]

baseline runs the post-checks a statement each (``runtime.run_checks_one_by_one``), head in one
round trip (``runtime.run_checks``). The post-checks run inside the change's transaction, so a
catalogue-only operation's ACCESS EXCLUSIVE lock is held while they run: their time is what
writers wait for (set_nullable's SET NOT NULL, drop_column's rename aside).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import ops, report
from benchmarks.settings import Settings
from benchmarks.timing import Progress
from generator import runtime

SUBSET = {
    "set_nullable": "{op: set_nullable, table: t, column: qty, nullable: false, fill: 0}",
    "drop_column": "{op: drop_column, table: t, column: note}",
    "set_default": "{op: set_default, table: t, column: qty, default: 1}",
    "rename_column": "{op: rename_column, table: t, column: note, to: remark}",
}


class _Phases(logging.Handler):
    """The runner's log lines (each names its phase and how long it took)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


VARIANTS = {
    # the checks a statement (and a round trip) each, as before this experiment
    "baseline": runtime.run_checks_one_by_one,
    "head": runtime.run_checks,
}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("ops", nargs="+", choices=sorted(SUBSET))
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    p.add_argument("--into", type=Path, help="results.json to merge the result into")
    p.add_argument("--report", type=Path, help="with --into: write the Markdown report here")
    args = p.parse_args(argv)
    started = datetime.now(UTC)
    ops.HISTORY = [(name, SUBSET[name]) for name in args.ops]
    handler = _Phases()
    log = logging.getLogger("schemagen")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    s = replace(Settings(), prefill=args.rows)
    progress = Progress(enabled=True)
    blocked: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    post: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        # alternating which variant goes first, on the same machine in the same run
        for variant in sorted(VARIANTS, reverse=bool(r % 2)):
            runtime.run_checks = VARIANTS[variant]
            handler.lines.clear()
            try:
                cases = ops._round(args.pg_url, s, progress, f"{variant} round {r + 1}")
            finally:
                runtime.run_checks = VARIANTS["head"]
            for case in cases:
                blocked[variant].setdefault(case["op"], []).append(round(case["blocked_ms"], 1))
            post[variant] += [
                float(line.rsplit("(", 1)[1].split(" ms")[0])
                for line in handler.lines
                if "post-checks ok" in line
            ]
    cases = [
        {
            "op": op,
            "baseline_ms": blocked["baseline"][op],
            "head_ms": blocked["head"][op],
            "median_baseline_ms": statistics.median(blocked["baseline"][op]),
            "median_head_ms": statistics.median(blocked["head"][op]),
        }
        for op in args.ops
    ]
    result = {
        "started": started.isoformat(timespec="seconds"),
        "rows": args.rows,
        "rounds": args.rounds,
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "run_command": "python -m benchmarks.experiments.ops_subset " + " ".join(argv),
        "cases": cases,
        "post_checks_baseline_ms": statistics.median(post["baseline"]),
        "post_checks_head_ms": statistics.median(post["head"]),
    }
    print(json.dumps(result, indent=1))
    if args.into:
        doc = json.loads(args.into.read_text())
        doc["results"].setdefault(report.TOOL, {})["ops_checks"] = result
        args.into.write_text(json.dumps(doc, indent=1) + "\n")
        if args.report:
            report.write(doc, args.report)


if __name__ == "__main__":
    main(sys.argv[1:])
