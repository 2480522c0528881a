"""Free text from a spec can never become code or SQL in a rendered file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import GOLDEN

from generator.load import load_changes
from generator.render import generate

ATTACKS = [
    "ok\nimport os; os.system('echo pwned')",
    'ok """\nimport os\n"""',
    "ok\r\nraise SystemExit(1)",
    "ok\x0cimport os",
    "ok\u2028import os",
    "ok\x00nul",
    "ok */ DROP TABLE instruments; --",
    "ok\n-- check: injected\nDROP TABLE instruments",
    "ok\\\nimport os",
]


def _render_with_description(tmp_path: Path, description: str) -> dict[str, str]:
    changes = tmp_path / "changes"
    changes.mkdir()
    base = (GOLDEN / "render" / "every_operation" / "changes" / "0000_base.yaml").read_text()
    (changes / "0000_base.yaml").write_text(base)
    escaped = description.encode("unicode_escape").decode().replace('"', '\\"')
    (changes / "0001_attack.yaml").write_text(
        f'id: attack\ndescription: "{escaped}"\noperations:\n'
        "  - {op: drop_index, table: trades, name: ix_trades_price}\n"
    )
    return generate(load_changes(changes, display_base=tmp_path))


def _statements(source: str) -> list[str]:
    return [ast.dump(node) for node in ast.parse(source).body]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_description_stays_a_comment(tmp_path: Path, attack: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    hostile = _render_with_description(tmp_path / "a", attack)
    benign = _render_with_description(tmp_path / "b", "ok")
    migration = hostile["versions/0001_attack.py"]
    compile(migration, "0001_attack.py", "exec")
    assert _statements(migration) == _statements(benign["versions/0001_attack.py"])
    for path, text in hostile.items():
        if path.endswith(".sql"):
            header = text.split("-- check:", 1)[0]
            for line in header.splitlines():
                assert line == "" or line.startswith("--"), (path, line)
            assert text.count("-- check:") == benign[path].count("-- check:")
