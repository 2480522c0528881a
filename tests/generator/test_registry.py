"""The operation registry: one operation = one module + its template(s), and everything
derived from the modules (op names, the union, the JSON Schema, `new`, the docs table) stays
in step with them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from support import ROOT

from generator import changespec, ops, spec
from generator.ops.base import OperationSpec, Step

SOURCES = sorted((ROOT / "generator").rglob("*.py"))
TEMPLATES = sorted((ROOT / "templates").rglob("*.j2"))
OPS = ops.registry()
FK_ACTIONS = get_args(spec.FkAction)
ALEMBIC_DIFF_KIND = re.compile(r"""\bkind == ["'](add|remove|modify)_\w+["']""")


def _defines(text: str, op: ops.Operation) -> bool:
    """Whether a Python file decides something about ``op``: it defines one of its classes,
    spells one of its tags or step kinds as a string, or dispatches on its types."""
    names = [op.spec.__name__, *(s.__name__ for s in op.steps)]
    # Alembic's autogenerate names its diffs ("add_column", "remove_index", ...): comparing
    # an Alembic diff's kind (generator/models.py) speaks Alembic's API, not ours.
    text = ALEMBIC_DIFF_KIND.sub("", text)
    tags = [op.tag, *(s.kind for s in op.steps)]
    if any(re.search(rf"^\s*class {n}\b", text, re.M) for n in names):
        return True
    # An ON DELETE action of the same spelling (`set_default`) is no decision about the op.
    text = re.sub(rf"""["'](?:{"|".join(FK_ACTIONS)})["'](?=[,:\]])""", "", text)
    if any(re.search(rf"""["']{t}["']""", text) for t in tags):
        return True
    return any(re.search(rf"isinstance\([^)]*\b{n}\b", text) for n in names)


def _template_defines(path: Path, op: ops.Operation) -> bool:
    rel = str(path.relative_to(ROOT / "templates"))
    if rel in op.templates:
        return True
    text = path.read_text(encoding="utf-8")
    tags = [op.tag, *(s.kind for s in op.steps)]
    return any(re.search(rf"""["']{t}["']""", text) for t in tags)


def test_the_registry_holds_the_operations() -> None:
    assert ops.op_names()[:6] == (
        "create_table",
        "drop_index",
        "create_index",
        "alter_column_type",
        "add_column",
        "swap_fk_action",
    )
    assert ops.op_names() == changespec.OP_NAMES
    for op in OPS:
        assert op.spec.model_config.get("extra") == "forbid", op.tag
        assert op.steps, f"{op.tag} defines no step"
        assert all(issubclass(s, Step) for s in op.steps)
        assert issubclass(op.spec, OperationSpec)


@pytest.mark.parametrize("op", OPS, ids=[o.tag for o in OPS])
def test_each_operation_is_one_module_plus_its_templates(op: ops.Operation) -> None:
    module = Path(op.module.__file__ or "")
    defining = {p for p in SOURCES if _defines(p.read_text(encoding="utf-8"), op)}
    assert defining == {module}, [str(p.relative_to(ROOT)) for p in defining]
    templates = {
        str(p.relative_to(ROOT / "templates")) for p in TEMPLATES if _template_defines(p, op)
    }
    assert templates == set(op.templates)
    for name in op.templates:
        assert (ROOT / "templates" / name).is_file(), name
    for step in op.steps:
        assert step.template in op.templates, (step.__name__, step.template)


def test_no_dispatch_by_string() -> None:
    offending = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        if re.search(r"getattr\(self, f[\"']_", text) or "STEP_KINDS" in text:
            offending.append(str(path.relative_to(ROOT)))
        if re.search(r"\b(step|s|unit|u)\.kind\s*(==|!=|in\b)", text):
            offending.append(str(path.relative_to(ROOT)))
    for path in TEMPLATES:
        if re.search(r"\.kind\s*(==|!=|in\b)", path.read_text(encoding="utf-8")):
            offending.append(str(path.relative_to(ROOT)))
    assert not offending


def test_the_json_schema_has_one_member_per_operation() -> None:
    schema = changespec.json_schema()
    members = schema["properties"]["operations"]["items"]["oneOf"]  # type: ignore[index]
    refs = [m["$ref"].rsplit("/", 1)[1] for m in members]
    assert refs == [o.spec.__name__ for o in OPS]


def test_the_new_scaffold_shows_every_operation() -> None:
    from generator.cli import _examples

    text = _examples()
    for op in OPS:
        assert f"op: {op.tag}" in text


def test_the_docs_table_is_current() -> None:
    """docs/authoring.md's operations table is rendered from the modules; regenerate it with
    `python -m generator.ops` when this fails."""
    doc = (ROOT / "docs" / "authoring.md").read_text(encoding="utf-8")
    assert ops.with_docs_table(doc) == doc, "stale: run `python -m generator.ops`"
    for op in OPS:
        assert f"| `{op.tag}` |" in doc


def test_the_property_test_draws_every_operation() -> None:
    import test_stateful_migrations as stateful

    assert ops.op_names() == stateful.OP_KINDS
    for tag in ops.op_names():
        assert callable(getattr(stateful.Drawer, tag, None)), f"the Drawer cannot draw {tag}"
