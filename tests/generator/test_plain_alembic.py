"""Plain ``alembic upgrade head`` (generated_migrations/env.py) fails like ``schemagen``
does: one line naming the problem, a non-zero exit code, no traceback, no password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from generator.cli import Exit


def _alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMAGEN_")}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    # Alembic's own INFO lines aside
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith("INFO ")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("nonsense", Exit.USAGE, "cannot parse the database URL 'nonsense'"),
        ("mysql://x@y/z", Exit.USAGE, "unsupported database 'mysql'"),
        ("postgresql+pg8000://u:Hunter2@127.0.0.1/x", Exit.USAGE, "driver is not installed"),
        (
            "postgresql+psycopg://u:Hunter2@127.0.0.1:1/x",
            Exit.DATABASE,
            "cannot connect to the database",
        ),
        ("sqlite:////nonexistent/dir/x.db", Exit.DATABASE, "cannot connect to the database"),
    ],
)
def test_a_bad_database_url_is_one_line_and_an_exit_code(url: str, code: int, says: str) -> None:
    """Defect: each of these printed Alembic's traceback (exit 1)."""
    result = _alembic(url, "upgrade", "head")
    line = _one_line(result)
    assert result.returncode == code, result.stderr
    assert line.startswith("error: ")
    assert line in result.stderr
    assert says in line
    assert "Hunter2" not in result.stdout + result.stderr


def test_a_database_off_the_graph_is_one_line(db_url: str) -> None:
    """A database problem after connecting (a revision the project does not know) on both
    dialects: one line, exit 4."""
    from support import execute, seed_demo

    seed_demo(db_url)
    execute(db_url, "UPDATE alembic_version SET version_num = 'zzzz'")
    result = _alembic(db_url, "upgrade", "head")
    line = _one_line(result)
    assert result.returncode != 0
    assert "zzzz" in line


def test_the_programmatic_api_still_raises(tmp_path: Path) -> None:
    """schemagen and pytest-alembic call Alembic themselves and handle the exception."""
    from alembic import command
    from alembic.config import Config

    from generator import db

    config = Config()
    config.set_main_option("script_location", str(ROOT / "generated_migrations"))
    config.attributes["url"] = "nonsense"
    with pytest.raises(db.UrlError):
        command.upgrade(config, "head")
