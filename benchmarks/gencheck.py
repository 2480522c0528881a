"""Tool-speed suite: ``schemagen generate --check`` over synthetic histories of N changes.

The issue: over 500 changes ``generate --check`` finishes in under 2 s on this machine and its
time grows linearly with the number of changes, so CI on a large repository never waits on it.

For each N the suite builds a repository in a temporary directory (``changes/`` holding the
project's baseline and N - 1 synthetic changes, ``generated_migrations/`` written once with
``schemagen generate``, which also fills the project's cache, ``.schemagen/cache``), then times
two checks as subprocesses, in turn: cold, ``schemagen --root R generate --check --no-cache``
(every change loaded, validated and rendered: the issue's bound, under 2 s at 500 changes),
and warm, ``schemagen --root R generate --check`` with the cache filled (nothing parsed nor
rendered: under 0.5 s). Wall time, start-up included, after untimed warm-up rounds, the median
of the rounds. A least squares fit ``t = a + b * N`` gives the fixed cost ``a``, the cost per
change ``b`` and R². The top level of the result is the cold check; ``warm`` the warm one.

The synthetic history is a realistic mix on the baseline tables, every change valid and
lint-clean or acknowledged: concurrent index builds and drops (market_data, alert_logs,
instruments), nullable columns added (spread over the four tables), foreign-key actions swapped
and swapped back, and a varchar widened and narrowed again (a rewrite and a rebuild).
It is dialect-independent: the check renders both dialects at once.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.settings import Settings
from benchmarks.timing import Progress, cpu_probe_ms

PROJECT = Path(__file__).resolve().parents[1]
BASELINE = PROJECT / "changes" / "0000_baseline.yaml"
GOAL_S = 2.0  # the bound for 500 changes, cold (nothing cached)
WARM_GOAL_S = 0.5  # ... and with the cache filled
COLD_ARGS = ("--no-cache",)
GOAL_N = 500
CYCLE = 8  # the synthetic changes repeat this pattern
ADD_COLUMN_TABLES = ("alert_rules", "market_data", "alert_logs", "instruments")
ADD_COLUMN_TYPES = ("integer", "text", "timestamptz", "varchar(64)", "boolean", "bigint")

HEADER = "# yaml-language-server: $schema=change.schema.json\n"
DESCRIPTION = """\
description: |
  Why: synthetic change {n} of the tool-speed benchmark ({what}).
  Cost: {cost}
  Roll back: `schemagen downgrade --to {previous}` {rollback}
