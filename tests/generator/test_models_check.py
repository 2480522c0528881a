"""`schemagen check`: the application's models against the schema the specs build at head;
exit 1 while they differ, 0 again once a change spec catches up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from generator.cli import Exit

pytestmark = pytest.mark.db  # a scratch SQLite database at least
SCHEMAGEN = str(Path(sys.executable).with_name("schemagen"))
BASELINE = """\
id: create_shop
description: |
  Customers.
operations:
  - op: create_table
    name: customers
    columns:
      - {name: id, type: bigint, primary_key: true}
      - {name: email, type: varchar(255), nullable: false}
"""
MODELS = """\
import sqlalchemy as sa

metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(),
              primary_key=True),
    sa.Column("email", sa.String(255), nullable=False),
{extra})
"""
ADD_NOTE = """\
id: add_note
description: |
  Customers get a note.
operations:
  - op: add_column
    table: customers
    column: {name: note, type: text, nullable: true}
"""


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [SCHEMAGEN, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_this_repositorys_models_agree_with_its_specs(db_url: str) -> None:
    """On each dialect: the specs' head built in an empty database of it (--url)."""
    done = _run(ROOT, "check", "--url", db_url)
    assert done.returncode == Exit.OK, done.stdout + done.stderr
    assert "the models (marketdata.models:Base.metadata) and the specs agree" in done.stdout


def test_check_fails_while_a_model_is_ahead_of_the_specs(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    assert _run(tmp_path, "init", "shop").returncode == 0
    config = root / "schemagen.toml"
    config.write_text(
        config.read_text("utf-8").replace("# metadata = ", 'metadata = "models:metadata"\n# '),
        "utf-8",
    )
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE, "utf-8")
    (root / "models.py").write_text(MODELS.format(extra=""), "utf-8")
    assert _run(root, "generate").returncode == 0
    done = _run(root, "check")
    assert done.returncode == Exit.OK, done.stdout + done.stderr

    (root / "models.py").write_text(
        MODELS.format(extra='    sa.Column("note", sa.Text(), nullable=True),\n'), "utf-8"
    )
    done = _run(root, "check")
    assert done.returncode == Exit.FAILED, done.stdout + done.stderr
    assert "op.add_column('customers', sa.Column('note', sa.Text(), nullable=True))" in done.stdout
    assert "write a change spec" in done.stderr

    (root / "changes" / "0001_add_note.yaml").write_text(ADD_NOTE, "utf-8")
    assert _run(root, "generate").returncode == 0
    done = _run(root, "check")
    assert done.returncode == Exit.OK, done.stdout + done.stderr


def test_check_without_configured_models_says_what_to_set(tmp_path: Path) -> None:
    assert _run(tmp_path, "init", "shop").returncode == 0
    root = tmp_path / "shop"
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE, "utf-8")
    assert _run(root, "generate").returncode == 0
    done = _run(root, "check")
    assert done.returncode == Exit.USAGE
    assert "set metadata" in done.stderr
    assert "Traceback" not in done.stderr
