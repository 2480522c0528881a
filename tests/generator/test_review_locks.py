"""The lock each plan unit declares tells the truth: for every unit of every change's upgrade,
the strongest PostgreSQL lock its Risk names is the strongest lock its statements take.

The review, lint and ``schemagen plan`` all state a unit's Risk (``Unit.risk``, from its
steps' ``Risk``; the plan through the marker the migration emits where the unit starts). Only
this test reads the SQL, as an independent witness: what PostgreSQL's "Explicit Locking"
documents each statement takes. When a template starts taking a stronger lock (the
foreign-key swap's ``LOCK TABLE`` did), the unit's Risk must change with it: a reviewer
deciding whether a change can run in business hours reads that line, not the SQL.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import GOLDEN, ROOT, planned_units

from generator import dialects, files, migrate
from generator.load import load_changes
from generator.plan import plan
from generator.render import generate

# PostgreSQL's table lock modes, weakest first ("Explicit Locking").
MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
_LONGEST_FIRST = sorted(MODES, key=len, reverse=True)


def lock_modes(text: str) -> set[str]:
    """The lock modes a text names, read left to right, longest name first ("SHARE ROW
    EXCLUSIVE" is one mode, not SHARE and EXCLUSIVE)."""
    found, rest = set(), text
    while rest:
        for mode in _LONGEST_FIRST:
            if rest.startswith(mode) and not rest[len(mode) : len(mode) + 1].isalpha():
                found.add(mode)
                rest = rest[len(mode) :]
                break
        else:
            rest = rest[1:]
    return found


def strongest(modes: set[str]) -> str | None:
    return max(modes, key=MODES.index) if modes else None


def _migration_trees(tmp_path: Path) -> list[tuple[str, Path]]:
    trees = [
        ("generated_migrations", ROOT / "generated_migrations"),
        ("examples/shop", ROOT / "examples" / "shop" / "generated_migrations"),
    ]
    for case in sorted(p.name for p in (GOLDEN / "render").iterdir() if p.is_dir()):
        root = GOLDEN / "render" / case
        out = tmp_path / case
        files.write(generate(load_changes(root / "changes", display_base=root)), out)
        shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
        trees.append((f"golden {case}", out))
    return trees


# The lock a PostgreSQL statement takes, by what it starts with (first match wins), as
# "Explicit Locking" documents it: the witness the units' declared locks are checked against.
_DOCUMENTED: tuple[tuple[str, str], ...] = (
    ("CREATE INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE"),
    ("CREATE UNIQUE INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE"),
    ("DROP INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE"),
    ("CREATE INDEX", "SHARE"),
    ("CREATE UNIQUE INDEX", "SHARE"),
    ("DROP INDEX", "ACCESS EXCLUSIVE"),
    ("CREATE TABLE", "SHARE ROW EXCLUSIVE on referenced tables"),
    ("DROP TABLE", "ACCESS EXCLUSIVE"),
    ("LOCK TABLE", "ACCESS EXCLUSIVE"),
    ("ALTER SEQUENCE", "SHARE ROW EXCLUSIVE"),  # on the sequence (pg_locks shows it: widen_key)
    ("CREATE OR REPLACE TRIGGER", "SHARE ROW EXCLUSIVE"),  # set_nullable's fill trigger
    ("CREATE TRIGGER", "SHARE ROW EXCLUSIVE"),
    ("DROP TRIGGER", "ACCESS EXCLUSIVE"),
    ("CREATE OR REPLACE FUNCTION", ""),  # no table lock
    ("DROP FUNCTION", ""),
    ("CREATE SCHEMA", ""),
    ("SET ", ""),
    ("BEGIN", ""),
    ("COMMIT", ""),
)


def documented_lock(statement: str) -> str:
    """The lock PostgreSQL documents for one statement ("" for none)."""
    text = " ".join(statement.split())
    if text.startswith("DO ") and "LOCK TABLE" in text:
        return "ACCESS EXCLUSIVE"
    for prefix, lock in _DOCUMENTED:
        if text.startswith(prefix):
            return lock
    if text.startswith("ALTER TABLE"):
        if "NOT VALID" in text and "FOREIGN KEY" in text and "DROP CONSTRAINT" not in text:
            return "SHARE ROW EXCLUSIVE"
        if "VALIDATE CONSTRAINT" in text:
            return "SHARE UPDATE EXCLUSIVE"
        return "ACCESS EXCLUSIVE"
    if text.startswith(("UPDATE", "INSERT", "DELETE")):
        return "ROW EXCLUSIVE"
    return f"unknown: {text[:60]}"


def test_the_mode_reader() -> None:
    assert lock_modes("SHARE ROW EXCLUSIVE on both tables, then SHARE UPDATE EXCLUSIVE") == {
        "SHARE ROW EXCLUSIVE",
        "SHARE UPDATE EXCLUSIVE",
    }
    assert lock_modes("ACCESS EXCLUSIVE (brief)") == {"ACCESS EXCLUSIVE"}
    assert lock_modes("SHARE (blocks writes)") == {"SHARE"}
    assert lock_modes("none, SHAREHOLDER") == set()
    assert strongest({"SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE"}) == "SHARE"


def test_each_unit_declares_the_strongest_lock_its_statements_take(tmp_path: Path) -> None:
    checked, wrong = 0, []
    for label, tree in _migration_trees(tmp_path):
        for review in sorted((tree / "review").glob("*.md")):
            revision = review.name[:4]
            text = migrate.plan_sql(tree, dialects.POSTGRESQL, "upgrade", revision)
            for unit in planned_units(text):
                # Raw SQL declares its lock unknown (SG113); a backfill's batches are built at
                # run time (the plan shows them as notes, its UPDATE per batch as a comment).
                if unit.kind in ("sql", "backfills"):
                    continue
                taken = strongest(
                    {m for s in unit.statements for m in lock_modes(documented_lock(s))}
                )
                declared = strongest(lock_modes(unit.lock))
                checked += 1
                if declared != taken:
                    wrong.append(
                        f"{label} {review.name} {unit.kind}: declares {unit.lock!r}, "
                        f"its statements take {taken}"
                    )
    assert checked >= 30
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "kind", ["swap_fk_actions", "online_type_change", "drop_table", "concurrent_indexes"]
)
def test_the_unit_lines_name_a_postgresql_lock_mode(kind: str) -> None:
    # A unit of this kind from the phase-1 history (either direction), and its Risk.
    units = [
        unit
        for change in load_changes(ROOT / "changes", display_base=ROOT)
        for steps, before in ((change.steps, change.before), (change.inverse_steps, change.after))
        for unit in plan(steps, before, dialects.POSTGRESQL)
        if unit.kind == kind
    ]
    assert units, kind
    for unit in units:
        lock = unit.risk(dialects.POSTGRESQL).lock
        assert lock_modes(lock), f"{kind}: {lock!r} names no lock mode"
