"""rename_column: the state renames the column everywhere it is named, the reverse restores
the state exactly, and the refusals name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.errors import SpecErrors
from generator.load import Change, load_changes
from generator.ops.rename_column import RenameColumnStep
from generator.plan import plan

BASE = """\
id: base
description: base
operations:
  - op: create_table
    name: parents
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: code, type: varchar(8), unique: true}
      - {name: price, type: "decimal(10,2)", nullable: true}
      - {name: gone_at, type: timestamptz, nullable: true}
    indexes:
      - {name: ix_parents_gone, columns: [gone_at, code], where: gone_at IS NOT NULL}
  - op: create_table
    name: children
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: parent_id, type: integer, references: {table: parents}}
"""
CHECK = """\
id: to_float
description: a range check on price
operations:
  - {op: alter_column_type, table: parents, column: price, from: "decimal(10,2)", to: float,
     range_check: true}
"""


def _load(tmp_path: Path, *specs: str) -> list[Change]:
    changes = tmp_path / "changes"
    changes.mkdir()
    for i, text in enumerate((BASE, CHECK, *specs)):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{i:04d}_{name}.yaml").write_text(text)
    return load_changes(changes, display_base=tmp_path, lint=False)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("parents", "id"),
        ("parents", "code"),
        ("parents", "gone_at"),
        ("parents", "price"),
        ("children", "parent_id"),
    ],
)
def test_the_state_renames_everywhere_and_back(tmp_path: Path, table: str, column: str) -> None:
    spec = (
        "id: ren\ndescription: r\noperations:\n"
        f"  - {{op: rename_column, table: {table}, column: {column}, to: renamed}}\n"
    )
    change = _load(tmp_path, spec)[-1]
    (step,) = change.steps
    assert isinstance(step, RenameColumnStep)
    renamed = change.after.get(table)
    # the old name survives only inside constraint and index names, which stay
    names = [i.name for i in renamed.indexes] + [u.name for u in renamed.uniques]
    names += [f.name for f in renamed.foreign_keys] + [c.name for c in renamed.checks]
    stripped = repr(renamed)
    for name in names:
        stripped = stripped.replace(repr(name), "")
    assert f"'{column}'" not in stripped
    assert f"{column} IS NOT NULL" not in stripped
    assert "'renamed'" in stripped
    for t in change.after.tables:
        assert not [f for f in t.foreign_keys if (f.ref_table, f.ref_column) == (table, column)]
    assert step.reverse().apply(change.after) == change.before
    assert [u.kind for u in plan(change.steps, change.before, "sqlite")] == ["rename_column"]
    assert not step.risk("postgresql").rewrites and not step.risk("sqlite").rewrites


def test_refusals(tmp_path: Path) -> None:
    spec = (
        "id: ren\ndescription: r\noperations:\n"
        "  - {op: rename_column, table: parents, column: nope, to: x}\n"
        "  - {op: rename_column, table: parents, column: code, to: price}\n"
        "  - {op: rename_column, table: parents, column: code, to: code}\n"
    )
    with pytest.raises(SpecErrors) as info:
        _load(tmp_path, spec)
    text = str(info.value)
    assert (
        "0002_ren.yaml:4:" in text and "operations[0].column: column 'nope' does not exist" in text
    )
    assert "operations[1].to: column 'price' already exists in 'parents'" in text
    assert "operations[2].to: column parents.code is already named so" in text