"""


def _change(n: int) -> tuple[str, str]:
    """The id and YAML text of synthetic change ``n`` (n >= 1), one of a cycle of eight."""
    k = (n - 1) % CYCLE
    base = n - k  # the change that opened this cycle: names are unique per cycle
    previous = f"{n - 1:04d}"
    ack = ""
    if k == 0:
        ident = f"add_market_data_index_{n}"
        what, cost = "an index build", "one concurrent index build over market_data."
        rollback = "drops the index."
        ops = (
            "  - op: create_index\n    table: market_data\n"
            f"    name: ix_market_data_syn_{base}\n    columns: [timestamp, price]\n"
        )
    elif k == 1:
        ident = f"drop_market_data_index_{n}"
        what, cost = "an index drop", "one concurrent index drop."
        rollback = "rebuilds the index."
        ops = f"  - {{op: drop_index, table: market_data, name: ix_market_data_syn_{base}}}\n"
    elif k == 2:
        table = ADD_COLUMN_TABLES[(n // CYCLE) % len(ADD_COLUMN_TABLES)]
        type_ = ADD_COLUMN_TYPES[(n // CYCLE) % len(ADD_COLUMN_TYPES)]
        ident = f"add_{table}_syn_{n}"
        what, cost = "a nullable column", "a catalogue-only change on both dialects."
        rollback = "drops the column and its values."
        ack = "acknowledge:\n  SG107: the downgrade drops a column nobody reads yet\n"
        ops = (
            f"  - op: add_column\n    table: {table}\n"
            f"    column: {{name: syn_{n}, type: {type_}, nullable: true}}\n"
        )
    elif k == 3:
        ident = f"restrict_market_data_instrument_{n}"
        what = "a foreign key's action swapped"
        cost = "the key is replaced NOT VALID and validated (SQLite rebuilds market_data)."
        rollback = "restores ON DELETE CASCADE."
        ops = (
            "  - {op: swap_fk_action, table: market_data, column: instrument_id, "
            "from: cascade, to: restrict}\n"
        )
    elif k == 4:
        ident = f"add_lookup_indexes_{n}"
        what, cost = "two index builds", "two concurrent index builds."
        rollback = "drops both indexes."
        ops = (
            "  - op: create_index\n    table: alert_logs\n"
            f"    name: ix_alert_logs_syn_{base}\n    columns: [severity, timestamp]\n"
            "  - op: create_index\n    table: instruments\n"
            f"    name: ix_instruments_syn_{base}\n    columns: [exchange, symbol]\n"
        )
    elif k == 5:
        ident = f"drop_lookup_indexes_{n}"
        what, cost = "two index drops", "two concurrent index drops."
        rollback = "rebuilds both indexes."
        ops = (
            f"  - {{op: drop_index, table: alert_logs, name: ix_alert_logs_syn_{base}}}\n"
            f"  - {{op: drop_index, table: instruments, name: ix_instruments_syn_{base}}}\n"
        )
    elif k == 6:
        ident = f"widen_acknowledged_by_{n}"
        what, cost = "a varchar widened", "no rewrite on PostgreSQL; SQLite rebuilds alert_logs."
        rollback = "narrows it again."
        ops = (
            "  - {op: alter_column_type, table: alert_logs, column: acknowledged_by, "
            "from: varchar(64), to: varchar(128)}\n"
        )
    else:
        ident = f"restore_cascade_and_width_{n}"
        what = "the cycle undone"
        cost = "a foreign key replaced, alert_logs rewritten (rebuilt on SQLite)."
        rollback = "swaps and widens again."
        ops = (
            "  - {op: swap_fk_action, table: market_data, column: instrument_id, "
            "from: restrict, to: cascade}\n"
            "  - op: alter_column_type\n    table: alert_logs\n    column: acknowledged_by\n"
            "    from: varchar(128)\n    to: varchar(64)\n"
            "    acknowledge:\n"
            "      SG102: alert_logs is small in this synthetic history\n"
            "      SG103: no value is longer than 64 characters\n"
        )
    text = (
        HEADER
        + f"id: {ident}\n"
        + DESCRIPTION.format(n=n, what=what, cost=cost, previous=previous, rollback=rollback)
        + ack
        + "operations:\n"
        + ops
    )
    return ident, text


def schemagen_command() -> list[str]:
    """The ``schemagen`` console script of this interpreter, else ``python -m generator``."""
    script = Path(sys.executable).with_name("schemagen")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "generator"]


def _schemagen(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*schemagen_command(), "--root", str(root), *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


def build_repo(root: Path, n: int, baseline: Path = BASELINE) -> int:
    """A repository of ``n`` changes (the baseline and n - 1 synthetic ones) under ``root``,
    its generated files written once; returns how many files were generated."""
    if n < 1:
        raise ValueError("a history has at least the baseline")
    changes = root / "changes"
    changes.mkdir(parents=True)
    (root / "generated_migrations").mkdir()
    shutil.copyfile(baseline, changes / "0000_baseline.yaml")
    for number in range(1, n):
        ident, text = _change(number)
        (changes / f"{number:04d}_{ident}.yaml").write_text(text, encoding="utf-8")
    proc = _schemagen(root, "generate")
    if proc.returncode != 0:
        raise RuntimeError(f"schemagen generate failed on {n} changes:\n{proc.stderr[-2000:]}")
    return sum(1 for p in (root / "generated_migrations").rglob("*") if p.is_file())


def time_check(root: Path, *extra: str, tool: Path | None = None) -> float:
    """Seconds of one ``schemagen --root ROOT generate --check [EXTRA]``; it must pass.

    ``tool``: a source tree of another version of the tool (its generator/ and templates/),
    run as ``python -m generator`` from there.
    """
    program = [sys.executable, "-m", "generator"] if tool is not None else schemagen_command()
    command = [*program, "--root", str(root), "generate", "--check", *extra]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=tool or root, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"generate --check failed in {root}:\n{proc.stderr[-2000:]}")
    return seconds


def fit(ns: Sequence[float], ts: Sequence[float]) -> dict[str, float]:
    """Least squares ``t = a + b * n``: ``a`` (s), ``b`` (s per change) and R²."""
    if len(ns) != len(ts) or len(set(ns)) < 2:
        raise ValueError("a fit needs at least two distinct sizes")
    mean_n, mean_t = statistics.fmean(ns), statistics.fmean(ts)
    sxx = sum((n - mean_n) ** 2 for n in ns)
    sxy = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, ts, strict=True))
    b = sxy / sxx
    a = mean_t - b * mean_n
    ss_res = sum((t - (a + b * n)) ** 2 for n, t in zip(ns, ts, strict=True))
    ss_tot = sum((t - mean_t) ** 2 for t in ts)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"a_s": a, "b_s": b, "b_ms": b * 1000, "r2": r2}


def predict(result: dict[str, Any], n: int) -> float:
    f = result["fit"]
    return float(f["a_s"] + f["b_s"] * n)


def measure(
    sizes: Sequence[int],
    rounds: int,
    warmup: int,
    progress: Progress,
    workdir: Path | None = None,
    previous: Path | None = None,
) -> dict[str, Any]:
    """Build a repository per size, time its cold and warm checks in rounds, fit the medians.

    Rounds go over the sizes in turn (round-robin, alternating direction), so a slow moment
    of the machine is spread over every size instead of bending one point of the line.
    """
    sizes = sorted(set(sizes))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    loads = [_load_average()]
    probes = [cpu_probe_ms()]
    # The previous tool, where given: its cold check and its warm one (with its own entries
    # in the same cache folder: the tool's sources are in the key).
    modes = ["cold", "warm", *(["previous_cold", "previous"] if previous is not None else [])]
    with tempfile.TemporaryDirectory(prefix="schemagen-gencheck-", dir=workdir) as tmp:
        repos: dict[int, Path] = {}
        files: dict[int, int] = {}
        for n in sizes:
            progress.step(f"gencheck: building {n} changes")
            repos[n] = Path(tmp, f"n{n:04d}")
            files[n] = build_repo(repos[n], n)
        samples: dict[str, dict[int, list[float]]] = {
            mode: {n: [] for n in sizes} for mode in modes
        }
        for r in range(warmup + rounds):
            order = sizes if r % 2 == 0 else list(reversed(sizes))
            for n in order:
                what = f"warm-up {r + 1}/{warmup}" if r < warmup else f"round {r - warmup + 1}"
                progress.step(f"gencheck: {what}, {n} changes")
                for mode in modes if r % 2 == 0 else reversed(modes):
                    seconds = time_check(
                        repos[n],
                        *(COLD_ARGS if mode in ("cold", "previous_cold") else ()),
                        tool=previous if mode.startswith("previous") else None,
                    )
                    if r >= warmup:
                        samples[mode][n].append(seconds)
            loads.append(_load_average())
            probes.append(cpu_probe_ms())
    result = _summary(sizes, files, samples["cold"], GOAL_S)
    result["command"] = "schemagen --root REPO generate --check " + " ".join(COLD_ARGS)
    result["started"] = started
    # The 1-minute load average before the first round and after each: other jobs on the
    # machine (the medians absorb some of it, not all).
    result["load_average"] = loads
    result["cpu_probe_ms"] = probes  # the machine's speed before the rounds and after each
    result["warm"] = _summary(sizes, files, samples["warm"], WARM_GOAL_S)
    result["warm"]["command"] = "schemagen --root REPO generate --check"
    parts = [("cold", result), ("warm", result["warm"])]
    if previous is not None:
        result["previous_cold"] = _summary(sizes, files, samples["previous_cold"], GOAL_S)
        result["previous_cold"]["command"] = (
            "python -m generator --root REPO generate --check " + " ".join(COLD_ARGS)
        )
        result["previous_cold"]["tool"] = previous.name
        result["previous"] = _summary(sizes, files, samples["previous"], WARM_GOAL_S)
        result["previous"]["command"] = "python -m generator --root REPO generate --check"
        result["previous"]["tool"] = previous.name
        parts.append(("previous cold", result["previous_cold"]))
        parts.append(("previous warm", result["previous"]))
    for label, part in parts:
        line = part["fit"]
        progress.note(
            f"gencheck {label}: t = {line['a_s']:.3f} s + {line['b_ms']:.3f} ms x N "
            f"(R² {line['r2']:.4f})"
        )
    return result


def _summary(
    sizes: Sequence[int], files: dict[int, int], samples: dict[int, list[float]], goal_s: float
) -> dict[str, Any]:
    """The medians per size, their fit and the goal at GOAL_N changes."""
    cases: list[dict[str, Any]] = []
    for n in sizes:
        median = statistics.median(samples[n])
        cases.append(
            {
                "suite": "gencheck",
                "name": f"{n} changes",
                "changes": n,
                "files": files[n],
                "median_s": median,
                "samples_s": samples[n],
                "rounds": len(samples[n]),
                "per_change_ms": median / n * 1000,
            }
        )
    line = fit([c["changes"] for c in cases], [c["median_s"] for c in cases])
    result: dict[str, Any] = {
        "sizes": cases,
        "fit": line,
        "goal_s": goal_s,
        "goal_changes": GOAL_N,
    }
    at_goal = next((c for c in cases if c["changes"] == GOAL_N), None)
    result["goal_median_s"] = at_goal["median_s"] if at_goal else None
    result["goal_predicted_s"] = predict(result, GOAL_N)
    return result


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not on this platform
        return None


def run(s: Settings, progress: Progress) -> dict[str, Any]:
    previous = Path(s.gencheck_previous) if s.gencheck_previous else None
    return measure(s.gencheck_sizes, s.rounds, s.warmup, progress, previous=previous)
