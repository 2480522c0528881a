"""The committed JSON Schema of the spec format: current, accepts every real spec, rejects
the shape errors of the bad-spec corpus (editors flag them as they are typed)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from support import GOLDEN, ROOT, cli

from generator.cli import SCHEMA_FILE, Exit

SCHEMA = json.loads((ROOT / SCHEMA_FILE).read_text())
SHAPE_ERRORS = ["unknown_op", "unknown_type", "bad_identifier", "unknown_field", "missing_field"]


def _specs(root: Path) -> list[Path]:
    return sorted(root.glob("**/changes/*.yaml"))


def test_committed_schema_is_current() -> None:
    assert cli("schema", "--check", root=ROOT).exit_code == Exit.OK


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "changes").glob("*.yaml")) + _specs(GOLDEN / "render"),
    ids=lambda p: p.name,
)
def test_schema_accepts_every_committed_spec(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize("case", SHAPE_ERRORS)
def test_schema_rejects_shape_errors_of_the_corpus(case: str) -> None:
    bad = next(p for p in _specs(GOLDEN / "errors" / case) if not p.name.startswith("0000"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(bad.read_text()), SCHEMA)


def test_every_spec_opens_with_the_editor_modeline() -> None:
    for path in sorted((ROOT / "changes").glob("*.yaml")):
        assert path.read_text().startswith("# yaml-language-server: $schema=change.schema.json")
