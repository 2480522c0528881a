"""Experiment: the ops suite's writer as a thread of the migrating process (before) against a
process of its own (now), rounds alternating in one run, for a few cases of ``ops.HISTORY``.

A thread shares the interpreter lock with the migration's Python code (psycopg converts a
result without releasing it), so it can measure its own process rather than the database:
benchmarks/experiments/ops_blockers.py found backfill INSERTs of 0.6-1.6 s with no lock wait
and the server's own time, commit included, under 30 ms.

    python -m benchmarks.experiments.ops_writer_process [--rows N] [--rounds R] CASE...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import replace

from benchmarks import ops
from benchmarks.settings import Settings
from benchmarks.timing import Progress


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cases", nargs="+")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = p.parse_args(argv)
    ops.HISTORY = [(label, spec) for label, spec in ops.HISTORY if label in args.cases]
    progress = Progress(enabled=False)
    blocked: dict[str, dict[str, list[float]]] = {"thread": {}, "process": {}}
    loads = []
    for r in range(args.rounds):
        for variant in sorted(blocked, reverse=bool(r % 2)):
            s = replace(Settings(), prefill=args.rows, writer_process=variant == "process")
            loads.append(os.getloadavg()[0])
            for case in ops._round(args.pg_url, s, progress, f"{variant} {r + 1}"):
                blocked[variant].setdefault(case["op"], []).append(round(case["blocked_ms"], 1))
    result = {
        "rows": args.rows,
        "rounds": args.rounds,
        "load_1min": [round(x, 1) for x in loads],
        "cases": {
            op: {
                v: {"ms": blocked[v][op], "median": statistics.median(blocked[v][op])}
                for v in blocked
            }
            for op, _ in ops.HISTORY
        },
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
