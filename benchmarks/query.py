"""Query suite: every query of :mod:`marketdata.queries` at the baseline and at head.

For each query, on the pre-filled databases: the plan (``EXPLAIN QUERY PLAN`` on SQLite,
``EXPLAIN`` on PostgreSQL) and the indexes it uses, the median time of one execution (the
catalogue's Core statement, executed and fetched; each round repeats it for at least
``query_round_s``), and whether the catalogue function returns the same rows at both
revisions (prices as 4-place strings, so DECIMAL and FLOAT rows compare equal).

Connections are sync (pysqlite / psycopg), as the catalogue's functions take them; psycopg's
automatic prepare is off so that every execution is planned as ``EXPLAIN`` shows it. One
execution slower than ``query_timeout_s`` is cancelled and reported as timed out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from benchmarks import data
from benchmarks.databases import REVISIONS, BenchDatabase, Databases
from benchmarks.settings import Settings
from benchmarks.timing import Progress, alternate, case, clock, side
from marketdata import queries
from marketdata.db import install_sqlite_listeners


class Explain(Executable, ClauseElement):
    """``EXPLAIN [QUERY PLAN] <statement>``, with the statement's parameters bound as usual."""

    inherit_cache = False

    def __init__(self, statement: sa.Select[Any], prefix: str) -> None:
        self.statement = statement
        self.prefix = prefix


@compiles(Explain)
def _compile_explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    sql = f"{element.prefix} {compiler.process(element.statement, **kw)}"
    # The plan's rows are not the statement's: no result processing by the statement's types.
    compiler._result_columns = []
    return sql


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    catalogue: str  # the function of marketdata.queries
    statement: Callable[[bool], sa.Select[Any]]  # live_only -> the Core statement
    function: Callable[[sa.Connection], list[dict[str, Any]]]  # the catalogue call
    # a soft-delete query (purge / restore): only revisions with deleted_at have it, so it is
    # compared phase 1 (0004, full deleted_at index) against head (partial index)
    soft_delete: bool = False


