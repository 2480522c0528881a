"""Benchmark sizes: the defaults of a full run and of ``--quick``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Settings:
    prefill: int = 1_000_000  # ticks in the pre-filled databases (the target)
    prefill_alerts: int = 500_000  # alerts in the pre-filled databases
    insert_rows: int = 20_000  # rows inserted per round, per case
    batch: int = 1_000  # rows per executemany (one transaction each)
    calc_rows: int = 1_000_000  # ticks per calc round (at most: the live ones, benchmarks/calc.py)
    ma_window: int = 20  # moving-average window, in ticks
    rounds: int = 7  # timed rounds per side (the median is reported)
    warmup: int = 1  # untimed rounds per side before them
    query_round_s: float = 0.2  # a query round repeats the query for at least this long
    query_timeout_s: float = 300.0  # one execution slower than this is reported as timed out
    migrate_rounds: int = 3  # migrate suite: timed upgrades (and downgrades) per step
    migrate_idle_s: float = 1.0  # migrate suite: concurrent load measured with no migration
    migrate_pause_s: float = 0.001  # migrate suite: pause between two loader statements
    migrate_budget_s: float = 20.0  # migrate suite: no further round once a step's took this
    migrate_reader_s: float = 2.0  # migrate suite: a reader transaction held open this long
    # ops suite: the writer in a process of its own (False: a thread of the migrating process,
    # which shares its interpreter lock; benchmarks/ops.py Writer)
    writer_process: bool = True
    # migrate suite, PostgreSQL: change 0003's online and blocking paths side by side, under
    # concurrent clients, at each (ticks, alerts) size (benchmarks/typechange.py)
    paths_sizes: tuple[tuple[int, int], ...] = ((1_000_000, 500_000),)
    # before each path, the longest wait for a quiet disk (databases.settle_disk)
    paths_settle_s: float = 120.0
    gencheck_sizes: tuple[int, ...] = (50, 100, 200, 300, 400, 500)  # changes per synthetic repo
    # gencheck: a source tree of an earlier tool (its generator/ and templates/, e.g. from
    # `git archive REV generator templates`) timed in the same rounds, for comparison
    gencheck_previous: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


FULL = Settings()
QUICK = Settings(
    prefill=2_000,
    prefill_alerts=1_000,
    insert_rows=2_000,
    calc_rows=2_000,
    rounds=2,  # a smoke run: the tests read its document's shape, not its numbers
    warmup=0,
    query_round_s=0.005,
    query_timeout_s=30.0,
    migrate_rounds=1,
    migrate_idle_s=0.2,
    migrate_reader_s=1.0,
    paths_sizes=((2_000, 1_000),),
    paths_settle_s=2.0,
    gencheck_sizes=(5, 10, 20),
)


def choose(
    quick: bool,
    rows: int | None = None,
    prefill: int | None = None,
    prefill_alerts: int | None = None,
    rounds: int | None = None,
) -> Settings:
    """The sizes for a run: ``--quick`` or the full defaults, then the explicit overrides.

    ``rows`` sets both the rows inserted per round and the rows of a calculation;
    ``prefill`` without ``prefill_alerts`` keeps the issue's 2:1 ratio of ticks to alerts.
    """
    s = QUICK if quick else FULL
    if rows is not None:
        s = replace(s, insert_rows=rows, calc_rows=rows)
    if prefill is not None:
        s = replace(s, prefill=prefill, prefill_alerts=prefill // 2)
    if prefill_alerts is not None:
        s = replace(s, prefill_alerts=prefill_alerts)
    if rounds is not None:
        s = replace(s, rounds=rounds)
    return s
