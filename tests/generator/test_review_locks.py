"""The review's lock column tells the truth: for every change, the strongest PostgreSQL lock
its risk table names is the strongest lock its statements take.

The review states a lock per plan unit (``Unit.risk``, from its steps' ``Risk``) and
``schemagen plan`` one per statement (``dialects.statement_lock``). When a template starts
taking a stronger lock (the foreign-key swap's ``LOCK TABLE`` did), the unit's line must
change with it: a reviewer deciding whether a change can run in business hours reads that
line, not the SQL.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import GOLDEN, ROOT

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
    trees = [("generated_migrations", ROOT / "generated_migrations")]
    for case in sorted(p.name for p in (GOLDEN / "render").iterdir() if p.is_dir()):
        root = GOLDEN / "render" / case
        out = tmp_path / case
        files.write(generate(load_changes(root / "changes", display_base=root)), out)
        shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
        trees.append((f"golden {case}", out))
    return trees


def _review_locks(review: str) -> set[str]:
    section = review.split("**PostgreSQL**", 1)[1].split("**SQLite**", 1)[0]
    modes: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("| ") and not line.startswith("| step") and len(cells) > 3:
            modes |= lock_modes(cells[3])
    return modes


def _statement_locks(tree: Path, revision: str, direction: str) -> set[str]:
    plan = migrate.plan_sql(tree, dialects.POSTGRESQL, direction, revision)
    modes: set[str] = set()
    for statement in migrate.statements(plan):
        if "alembic_version" not in statement:  # the version stamp, not the change
            modes |= lock_modes(dialects.statement_lock(statement, dialects.POSTGRESQL)[0])
    return modes


def test_the_mode_reader() -> None:
    assert lock_modes("SHARE ROW EXCLUSIVE on both tables, then SHARE UPDATE EXCLUSIVE") == {
        "SHARE ROW EXCLUSIVE",
        "SHARE UPDATE EXCLUSIVE",
    }
    assert lock_modes("ACCESS EXCLUSIVE (brief)") == {"ACCESS EXCLUSIVE"}
    assert lock_modes("SHARE (blocks writes)") == {"SHARE"}
    assert lock_modes("none, SHAREHOLDER") == set()
    assert strongest({"SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE"}) == "SHARE"


def test_each_review_names_the_strongest_lock_its_upgrade_takes(tmp_path: Path) -> None:
    checked, wrong = 0, []
    for label, tree in _migration_trees(tmp_path):
        for review in sorted((tree / "review").glob("*.md")):
            revision = review.name[:4]
            claimed = strongest(_review_locks(review.read_text()))
            taken = strongest(_statement_locks(tree, revision, "upgrade"))
            checked += 1
            if claimed != taken:
                wrong.append(
                    f"{label} {review.name}: review says {claimed}, statements take {taken}"
                )
    assert checked >= 10
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
