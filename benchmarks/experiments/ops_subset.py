"""Experiment: the ``ops`` suite (benchmarks/ops.py) for a few operations only (a history
of SUBSET's changes in the order given, on the base table), baseline against head in the same
run, rounds alternating: the longest single-row INSERT into ``t`` while each change upgrades.

    python -m benchmarks.experiments.ops_subset [--rows N] [--rounds R] OP...

baseline runs the post-checks a statement each (``runtime.run_checks_one_by_one``), head in one
round trip (``runtime.run_checks``). The post-checks run inside the change's transaction, so a
catalogue-only operation's ACCESS EXCLUSIVE lock is held while they run: their time is what
writers wait for (set_nullable's SET NOT NULL, drop_column's rename aside).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from dataclasses import replace

from benchmarks import ops
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
    args = p.parse_args(argv)
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
    summary = {}
    for variant, by_op in blocked.items():
        for op, samples in by_op.items():
            median = statistics.median(samples)
            summary[f"{variant} {op}"] = median
            print(f"{variant:<8} {op:<14} longest blocked INSERT {samples} median {median} ms")
        print(
            f"{variant:<8} post-checks (every change) median {statistics.median(post[variant])} ms"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
