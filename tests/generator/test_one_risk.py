"""One risk model: for every operation, ``schemagen plan``, lint and the review state the same
lock and rewrite for each plan unit, and all three are the unit's ``Risk`` (``Unit.risk``).

The plan reads it from the marker the migration emits where the unit starts
(``runtime.unit``); the review renders it; lint's SG102 (table rewrite) fires exactly for the
changes whose PostgreSQL upgrade has a rewriting unit. examples/shop uses every operation; a
varchar(n) -> text change alone (catalogue-only on PostgreSQL: binary-coercible) is added.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from support import ROOT, planned_units

from generator import files, lint, migrate, ops
from generator.load import Change, load_changes
from generator.plan import Unit, plan
from generator.render import generate

SHOP = ROOT / "examples" / "shop"
DIALECTS = ("postgresql", "sqlite")


def _review_rows(review: str, dialect: str) -> list[tuple[str, bool]]:
    """(lock, rewrites) of each row of the review's risk table for ``dialect``."""
    name = "**PostgreSQL**" if dialect == "postgresql" else "**SQLite**"
    section = review.split(name, 1)[1].split("\n\n**", 1)[0].split("## Steps", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if line.startswith("| ") and not line.startswith("| step") and len(cells) > 4:
            rows.append((cells[3], cells[4] == "**yes**"))
    return rows


def _units(change: Change, direction: str, dialect: str) -> list[Unit]:
    if direction == "upgrade":
        return plan(change.steps, change.before, dialect)
    return plan(change.inverse_steps, change.after, dialect)


def _agree(tree: Path, changes: list[Change]) -> tuple[int, list[str]]:
    """Compare plan, review and lint with the units' Risk for every change of ``tree``."""
    checked, wrong = 0, []
    sg102 = {f.file for f in lint.lint(changes) if f.rule.id == "SG102"}
    for change in changes:
        name = f"{change.revision}_{change.spec.id}"
        review = (tree / "review" / f"{name}.md").read_text(encoding="utf-8")
        for dialect in DIALECTS:
            for direction in ("upgrade", "downgrade"):
                if direction == "downgrade" and any(s.refuses for s in change.inverse_steps):
                    continue  # an irreversible downgrade refuses, in the plan too
                risks = [u.risk(dialect) for u in _units(change, direction, dialect)]
                declared = [(r.lock, r.rewrites) for r in risks]
                text = migrate.plan_sql(tree, dialect, direction, change.revision)
                planned = [(u.lock, u.rewrites) for u in planned_units(text)]
                checked += 1
                if planned != declared:
                    wrong.append(f"{name} {direction} {dialect}: plan {planned} != {declared}")
                if direction == "upgrade" and _review_rows(review, dialect) != declared:
                    wrong.append(f"{name} review {dialect}: {_review_rows(review, dialect)}")
        rewrites = any(
            u.risk("postgresql").rewrites for u in _units(change, "upgrade", "postgresql")
        )
        if (change.display in sg102) != rewrites:
            wrong.append(f"{name}: SG102 {change.display in sg102}, PostgreSQL rewrites {rewrites}")
    return checked, wrong


def test_plan_lint_and_review_agree_for_every_operation() -> None:
    changes = load_changes(SHOP / "changes", display_base=SHOP, lint=False)
    used = {type(op).tag() for c in changes for op in c.spec.operations}
    assert used == set(ops.op_names()), "examples/shop no longer uses every operation"
    checked, wrong = _agree(SHOP / "generated_migrations", changes)
    assert checked >= len(changes) * 3
    assert not wrong, "\n".join(wrong)


def test_varchar_to_text_is_catalogue_only_everywhere(tmp_path: Path) -> None:
    changes_dir = tmp_path / "changes"
    changes_dir.mkdir()
    (changes_dir / "0000_base.yaml").write_text(
        "id: base\ndescription: x\noperations:\n"
        "  - op: create_table\n    name: notes\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        '      - {name: body, type: "varchar(20)", nullable: true}\n',
        encoding="utf-8",
    )
    (changes_dir / "0001_widen.yaml").write_text(
        "id: widen\ndescription: x\noperations:\n"
        '  - {op: alter_column_type, table: notes, column: body, from: "varchar(20)", '
        "to: text}\n",
        encoding="utf-8",
    )
    changes = load_changes(changes_dir, display_base=tmp_path, lint=False)
    tree = tmp_path / "generated_migrations"
    files.write(generate(changes), tree)
    shutil.copy(ROOT / "generated_migrations" / "env.py", tree / "env.py")
    checked, wrong = _agree(tree, changes)
    assert checked == 8 and not wrong, "\n".join(wrong)
    # PostgreSQL keeps the storage (test_risk_truth proves it on a server): no rewrite in the
    # plan, the review or lint; SQLite rebuilds the table and says so.
    text = migrate.plan_sql(tree, "postgresql", "upgrade", "0001")
    (unit,) = planned_units(text)
    assert (unit.lock, unit.rewrites) == ("ACCESS EXCLUSIVE (brief)", False)
    assert 'ALTER COLUMN "body" TYPE text' in " ".join(unit.statements)
    (unit,) = planned_units(migrate.plan_sql(tree, "sqlite", "upgrade", "0001"))
    assert unit.rewrites


def test_plan_lint_and_review_agree_on_the_phase1_history() -> None:
    # 0003 converts online on PostgreSQL (decimal -> float): no rewrite under a lock, so no
    # SG102, no "**yes**" and no REWRITES for PostgreSQL; SQLite's rebuild says "**yes**".
    changes = load_changes(ROOT / "changes", display_base=ROOT, lint=False)
    checked, wrong = _agree(ROOT / "generated_migrations", changes)
    assert checked == len(changes) * 4
    assert not wrong, "\n".join(wrong)
    assert not any(f.rule.id == "SG102" for f in lint.lint(changes))
