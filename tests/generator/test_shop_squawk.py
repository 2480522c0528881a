"""squawk (the PostgreSQL migration linter, PyPI squawk-cli) over the upgrade SQL of every
change of examples/shop: no finding but those examples/shop/squawk-accepted.toml accepts, each
with its reason and the line of the change's review that names the same thing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, cli

from generator.cli import Exit
from generator.load import load_changes

SHOP = ROOT / "examples" / "shop"


def _squawk() -> str:
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if found is None:
        pytest.fail("squawk is not installed: pip install -e '.[dev]' (squawk-cli)")
    return found


def _accepted() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = tomllib.loads((SHOP / "squawk-accepted.toml").read_text())[
        "accept"
    ]
    return entries


def findings(tmp_path: Path) -> set[tuple[str, str]]:
    """(change, rule) of every squawk finding on the upgrade SQL of each change."""
    names = [f"{c.revision}_{c.spec.id}" for c in load_changes(SHOP / "changes")]
    files = []
    for name in names:
        result = cli("plan", name, "--dialect", "postgresql", "--direction", "upgrade", root=SHOP)
        assert result.exit_code == Exit.OK, result.output
        path = tmp_path / f"{name}.sql"
        path.write_text(result.stdout)
        files.append(str(path))
    run = subprocess.run(
        [_squawk(), "--reporter", "json", "--pg-version", "15", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr  # 1: findings
    return {(Path(f["file"]).stem, f["rule_name"]) for f in json.loads(run.stdout or "[]")}


def test_squawk_finds_nothing_the_review_does_not_accept(tmp_path: Path) -> None:
    found = findings(tmp_path)
    accepted = {(e["change"], e["rule"]) for e in _accepted()}
    assert sorted(found - accepted) == [], "squawk findings nobody accepted"
    assert sorted(accepted - found) == [], "accepted squawk rules nothing trips any more"


def test_every_acceptance_gives_a_reason_and_its_line_of_the_review() -> None:
    for entry in _accepted():
        assert set(entry) == {"change", "rule", "reason", "evidence"}, entry
        assert entry["reason"].strip(), entry
        review = SHOP / "generated_migrations" / "review" / f"{entry['change']}.md"
        assert entry["evidence"] in review.read_text(), (entry["change"], entry["evidence"])


def test_squawk_reports_an_unaccepted_finding(tmp_path: Path) -> None:
    """The check can fail: a plain CREATE INDEX (not CONCURRENTLY) is a finding."""
    path = tmp_path / "bad.sql"
    path.write_text('CREATE INDEX "ix" ON "orders" ("status");\n')
    run = subprocess.run(
        [_squawk(), "--reporter", "json", "--pg-version", "15", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    rules = {f["rule_name"] for f in json.loads(run.stdout)}
    assert "require-concurrent-index-creation" in rules
