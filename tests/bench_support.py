"""Running ``python -m benchmarks --quick`` in-process, for the benchmark tests.

One quick run of every suite on every dialect serves all the tests that read its results
(the ``quick_bench`` fixture, once per test process: conftest puts its users in one xdist
group, so they share the run instead of each repeating its suites)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from conftest import PG_ADMIN_URL, postgres_problem

from benchmarks import cli

# the suites a run without PostgreSQL can do: the database suites on SQLite, gencheck
WITHOUT_POSTGRES = ("insert", "calc", "query", "migrate", "gencheck")


def _run(argv: list[str]) -> dict[str, Any]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["--quick", "--json", "--no-progress", *argv]) == 0
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


def quick_all(workdir: Path) -> dict[str, Any]:
    """The JSON document of one ``--quick`` run of every suite on every dialect, SQLite
    scratch files under ``workdir``. Without PostgreSQL: SQLite and gencheck alone, suite by
    suite, merged (the PostgreSQL tests then skip; in CI conftest has failed the session)."""
    where = ["--workdir", str(workdir), "--pg-url", PG_ADMIN_URL]
    if not postgres_problem():
        return _run(["--dialect", "all", *where])
    doc = _run(["--dialect", "sqlite", "--suite", WITHOUT_POSTGRES[0], *where])
    for suite in WITHOUT_POSTGRES[1:]:
        doc = cli.merged(doc, _run(["--dialect", "sqlite", "--suite", suite, *where]))
    doc["dialects"] = ["sqlite"]
    return doc


def quick_results(quick_bench: tuple[dict[str, Any], Path], dialect: str) -> dict[str, Any]:
    """The shared quick run's document, skipping a dialect it could not run."""
    doc = quick_bench[0]
    if dialect not in doc["dialects"]:
        pytest.skip(postgres_problem() or f"no {dialect} in the quick run")
    return doc


def one_dialect(doc: dict[str, Any], dialect: str) -> dict[str, Any]:
    """The document as a run on ``dialect`` alone would have written it (no tool suites)."""
    return {**doc, "dialects": [dialect], "results": {dialect: doc["results"][dialect]}}
