"""The content-addressed cache of ``generate`` (generator.cache): what it serves is byte for
byte what a cold render gives; an edit re-renders exactly the changes it reaches; templates,
tool and configuration invalidate it; a damaged entry is never trusted; and ``generate
--check`` with a warm cache still sees a hand edit."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ROOT, cli, copy_project

from benchmarks import gencheck
from generator import cache, config, render, revision_files
from generator.cli import Exit
from generator.coltypes import parse_type
from generator.conventions import Conventions
from generator.load import load_changes
from generator.state import Column, Schema, Table


def _project(root: Path, **settings: object) -> config.Project:
    return config.parse(root, None, dict(settings))


def _cold(project: config.Project) -> dict[str, str]:
    return cache.render_project(project, use_cache=False)


def _run(
    project: config.Project, templates: Path | None = None
) -> tuple[dict[str, str], cache.Cache]:
    store = cache.open_cache(project, templates)
    return cache.render_project(project, store=store), store


def _history(root: Path, n: int) -> Path:
    """The gencheck benchmark's synthetic history of ``n`` changes under ``root``."""
    changes = root / "changes"
    changes.mkdir(parents=True)
    shutil.copyfile(gencheck.BASELINE, changes / "0000_baseline.yaml")
    for number in range(1, n):
        ident, text = gencheck._change(number)
        (changes / f"{number:04d}_{ident}.yaml").write_text(text, encoding="utf-8")
    return root


def _spec(root: Path, number: int) -> Path:
    (found,) = (root / "changes").glob(f"{number:04d}_*.yaml")
    return found


def _names(root: Path, numbers: range | list[int]) -> list[str]:
    return [f"changes/{_spec(root, n).name}" for n in numbers]


def test_phase1_from_the_cache_is_byte_identical_to_a_cold_render(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    project = _project(root)
    cold = _cold(project)
    assert not (root / cache.CACHE_DIR).exists()  # no cache: nothing written
    filled, first = _run(project)
    assert first.hits == [] and len(first.rendered) == len(list((root / "changes").glob("*.yaml")))
    warm, second = _run(project)
    assert second.rendered == [] and second.hits == first.rendered
    assert filled == cold and warm == cold
    # ... and all of it is what the repository has committed.
    for path, text in warm.items():
        assert (ROOT / "generated_migrations" / path).read_text(encoding="utf-8") == text, path
    assert (root / cache.CACHE_DIR / ".gitignore").read_text().splitlines()[-1] == "*"


def test_a_synthetic_history_from_the_cache_equals_a_cold_render(tmp_path: Path) -> None:
    root = _history(tmp_path, 2 * gencheck.CYCLE + 3)
    project = _project(root)
    cold = _cold(project)
    # per change: a migration, four validation .sql files and their four .json, a review
    assert len(cold) == 10 * (2 * gencheck.CYCLE + 3) + 1
    _run(project)
    warm, store = _run(project)
    assert warm == cold
    assert len(store.hits) == 2 * gencheck.CYCLE + 3 and store.rendered == []


def test_an_edit_re_renders_exactly_the_changes_whose_inputs_changed(tmp_path: Path) -> None:
    n = 2 * gencheck.CYCLE + 3  # 19 changes: 9 builds an index that 10 drops
    root = _history(tmp_path, n)
    project = _project(root)
    _run(project)

    # The prose of one change: its files, and nothing after it (the state is the same).
    spec = _spec(root, 5)
    spec.write_text(spec.read_text().replace("synthetic change 5", "synthetic change five"))
    out, store = _run(project)
    assert store.rendered == _names(root, [5])
    assert out == _cold(project)

    # The columns of the index change 9 builds: 9 itself, and 10, whose spec is the same but
    # whose state before is not (it drops that index: its downgrade rebuilds it); 11 onwards
    # see the same state as before, so their entries still serve.
    spec = _spec(root, 9)
    spec.write_text(spec.read_text().replace("[timestamp, price]", "[price, timestamp]"))
    out, store = _run(project)
    assert store.rendered == _names(root, [9, 10])
    assert out == _cold(project)
    assert "price, timestamp" not in _spec(root, 10).read_text()

    # A column renamed in change 3 is in every later state: 3 and everything after it.
    spec = _spec(root, 3)
    spec.write_text(spec.read_text().replace("name: syn_3,", "name: syn_three,"))
    out, store = _run(project)
    assert store.rendered == _names(root, range(3, n))
    assert out == _cold(project)

    # Nothing changed: nothing rendered, nothing loaded.
    out, store = _run(project)
    assert store.rendered == [] and len(store.hits) == n


def test_templates_tool_and_configuration_are_in_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _history(tmp_path / "p", 4)
    templates = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES_DIR, templates)
    project = _project(root)
    all_four = _names(root, range(4))

    def rendered(project: config.Project = project) -> list[str]:
        return _run(project, templates)[1].rendered

    assert rendered() == all_four
    assert rendered() == []

    # A template edited (a comment: the output does not even change)
    review = templates / "review.md.j2"
    review.write_text(review.read_text() + "{# edited #}")
    assert rendered() == all_four
    assert rendered() == []

    # The tool: another version of a distribution it runs on (its own sources are in too).
    monkeypatch.setattr(cache, "_version", lambda distribution: "99.0")
    cache.tool_fingerprint.cache_clear()
    try:
        assert rendered() == all_four
        assert rendered() == []
    finally:
        monkeypatch.undo()
        cache.tool_fingerprint.cache_clear()
    assert rendered() == []  # the entries of the real tool are still there

    # The configuration: a naming convention, the output folder.
    renamed = dataclasses.replace(project, conventions=Conventions(unique="uq_{column}_{table}"))
    assert rendered(renamed) == all_four
    moved = _project(root, output="migrations")
    assert rendered(moved) == all_four
    assert rendered(project) == []


