"""Running ``python -m benchmarks --quick`` in-process, for the benchmark tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import PG_ADMIN_URL, postgres_problem

from benchmarks import cli


def quick_run(
    dialect: str, workdir: Path, capsys: pytest.CaptureFixture[str], suite: str | None = None
) -> dict[str, Any]:
    """The JSON document of a ``--quick`` run of ``suite`` (every suite: None) on
    ``dialect``, SQLite scratch files under ``workdir``. Without PostgreSQL, a PostgreSQL run
    skips (and in CI, where PostgreSQL must be up, conftest has failed the session already)."""
    if dialect == "postgresql" and postgres_problem():
        pytest.skip(postgres_problem() or "")
    argv = ["--quick", "--json", "--no-progress", "--dialect", dialect]
    argv += ["--suite", suite] if suite else []
    argv += ["--workdir", str(workdir), "--pg-url", PG_ADMIN_URL]
    assert cli.main(argv) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc
