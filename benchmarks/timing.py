"""Alternating rounds, medians, result records and the progress line on stderr."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

SIDES = ("baseline", "head")


@dataclass
class Progress:
    """One status line on stderr: rewritten in place on a terminal, one line per step elsewhere."""

    enabled: bool = True
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    _started: float = field(default_factory=time.perf_counter)
    _width: int = 0

    def _elapsed(self) -> str:
        return f"[{time.perf_counter() - self._started:6.1f}s]"

    def step(self, text: str) -> None:
        """Transient status (overwritten by the next step on a terminal, hidden elsewhere)."""
        if not self.enabled or not self.stream.isatty():
            return
        line = f"{self._elapsed()} {text}"
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def note(self, text: str) -> None:
        """A line that stays."""
        if not self.enabled:
            return
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(f"{self._elapsed()} {text}\n")
        self.stream.flush()


def alternate(
    runners: Mapping[str, Callable[[], float]],
    rounds: int,
    warmup: int,
    progress: Progress,
    label: str,
) -> dict[str, list[float]]:
    """Run each runner once per round, alternating which side goes first, after ``warmup``
    untimed rounds; every runner returns the seconds it measured itself (setup excluded)."""
    names = list(runners)
    for w in range(warmup):
        for name in names:
            progress.step(f"{label}: warm-up {w + 1}/{warmup} {name}")
            runners[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            progress.step(f"{label}: round {r + 1}/{rounds} {name}")
            samples[name].append(runners[name]())
    return samples


def side(
    samples: list[float], *, rows: int, per: int = 1, timed_out: bool = False
) -> dict[str, Any]:
    """One side of a case: the median of ``samples`` (seconds per round), rows/s, latency.

    ``rows`` rows are processed per round; ``per`` is how many operations a round is made of
    (batches, executions), so latency is the median round divided by ``per``.
    """
    median = statistics.median(samples)
    return {
        "median_s": median,
        "samples_s": samples,
        "rounds": len(samples),
        "rows": rows,
        "rows_per_s": rows / median if median > 0 else None,
        "latency_ms": median / per * 1000,
        "timed_out": timed_out,
    }


def case(
    suite: str, name: str, baseline: dict[str, Any], head: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A result: both sides and ``ratio`` = head median / baseline median (below 1: head is
    faster)."""
    return {
        "suite": suite,
        "name": name,
        **extra,
        "baseline": baseline,
        "head": head,
        "ratio": head["median_s"] / baseline["median_s"],
    }


def clock() -> float:
    return time.perf_counter()


PROBE_ADDS = 2_000_000


def cpu_probe_ms(rounds: int = 3) -> float:
    """How fast a core of this machine runs Python now: the median over ``rounds`` of a fixed
    pure-Python loop (``PROBE_ADDS`` additions), in ms. The same code on the same machine ran
    a third slower or faster from one hour to the next here (the host's other load), so a
    suite records this beside its timings: a reader can tell a slower tool from a slower
    machine."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(PROBE_ADDS):
            total += i
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)