def catalogue(ticks: int, alerts: int) -> list[Query]:
    """Every catalogue query, with arguments that fit ``ticks`` / ``alerts`` pre-filled rows:
    one hour of ticks and one day of alerts from the middle of the series."""
    t0 = data.START + timedelta(seconds=ticks // 2)
    t1 = t0 + timedelta(hours=1)
    a0 = data.START + timedelta(seconds=7 * (alerts // 2))
    a1 = a0 + timedelta(days=1)
    # data.soft_delete_some: the oldest 1 % deleted a day after their timestamp
    tick_cut = data.START + timedelta(days=1, seconds=ticks // 200)
    alert_cut = data.START + timedelta(days=1, seconds=7 * (alerts // 200))
    return [
        Query(
            "latest_ticks",
            "latest tick per instrument",
            "latest_ticks",
            queries.latest_ticks_statement,
            queries.latest_ticks,
        ),
        Query(
            "ticks_in_window",
            "ticks of instrument 1 in one hour",
            "ticks_in_window",
            lambda live: queries.ticks_in_window_statement(1, t0, t1, live),
            lambda c: queries.ticks_in_window(c, 1, t0, t1),
        ),
        Query(
            "ohlc",
            "OHLC of every instrument over one hour",
            "ohlc",
            lambda live: queries.ohlc_statement(t0, t1, None, live),
            lambda c: queries.ohlc(c, t0, t1),
        ),
        Query(
            "ohlc_instrument",
            "OHLC of instrument 2 over one hour",
            "ohlc",
            lambda live: queries.ohlc_statement(t0, t1, 2, live),
            lambda c: queries.ohlc(c, t0, t1, instrument_id=2),
        ),
        Query(
            "rule_alerts",
            "alerts of rule 1 in one day",
            "rule_alerts",
            lambda live: queries.rule_alerts_statement(1, a0, a1, live),
            lambda c: queries.rule_alerts(c, 1, a0, a1),
        ),
        Query(
            "alerts_by_status",
            "newest 100 acknowledged alerts",
            "alerts_by_status",
            lambda live: queries.alerts_by_status_statement("acknowledged", 100, live),
            lambda c: queries.alerts_by_status(c, "acknowledged", limit=100),
        ),
        Query(
            "unacknowledged_alerts",
            "unacknowledged alerts of instrument 1",
            "unacknowledged_alerts",
            lambda live: queries.unacknowledged_alerts_statement(1, live),
            lambda c: queries.unacknowledged_alerts(c, 1),
        ),
        Query(
            "purge_ticks",
            "ticks soft-deleted before a cutoff (half of them)",
            "deleted_ticks",
            lambda live: queries.deleted_ticks_statement(before=tick_cut),
            lambda c: queries.deleted_ticks(c, before=tick_cut),
            soft_delete=True,
        ),
        Query(
            "restore_alerts",
            "alerts soft-deleted since a time (half of them)",
            "deleted_alerts",
            lambda live: queries.deleted_alerts_statement(since=alert_cut),
            lambda c: queries.deleted_alerts(c, since=alert_cut),
            soft_delete=True,
        ),
    ]


# --- plans --------------------------------------------------------------------------------

_SQLITE_INDEX = re.compile(r"USING (?:COVERING )?INDEX (\w+)")
_SQLITE_FULL = re.compile(r"^SCAN (\w+)$")
_PG_INDEX = re.compile(
    r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)"
)
_PG_FULL = re.compile(r"Seq Scan on (\w+)")


def plan_lines(conn: sa.Connection, statement: sa.Select[Any]) -> list[str]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(Explain(statement, "EXPLAIN QUERY PLAN")).all()
        depth: dict[int, int] = {}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + str(detail))
        return lines
    return [str(row[0]) for row in conn.execute(Explain(statement, "EXPLAIN")).all()]


def plan_summary(lines: list[str], dialect: str) -> dict[str, list[str]]:
    """The indexes a plan uses and the tables it scans in full."""
    indexes: set[str] = set()
    full: set[str] = set()
    for line in lines:
        text = line.strip()
        if dialect == "sqlite":
            indexes.update(_SQLITE_INDEX.findall(text))
            if "USING INTEGER PRIMARY KEY" in text:
                indexes.add("(rowid)")
            full.update(_SQLITE_FULL.findall(text))
        else:
            indexes.update(_PG_INDEX.findall(text))
            full.update(_PG_FULL.findall(text))
    return {"indexes": sorted(indexes), "full_scans": sorted(full)}


# --- execution ----------------------------------------------------------------------------


def _fetch_all(conn: sa.Connection, statement: sa.Select[Any]) -> list[sa.Row[Any]]:
    return list(conn.execute(statement).all())


class QueryTimeout(Exception):
    pass


class _Session:
    """One sync connection to one database, with a per-execution time limit."""

    def __init__(self, bench: BenchDatabase, timeout_s: float) -> None:
        args = {"prepare_threshold": None} if bench.dialect == "postgresql" else {}
        self.engine = sa.create_engine(bench.url, poolclass=sa.pool.NullPool, connect_args=args)
        if bench.dialect == "sqlite":
            install_sqlite_listeners(self.engine)
        self.conn = self.engine.connect()
        self.timeout_s = timeout_s
        self.deadline = math.inf
        if bench.dialect == "sqlite":
            raw: Any = self.conn.connection.dbapi_connection
            raw.set_progress_handler(lambda: int(clock() > self.deadline), 10_000)
        else:
            self.conn.exec_driver_sql(f"SET statement_timeout = {int(timeout_s * 1000)}")
            self.conn.commit()
        self.live_only = queries.has_soft_delete(self.conn)
        self.conn.rollback()

    def run(self, fn: Callable[[], Any]) -> Any:
        self.deadline = clock() + self.timeout_s
        try:
            return fn()
        except sa.exc.OperationalError as exc:
            text = str(exc.orig)
            if "interrupted" in text or "statement timeout" in text:
                raise QueryTimeout(text) from exc
            raise
        finally:
            self.deadline = math.inf
            self.conn.rollback()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def _measure(
    sessions: dict[str, _Session], q: Query, s: Settings, progress: Progress, label: str
) -> dict[str, Any]:
    """One query on every session given, alternating rounds; the case compares the first
    (baseline, or phase 1 for a soft-delete query) with head, other sides are kept too."""
    plans, results, timed_out = {}, {}, {}
    runners: dict[str, Callable[[], float]] = {}
    for revision, session in sessions.items():
        statement = q.statement(session.live_only)
        lines = session.run(partial(plan_lines, session.conn, statement))
        plans[revision] = {"plan": lines, **plan_summary(lines, session.conn.dialect.name)}
        progress.step(f"{label}: results {revision}")
        try:
            results[revision] = session.run(partial(q.function, session.conn))
            started = clock()
            session.run(partial(_fetch_all, session.conn, statement))
            first_s = clock() - started
        except QueryTimeout:
            timed_out[revision] = True
            continue
        repeat = max(1, min(1000, math.ceil(s.query_round_s / max(first_s, 1e-6))))

        def round_(
            st: sa.Select[Any] = statement, se: _Session = session, k: int = repeat
        ) -> float:
            def go() -> float:
                started = clock()
                for _ in range(k):
                    se.conn.execute(st).all()
                return (clock() - started) / k

            return float(se.run(go))

        runners[revision] = round_
    samples = alternate(runners, s.rounds, 0, progress, label) if runners else {}
    sides = {}
    for revision in sessions:
        rows = len(results.get(revision, []))
        if revision in timed_out:
            sides[revision] = side([s.query_timeout_s], rows=rows, timed_out=True)
        else:
            sides[revision] = side(samples[revision], rows=rows)
    first, *_ = sessions
    answers = list(results.values())
    equal = all(r == answers[0] for r in answers) if len(answers) == len(sessions) else None
    extra: dict[str, Any] = {}
    if "phase1" in sides and first != "phase1":
        extra["phase1"] = sides["phase1"]
        extra["phase1_ratio"] = sides["phase1"]["median_s"] / sides[first]["median_s"]
    return case(
        "query",
        q.name,
        sides[first],
        sides["head"],
        description=q.description,
        function=q.catalogue,
        compared=data.REVISIONS[first],
        group="soft_delete" if q.soft_delete else "catalogue",
        results_equal=equal,
        result_rows=len(answers[0]) if answers else 0,
        plans=plans,
        **extra,
    )


def run(dbs: Databases, s: Settings, progress: Progress) -> list[dict[str, Any]]:
    revisions = [r for r in REVISIONS if (r, "filled") in dbs.all]
    filled = {revision: dbs.get(revision, "filled") for revision in revisions}
    sessions = {revision: _Session(bench, s.query_timeout_s) for revision, bench in filled.items()}
    out = []
    try:
        for q in catalogue(filled["baseline"].ticks, filled["baseline"].alerts):
            label = f"{dbs.dialect} query {q.name}"
            chosen = {
                r: session
                for r, session in sessions.items()
                if not q.soft_delete or r != "baseline"
            }
            if len(chosen) < 2:
                continue  # a soft-delete query without the phase-1 database
            result = _measure(chosen, q, s, progress, label)
            out.append(result)
            used = " -> ".join(",".join(result["plans"][r]["indexes"]) or "(none)" for r in chosen)
            progress.note(
                f"{label}: head/{result['compared']} {result['ratio']:.2f}, "
                f"same results: {result['results_equal']}, indexes {used}"
            )
    finally:
        for session in sessions.values():
            session.close()
    return out
