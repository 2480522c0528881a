"""The Alembic environment as the ecosystem expects it: pytest-alembic's four built-in tests
pass against this project's environment on both dialects (pytest-alembic hands env.py an
Engine in ``config.attributes["connection"]``), plain ``alembic upgrade head && alembic
check`` exits 0, and ``alembic revision`` writes a working hand-written revision."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config

# The four tests pytest-alembic runs by default, collected here against the fixtures below.
from pytest_alembic.tests import (  # noqa: F401
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from support import ROOT, copy_project

ALEMBIC = str(Path(sys.executable).with_name("alembic"))


@pytest.fixture
def alembic_config() -> Config:
    """This repository's alembic.ini (its env.py finds the configured models)."""
    return Config(str(ROOT / "alembic.ini"))


@pytest.fixture
def alembic_engine(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _alembic(cwd: Path, url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [ALEMBIC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_alembic_upgrade_head_then_check_exits_0(db_url: str) -> None:
    up = _alembic(ROOT, db_url, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    check = _alembic(ROOT, db_url, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout


def test_alembic_check_sees_a_model_the_migrations_lack(db_url: str, tmp_path: Path) -> None:
    """The comparison is real: a table the models have and the database lacks fails check."""
    project = copy_project(tmp_path / "p")
    shutil.copy(ROOT / "alembic.ini", project / "alembic.ini")
    (project / "app.py").write_text(
        "import sqlalchemy as sa\n"
        "from marketdata.base import Base\n"
        "sa.Table('extra', Base.metadata, sa.Column('id', sa.Integer, primary_key=True))\n"
        "metadata = Base.metadata\n",
        encoding="utf-8",
    )
    (project / "schemagen.toml").write_text('metadata = "app:metadata"\n', encoding="utf-8")
    # marketdata is not installed: the copy imports it from this checkout
    (project / "marketdata").symlink_to(ROOT / "marketdata")
    assert _alembic(project, db_url, "upgrade", "head").returncode == 0
    check = _alembic(project, db_url, "check")
    assert check.returncode != 0
    assert "add_table" in check.stdout + check.stderr
    assert "Traceback" not in check.stderr


def test_alembic_check_without_configured_models_says_what_to_set(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "p")
    shutil.copy(ROOT / "alembic.ini", project / "alembic.ini")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert _alembic(project, url, "upgrade", "head").returncode == 0
    check = _alembic(project, url, "check")
    assert check.returncode != 0
    said = check.stdout + check.stderr  # alembic prints its FAILED line on stdout
    assert "set metadata" in said, said
    assert str(project / "schemagen.toml") in said
    assert "schemagen new" in said
    assert "Traceback" not in said


def test_alembic_revision_writes_a_hand_written_revision_that_runs(
    db_url: str, tmp_path: Path
) -> None:
    project = copy_project(tmp_path / "p")
    shutil.copy(ROOT / "alembic.ini", project / "alembic.ini")
    made = _alembic(project, None, "revision", "-m", "add a note")
    assert made.returncode == 0, made.stderr
    (written,) = [p for p in (project / "generated_migrations/versions").glob("*_add_a_note.py")]
    text = written.read_text(encoding="utf-8")
    assert "down_revision: str | Sequence[str] | None = '0005'" in text
    assert "schemagen new" in text
    assert _alembic(project, db_url, "upgrade", "head").returncode == 0
    current = _alembic(project, db_url, "current")
    assert written.name.split("_")[0] in current.stdout
    assert _alembic(project, db_url, "downgrade", "0005").returncode == 0