def test_a_damaged_entry_is_not_trusted(tmp_path: Path) -> None:
    root = _history(tmp_path, 6)
    project = _project(root)
    cold = _cold(project)
    _run(project)
    entries = sorted((root / cache.CACHE_DIR).glob("*" + cache.ENTRY_SUFFIX))
    assert len(entries) == 6
    flipped, truncated, foreign = entries[0], entries[2], entries[4]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, deep in a file's text
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    foreign.write_bytes(entries[1].read_bytes())  # whole and valid, for another key

    out, store = _run(project)
    assert out == cold
    assert sorted(store.rejected) == [flipped, truncated, foreign]
    assert len(store.rendered) == 3
    # Rewritten whole: the next run takes everything from the cache.
    out, store = _run(project)
    assert out == cold and store.rendered == [] and store.rejected == []


def test_no_cache_where_none_can_be_written(tmp_path: Path) -> None:
    root = _history(tmp_path, 3)
    project = _project(root)
    (root / ".schemagen").write_text("a file where the cache folder would be")
    out, store = _run(project)
    assert out == _cold(project)
    assert not store.writable and len(store.rendered) == 3
    out, store = _run(project)
    assert len(store.rendered) == 3 and store.hits == []


def test_state_digest_is_generic_and_stable() -> None:
    a = Table("t", (Column("id", parse_type("bigint"), False, primary_key=True),))
    b = Table("t", (Column("id", parse_type("bigint"), False, primary_key=True),))
    c = Table("t", (Column("id", parse_type("integer"), False, primary_key=True),))
    d = cache.Digester()
    assert a is not b and d.hexdigest(Schema((a,))) == d.hexdigest(Schema((b,)))
    assert d.hexdigest(Schema((a,))) != d.hexdigest(Schema((c,)))
    assert d.hexdigest(Schema()) != d.hexdigest(Schema((a,)))
    assert d.hexdigest((1, "1")) != d.hexdigest(("1", 1))
    assert d.hexdigest(True) != d.hexdigest(1)
    with pytest.raises(TypeError):
        d.hexdigest(object())
    # The same in another process (hash randomisation does not reach it).
    final = load_changes(ROOT / "changes")[-1].after
    changes = str(ROOT / "changes")
    script = (
        "from generator import cache; from generator.load import load_changes; "
        "from pathlib import Path; "
        f"print(cache.Digester().hexdigest(load_changes(Path({changes!r}))[-1].after))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=ROOT,
    )
    assert other.stdout.strip() == cache.Digester().hexdigest(final)


