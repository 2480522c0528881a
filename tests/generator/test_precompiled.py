"""Templates compiled ahead (generator.precompiled): a run loads a template's module when one
was written for its present source and renders the same bytes as from the source; a template
edited since is compiled from its source (a stale module is never used); a build replaces
what the folder held."""

from __future__ import annotations

import shutil
from pathlib import Path

import jinja2
from support import GOLDEN, ROOT

from generator import precompiled, render
from generator.load import load_changes


def _build(templates: Path, target: Path) -> int:
    return precompiled.build(
        render.make_env(templates, compiled=target), target, render.is_rendering_template
    )


def _rendered(env: jinja2.Environment, case: str) -> list[dict[str, str]]:
    root = GOLDEN / "render" / case
    changes = load_changes(root / "changes", display_base=root)
    return [{p: str(t) for p, t in files.items()} for files in render._render(env, changes)]


def test_precompiled_templates_render_the_same_bytes(tmp_path: Path) -> None:
    compiled = tmp_path / "compiled"
    assert _build(ROOT / "templates", compiled) >= 40
    assert list((compiled / "__pycache__").glob("tmpl_*.pyc"))  # bytecode too
    ahead = render.make_env(compiled=compiled)
    source = render.make_env(compiled=tmp_path / "absent")
    assert _rendered(ahead, "every_operation") == _rendered(source, "every_operation")
    loaded = ahead.get_template("migration.py.j2")
    assert loaded.filename is not None and Path(loaded.filename).parent == compiled
    from_source = source.get_template("migration.py.j2")
    assert from_source.filename == str(ROOT / "templates" / "migration.py.j2")


def test_an_edited_template_is_compiled_from_its_source(tmp_path: Path) -> None:
    templates, compiled = tmp_path / "templates", tmp_path / "compiled"
    shutil.copytree(ROOT / "templates", templates)
    _build(templates, compiled)
    review = templates / "review.md.j2"
    review.write_text(review.read_text(encoding="utf-8") + "edited since\n", encoding="utf-8")
    env = render.make_env(templates, compiled=compiled)
    edited = env.get_template("review.md.j2")
    assert edited.filename == str(review)
    unchanged = env.get_template("migration.py.j2")
    assert unchanged.filename is not None and Path(unchanged.filename).parent == compiled
    # the settings are part of the key: another environment's modules are not this one's
    other = render.make_env(templates, compiled=compiled)
    other.trim_blocks = False
    assert other.get_template("migration.py.j2").filename == str(templates / "migration.py.j2")


def test_a_build_replaces_the_folder(tmp_path: Path) -> None:
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    (compiled / "tmpl_stale.py").write_text("raise SystemExit\n", encoding="utf-8")
    count = _build(ROOT / "templates", compiled)
    modules = sorted(p.name for p in compiled.glob("*.py"))
    assert "tmpl_stale.py" not in modules and len(modules) == count
    assert [p.name for p in tmp_path.iterdir()] == ["compiled"]  # no build folder left
