"""The tool stands alone: running migrations never imports the application (marketdata/)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

# Runs the real CLI in a fresh interpreter, then reports every module it imported.
PROBE = """
import sys
from generator import cli
try:
    cli.main(sys.argv[1:], standalone_mode=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("marketdata", "benchmarks"))
print("LEAKED=" + ",".join(leaked))
sys.exit(code)
"""


@pytest.mark.db
def test_upgrade_and_verify_import_nothing_of_the_application(db_url: str) -> None:
    for command in (["upgrade", "--url", db_url], ["verify", "--url", db_url]):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, "--root", str(ROOT), *command],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        leaked = proc.stdout.rsplit("LEAKED=", 1)[1].strip()
        assert leaked == "", f"{command[0]} imported {leaked}"


def test_no_generator_module_imports_the_application() -> None:
    offenders = []
    for path in [
        *sorted((ROOT / "generator").rglob("*.py")),
        ROOT / "generated_migrations" / "env.py",
    ]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                if name.split(".")[0] in ("marketdata", "benchmarks"):
                    offenders.append(f"{Path(path).relative_to(ROOT)}: {name}")
    assert offenders == []