def test_check_with_a_warm_cache_still_sees_a_hand_edit(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    assert cli("generate", "--check", root=root).exit_code == Exit.OK  # fills the cache
    assert any((root / cache.CACHE_DIR).glob("*" + cache.ENTRY_SUFFIX))
    assert cli("generate", "--check", root=root).exit_code == Exit.OK  # from the cache
    target = root / "generated_migrations" / "review" / "0001_optimize_market_data_indexes.md"
    target.write_text(target.read_text() + "hand edit\n")
    result = cli("generate", "--check", root=root)
    assert result.exit_code == Exit.FAILED
    assert (
        f"stale or edited: generated_migrations/{target.relative_to(root / 'generated_migrations')}"
        in result.stderr
    )
    # `generate` puts it back from the cache, and --no-cache agrees that it is current.
    assert cli("generate", root=root).exit_code == Exit.OK
    assert cli("generate", "--check", "--no-cache", root=root).exit_code == Exit.OK


def test_no_cache_option_and_variable_write_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_project(tmp_path)
    assert cli("generate", "--check", "--no-cache", root=root).exit_code == Exit.OK
    assert not (root / ".schemagen").exists()
    monkeypatch.setenv(cache.NO_CACHE_ENV, "1")
    assert cli("generate", "--check", root=root).exit_code == Exit.OK
    assert not (root / ".schemagen").exists()


def test_the_revisions_remembered_are_what_the_migrations_declare(tmp_path: Path) -> None:
    """generate tells the chain check each migration's revision from the change instead of
    parsing the file back: parsed afresh, every rendered migration says the same."""
    root = _history(tmp_path / "synthetic", 12)
    for project in (_project(copy_project(tmp_path / "phase1")), _project(root)):
        rendered = _cold(project)
        migrations = {p: t for p, t in rendered.items() if p.startswith("versions/")}
        assert len(migrations) >= 6
        remembered = {p: revision_files.parse(p, t) for p, t in migrations.items()}
        revision_files._known.clear()
        parsed = {p: revision_files.parse(p, t) for p, t in migrations.items()}
        assert remembered == parsed
        assert all(r is not None and r.generated for r in parsed.values())


def test_entries_unused_for_a_month_are_pruned_after_a_run_that_renders(tmp_path: Path) -> None:
    root = _history(tmp_path, 4)
    project = _project(root)
    _run(project)
    folder = root / cache.CACHE_DIR
    entries = sorted(folder.glob("*" + cache.ENTRY_SUFFIX))
    old = time.time() - cache.MAX_AGE_S - 3600
    for entry in entries:
        os.utime(entry, (old, old))
    leftover = folder / ".tmp-killed.entry"
    leftover.write_bytes(b"half an entry")
    os.utime(leftover, (time.time() - 2 * cache.TMP_AGE_S,) * 2)

    # Change 3 edited: 0-2 are used (their age restarts), 3's old entry is unused and old.
    spec = _spec(root, 3)
    spec.write_text(spec.read_text().replace("synthetic change 3", "synthetic change three"))
    _, store = _run(project)
    assert store.rendered == _names(root, [3])
    remaining = set(folder.glob("*" + cache.ENTRY_SUFFIX))
    assert len(remaining) == 4  # 0-2 and the new 3
    assert len(set(entries) & remaining) == 3  # the old entry of 3 is gone
    assert not leftover.exists()
    # A warm run prunes nothing (it only reads).
    for entry in remaining:
        os.utime(entry, (old, old))
    _, store = _run(project)
    assert store.rendered == [] and set(folder.glob("*" + cache.ENTRY_SUFFIX)) == remaining
