"""``python -m benchmarks``: build the scratch databases, run the suites, print or report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks import calc, gencheck, insert, migrate, ops, query, report, typechange
from benchmarks.databases import REVISIONS, Databases, postgres_admin_url
from benchmarks.settings import Settings, choose
from benchmarks.timing import Progress

SUITES: dict[str, Callable[[Databases, Settings, Progress], list[dict[str, Any]]]] = {
    # Read-only suites first: the insert suite writes (and puts back) the pre-filled tables.
    "query": query.run,
    "calc": calc.run,
    "insert": insert.run,
    "migrate": migrate.run,  # copies the pre-filled baseline into fresh databases per round
}
# Dialect-independent suites (the tool's own speed): run once, after the database suites,
# their results under results["tool"] instead of a dialect.
TOOL_SUITES: dict[str, Callable[[Settings, Progress], dict[str, Any]]] = {
    "gencheck": gencheck.run,
}
# PostgreSQL suites on a scratch database of their own (not the pre-filled market data): run
# after the others, their results under results["tool"] too.
OWN_DB_SUITES: dict[str, Callable[[Settings, Progress, str], dict[str, Any]]] = {
    "ops": ops.run,
}
TOOL = "tool"
DIALECTS = ("sqlite", "postgresql")
# the suites that also measure revision 0004 (phase 1 as specified) beside baseline and head
PHASE1_SUITES = {"insert", "query"}
FORMAT_VERSION = 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="INSERT, calculation and query benchmarks: revision 0000 (baseline) against "
        "head, in alternating rounds on the same run, SQLite and PostgreSQL.",
    )
    p.add_argument("--suite", choices=[*SUITES, *TOOL_SUITES, *OWN_DB_SUITES, "all"], default="all")
    p.add_argument("--dialect", choices=[*DIALECTS, "all"], default="all")
    p.add_argument("--all", action="store_true", help="every suite on every dialect (the default)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--rows", type=int, help="rows per insert round and per calculation")
    p.add_argument("--prefill", type=int, help="ticks in the pre-filled tables (alerts: half)")
    p.add_argument("--prefill-alerts", type=int, help="alerts in the pre-filled tables")
    p.add_argument("--rounds", type=int, help="timed rounds per side")
    p.add_argument(
        "--pg-url",
        help="PostgreSQL server to create scratch databases on (default: TEST_POSTGRES_URL, "
        "else postgresql+psycopg://postgres@127.0.0.1:5432/test)",
    )
    p.add_argument("--workdir", type=Path, help="directory for the SQLite scratch files")
    p.add_argument("--keep", action="store_true", help="keep the scratch databases")
    p.add_argument(
        "--gencheck-previous",
        type=Path,
        metavar="DIR",
        help="gencheck: also time the tool whose generator/ and templates/ are in DIR "
        "(e.g. from `git archive REV generator templates`) in the same rounds",
    )
    p.add_argument(
        "--report",
        type=Path,
        help="write a Markdown report here, its charts and results.json beside it",
    )
    p.add_argument(
        "--from-json",
        type=Path,
        help="skip the run: report on the results of an earlier --json / results.json",
    )
    p.add_argument(
        "--into",
        type=Path,
        metavar="RESULTS",
        help="merge this run's suites into an earlier results.json (replacing the same "
        "suites) before reporting, e.g. --suite ops --into docs/performance/results.json "
        "--report docs/performance.md",
    )
    p.add_argument(
        "--paths-sizes",
        metavar="TICKS:ALERTS[,TICKS:ALERTS]",
        help="migrate suite on PostgreSQL: the sizes at which change 0003's online and blocking "
        "paths run side by side under concurrent clients (default: the --prefill size)",
    )
    p.add_argument(
        "--paths-only",
        action="store_true",
        help="migrate suite: only the side-by-side run of 0003's two paths (not every step)",
    )
    p.add_argument("--no-progress", action="store_true", help="nothing on stderr")
    return p


def _note(progress: Progress, dialect: str, text: str) -> None:
    progress.note(f"{dialect}: {text}")


def environment(dialects: Sequence[str], pg_url: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {
            name: _version(name)
            for name in ("sqlalchemy", "aiosqlite", "asyncpg", "psycopg", "numpy", "alembic")
        },
    }
    if "postgresql" in dialects:
        engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                env["postgresql"] = conn.exec_driver_sql("SHOW server_version").scalar()
                env["postgresql_settings"] = {
                    name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                    for name in ("shared_buffers", "synchronous_commit", "fsync", "jit")
                }
        finally:
            engine.dispose()
    return env


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _pg_problem(url: str) -> str | None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # any failure to connect means "unusable"
        return f"PostgreSQL at {sa.make_url(url)!r} unreachable: {exc}"
    finally:
        engine.dispose()
    return None


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Run the chosen suites on the chosen dialects; the result document (see docs)."""
    every = [*SUITES, *TOOL_SUITES, *OWN_DB_SUITES]
    suites = every if args.all or args.suite == "all" else [args.suite]
    dialects = list(DIALECTS) if args.all or args.dialect == "all" else [args.dialect]
    if not any(name in SUITES for name in suites):
        dialects = []  # a tool suite alone needs no database
    s = choose(args.quick, args.rows, args.prefill, args.prefill_alerts, args.rounds)
    if args.paths_sizes:
        s = replace(s, paths_sizes=_sizes(args.paths_sizes))
    elif args.prefill is not None or args.prefill_alerts is not None:
        s = replace(s, paths_sizes=((s.prefill, s.prefill_alerts),))
    paths = "migrate" in suites and (args.paths_only or "postgresql" in dialects)
    if args.paths_only:
        suites = [x for x in suites if x != "migrate"] if args.suite == "all" else suites
        dialects = [] if suites == ["migrate"] else dialects
    if args.gencheck_previous is not None:
        s = replace(s, gencheck_previous=str(args.gencheck_previous.resolve()))
    if args.workdir is not None and not args.workdir.is_dir():
        raise SystemExit(f"error: --workdir {args.workdir}: no such directory")
    pg_url = postgres_admin_url(args.pg_url)
    if "postgresql" in dialects or set(suites) & set(OWN_DB_SUITES) or paths:
        problem = _pg_problem(pg_url)
        if problem:
            raise SystemExit(f"error: {problem} (use --dialect sqlite to run without it)")
    started = datetime.now(UTC)
    results: dict[str, dict[str, Any]] = {}
    for dialect in dialects:
        dbs = Databases(dialect, pg_url, args.workdir, args.keep)
        try:
            revisions = REVISIONS if set(suites) & PHASE1_SUITES else ("baseline", "head")
            dbs.build(
                s.prefill,
                s.prefill_alerts,
                partial(_note, progress, dialect),
                revisions,
            )
            results[dialect] = {}
            for name in suites:
                if name in SUITES and not (name == "migrate" and args.paths_only):
                    results[dialect][name] = SUITES[name](dbs, s, progress)
        finally:
            if args.keep:
                progress.note(f"{dialect}: kept {dbs.describe()}")
            dbs.drop()
    if paths:
        # 0003's two paths side by side, on databases of their own (results["tool"], so a
        # --paths-only run merges into a page without replacing the per-step results)
        results.setdefault(TOOL, {})["migrate_paths"] = typechange.run(s, progress, pg_url)
        results[TOOL]["migrate_paths"]["run_command"] = command_line()
    for name in suites:
        if name in TOOL_SUITES:
            results.setdefault(TOOL, {})[name] = TOOL_SUITES[name](s, progress)
            # the suite's own command: its result may be merged into another run's page
            results[TOOL][name]["run_command"] = command_line()
        if name in OWN_DB_SUITES:
            results.setdefault(TOOL, {})[name] = OWN_DB_SUITES[name](s, progress, pg_url)
            results[TOOL][name]["run_command"] = command_line()
    return {
        "format": FORMAT_VERSION,
        "command": command_line(),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "suites": suites,
        "dialects": dialects,
        "settings": s.to_json(),
        "environment": environment(dialects, pg_url),
        "results": results,
    }


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in text.split(","):
        ticks, sep, alerts = part.strip().partition(":")
        try:
            out.append((int(ticks), int(alerts) if sep else int(ticks) // 2))
        except ValueError:
            raise SystemExit(
                f"error: --paths-sizes: {part!r} is not TICKS:ALERTS (e.g. 1000000:500000)"
            ) from None
    return tuple(out)


def merged(earlier: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``earlier`` with the suites of ``new`` put in (each suite's result replaced whole);
    the page keeps the earlier run's command, and each merged suite carries its own."""
    out = dict(earlier)
    results = {d: dict(suites) for d, suites in earlier["results"].items()}
    for dialect, suites in new["results"].items():
        results.setdefault(dialect, {}).update(suites)
    out["results"] = results
    out["suites"] = [*earlier["suites"], *(x for x in new["suites"] if x not in earlier["suites"])]
    return out


def command_line() -> str:
    return shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]])


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress = Progress(enabled=not args.no_progress)
    doc = json.loads(args.from_json.read_text()) if args.from_json else run(args, progress)
    if args.into:
        if args.into.exists():
            doc = merged(json.loads(args.into.read_text()), doc)
        args.into.parent.mkdir(parents=True, exist_ok=True)
        args.into.write_text(json.dumps(doc, indent=1) + "\n")
    if args.report:
        written = report.write(doc, args.report)
        progress.note("wrote " + ", ".join(str(p) for p in written))
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not args.report:
        sys.stdout.write(report.tables(doc))
    return 0
