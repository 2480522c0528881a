"""Probe behind the online backfill's speed (issue 14, docs/online.md "Backfill speed"):
change 0003's online upgrade of a market_data-shaped table, with its phase timings, for two
source trees in one run (e.g. main and a branch), alternating rounds, medians; optionally the
blocking path of the same change once per round (rendered by the tool, as the migrate suite
does) for the online / blocking ratio.

A base database at 0002 is filled once (generate_series, benchmarks.data); each run upgrades
a fresh copy of it (``CREATE DATABASE ... TEMPLATE``, outside the timing) in a child process
whose ``generator`` is the tree's (``PYTHONPATH``), with no clients.

    python -m benchmarks.experiments.backfill_probe --tree base=/work/main --tree head=. \\
        [--ticks 1000000] [--alerts 100000] [--rounds 3] [--blocking]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import typechange
from benchmarks.databases import admin_sql, postgres_admin_url

CHILD = """
import json, sys, time
from pathlib import Path
import sqlalchemy as sa
import generator
from benchmarks.typechange import _logged
from generator import migrate
url, migrations = sa.make_url(sys.argv[1]), Path(sys.argv[2])
with _logged() as ends:
    started = time.perf_counter()
    migrate.upgrade(migrations, url, "0003")
    seconds = time.perf_counter() - started
print(json.dumps({"s": seconds, "generator": generator.__file__, "ends": ends}))
"""


def _child(tree: Path, url: str, migrations: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(migrations)],
        cwd=tree,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["generator"].startswith(str(tree)), result["generator"]
    return result


def _phases(result: dict[str, Any]) -> dict[str, float]:
    """Phase -> ms, and backfill rows/s per table."""
    out: dict[str, float] = {"whole_s": result["s"]}
    for e in result["ends"]:
        step = e["step"]
        if step.split(" ", 1)[0] in ("expand", "backfill", "prepare", "contract"):
            out[f"{step} ms"] = e["ms"]
            if step.startswith("backfill ") and e.get("rows"):
                out[f"{step} rows/s"] = e["rows"] / (e["ms"] / 1000)
                out[f"{step} batches"] = e["batches"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="label=path")
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocking", action="store_true")
    parser.add_argument("--pg", default=None)
    args = parser.parse_args()
    trees = {t.split("=", 1)[0]: Path(t.split("=", 1)[1]).resolve() for t in args.tree}
    base = typechange.Base(postgres_admin_url(args.pg), args.ticks, args.alerts)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    try:
        started = time.perf_counter()
        base.build(typechange._start_revision())
        print(f"fill: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="schemagen-probe-") as tmp:
            blocking = typechange.render_blocking(Path(tmp)) if args.blocking else None
            if blocking is not None:
                runs["blocking"] = []
            for n in range(args.rounds):
                order = list(trees.items())
                order = order if n % 2 == 0 else order[::-1]
                if blocking is not None:
                    order.append(("blocking", trees[order[0][0]]))
                for label, tree in order:
                    url = base.copy(f"r{n}_{label}")
                    migrations = blocking if label == "blocking" else tree / "generated_migrations"
                    assert migrations is not None
                    phases = _phases(_child(tree, url.render_as_string(False), migrations))
                    runs[label].append(phases)
                    print(f"round {n} {label}: {json.dumps(phases)}", file=sys.stderr)
                    admin_sql(
                        base.admin_url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'
                    )
                    base.made.remove(url)
    finally:
        base.drop()
    medians = {
        label: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        for label, rs in runs.items()
        if rs
    }
    print(
        json.dumps(
            {
                "ticks": args.ticks,
                "alerts": args.alerts,
                "rounds": args.rounds,
                "medians": medians,
                "load_average": typechange._load_average(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
