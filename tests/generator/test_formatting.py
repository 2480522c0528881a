"""ruff formats the migrations as one source (render._Formatting, no temporary files): each
comes back exactly as ruff formats it as a file of its own, over every history the project
renders (its own, the shop example's, every golden case's and a synthetic one); sources that
could format otherwise as one are formatted file by file, and ruff's refusal is reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import GOLDEN, ROOT

from benchmarks import gencheck
from generator import render
from generator.load import load_changes


def _raw_migrations(root: Path) -> dict[str, str]:
    """Each change's migration as the template renders it, before ruff."""
    changes = load_changes(root / "changes", display_base=root)
    env = render.make_env()
    return {
        render.migration_path(c): render._render_migration(env, c, render._plans(c))
        for c in changes
    }


def _synthetic(tmp_path: Path, n: int) -> Path:
    root = tmp_path / "synthetic"
    (root / "changes").mkdir(parents=True)
    shutil.copyfile(gencheck.BASELINE, root / "changes" / "0000_baseline.yaml")
    for number in range(1, n):
        ident, text = gencheck._change(number)
        (root / "changes" / f"{number:04d}_{ident}.yaml").write_text(text, encoding="utf-8")
    return root


def test_one_source_formats_each_migration_as_its_own_file(tmp_path: Path) -> None:
    raw: dict[str, str] = {}
    roots = [ROOT, ROOT / "examples" / "shop", _synthetic(tmp_path, 2 * gencheck.CYCLE + 3)]
    roots += sorted(p for p in (GOLDEN / "render").iterdir() if (p / "changes").is_dir())
    for i, root in enumerate(roots):
        raw.update({f"{i:02d}/{path}": text for path, text in _raw_migrations(root).items()})
    assert render._one_source(raw, sorted(raw)) is not None  # not the file-by-file fallback
    joined = render._Formatting(raw).result()
    by_file = render._Formatting(raw, one_source=False).result()
    assert joined.keys() == raw.keys()
    differ = [path for path in sorted(raw) if joined[path] != by_file[path]]
    assert not differ
    assert any(joined[path] != raw[path] for path in raw)  # ruff did change them


def test_a_source_that_could_format_otherwise_is_formatted_as_a_file(tmp_path: Path) -> None:
    raw = _raw_migrations(ROOT)
    first, second, *_ = sorted(raw)
    odd = dict(raw)
    # fmt: off would reach the migrations after it in one source; ruff strips the space at
    # the end of a module's docstring, not of a string that is no docstring
    odd[first] = raw[first] + "# fmt: off\nx = [1,\n  2]\n"
    odd[second] = raw[second].replace('SQLite."""', 'SQLite. """', 1)
    for changed in (
        {first: odd[first]},
        {second: odd[second]},
        {first: raw[first] + "# the end\n"},
        {first: raw[first].replace("\n", "\r\n")},
    ):
        files = {**raw, **changed}
        assert render._one_source(files, sorted(files)) is None
        assert (
            render._Formatting(files).result()
            == render._Formatting(files, one_source=False).result()
        )
    formatted = render._Formatting(odd).result()
    assert formatted[first].endswith("# fmt: off\nx = [1,\n  2]\n")  # as ruff leaves it
    assert 'SQLite."""' in formatted[second]  # a module's docstring: stripped


def test_ruff_refusing_a_migration_is_an_error_naming_ruff() -> None:
    raw = _raw_migrations(ROOT)
    broken = {**raw, sorted(raw)[-1]: raw[sorted(raw)[-1]] + "def broken(:\n"}
    assert render._one_source(broken, sorted(broken)) is not None
    with pytest.raises(RuntimeError, match="ruff format failed on generated code"):
        render._Formatting(broken).result()
