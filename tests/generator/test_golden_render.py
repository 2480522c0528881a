"""Golden records: each case's rendered tree equals its committed `expected/` folder, file by
file (missing and extra files fail too), and the rendered migrations run on both dialects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import GOLDEN, ROOT, inspect_schema

from generator import files, migrate, runtime
from generator.load import load_changes
from generator.render import generate

CASES = sorted(p.name for p in (GOLDEN / "render").iterdir() if p.is_dir())


def _render(case: str) -> dict[str, str]:
    root = GOLDEN / "render" / case
    return generate(load_changes(root / "changes", display_base=root))


@pytest.mark.parametrize("case", CASES)
def test_rendered_output_matches_the_golden_record(
    case: str, request: pytest.FixtureRequest
) -> None:
    rendered = _render(case)
    expected_dir = GOLDEN / "render" / case / "expected"
    if request.config.getoption("--update-golden"):
        shutil.rmtree(expected_dir, ignore_errors=True)
        files.write(rendered, expected_dir)
    drift = files.compare(rendered, expected_dir, label=f"tests/golden/render/{case}/expected")
    assert drift.clean, "".join(drift.diff) + f"\nmissing: {drift.missing} extra: {drift.orphaned}"


@pytest.mark.db
@pytest.mark.parametrize("case", CASES)
def test_golden_migrations_run_up_and_down(case: str, db_url: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "generated_migrations"
    files.write(_render(case), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0000")
    base = inspect_schema(db_url)
    migrate.upgrade(out_dir, url, "head")
    head = inspect_schema(db_url)
    assert head != base
    root = GOLDEN / "render" / case
    if any(s.refuses for c in load_changes(root / "changes") for s in c.inverse_steps):
        # a change that cannot be undone (purge): the downgrade past it refuses, unchanged
        with pytest.raises(runtime.Irreversible, match="cannot be downgraded"):
            migrate.downgrade(out_dir, url, "0000")
        assert inspect_schema(db_url) == head
        return
    migrate.downgrade(out_dir, url, "0000")
    assert inspect_schema(db_url) == base
    migrate.upgrade(out_dir, url, "head")
    assert inspect_schema(db_url) == head
    migrate.downgrade(out_dir, url, "base")
    assert inspect_schema(db_url) == {}
