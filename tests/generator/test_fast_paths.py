"""The speed-ups of ``generate`` change nothing it produces: the libyaml parse agrees with the
pure-Python one (data, positions and every error), a history rendered in two processes equals
one rendered in one, and a failing child process is made up for."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks import gencheck
from generator import render, yamlpos
from generator.load import Change, load_changes

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted([*ROOT.glob("changes/*.yaml"), *ROOT.glob("tests/golden/**/*.yaml")])
SYNTHETIC = [gencheck._change(n)[1] for n in range(1, gencheck.CYCLE + 1)]
needs_libyaml = pytest.mark.skipif(yamlpos._FastLoader is None, reason="PyYAML without libyaml")


def _slow(text: str) -> tuple[Any, ...]:
    return _comparable(yamlpos._load(yamlpos._StrictLoader, text, "f.yaml"))


def _comparable(result: tuple[Any, yamlpos.Positions, list[Any]]) -> tuple[Any, ...]:
    data, positions, errors = result
    return repr(data), positions.values, positions.keys, errors  # repr: nan equals nan


@needs_libyaml
def test_libyaml_agrees_on_every_spec_of_the_project() -> None:
    texts = [p.read_text(encoding="utf-8") for p in CORPUS] + SYNTHETIC
    assert len(texts) > 40
    fast_ok = 0
    for text in texts:
        slow = _slow(text)
        fast = yamlpos._load(yamlpos._FastLoader, text, "f.yaml")
        if not fast[2]:
            fast_ok += 1
            assert _comparable(fast) == slow, text
        assert _comparable(yamlpos.load(text, "f.yaml")) == slow, text
    assert fast_ok >= len(SYNTHETIC) + 5  # the valid ones did take the fast path


MUTATIONS = [
    ":",
    "-",
    " ",
    "  ",
    "\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    '"',
    "#",
    "&a ",
    "*a",
    "!!str ",
]
MUTATIONS += ["!x ", "?", "|", ">", "\t", "%", "@", "`", "é", "→", "\u00a0", "\r\n", "\ufeff", "0x"]
MUTATIONS += ["~", "null", "1e3", ".nan", "yes", "<<: ", "- ", ": ", "---\n", "...\n", "\\"]
MUTATIONS += ['"\\x41"', '"\\/"', '"\\u00e9"', '"\\N"', '"\\_"', '"a\\\nb"', "{a:b}", ":b", "-b"]
MUTATIONS += ["'a''b'", "!", "|-\n", "|+\n", ">2\n", "- - ", "? a\n", "a#b", " #c", "--- |\n"]
MUTATIONS += ["'multi\n  line'", '"multi\n line"', "[a, b]", "{}", "[]", "0o17", "+1", "1_000"]
MUTATIONS += ["2001-12-14", "=", "x: y: z", "\n\n", "\n    - ", "\u2713", "\U0001f600", "\x7f"]


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(text) + 1)
        kind = rng.randrange(6)
        if kind == 0:
            text = text[:i] + rng.choice(MUTATIONS) + text[i:]
        elif kind == 1:
            text = text[:i] + text[i + 1 :]
        else:
            lines = text.splitlines(keepends=True) or [""]
            j = rng.randrange(len(lines))
            if kind == 2:
                lines.insert(j, lines[rng.randrange(len(lines))])
            elif kind == 3:
                del lines[j]
            elif kind == 4:
                lines[j] = lines[j].replace("  ", "\t", 1)
            else:  # indent or dedent a line
                n = rng.randint(1, 3)
                lines[j] = " " * n + lines[j] if rng.random() < 0.5 else lines[j][n:]
            text = "".join(lines)
    return text


def _outcome(load: Any, text: str) -> Any:
    try:
        return load(text)
    except Exception as exc:  # e.g. PyYAML's reader refusing a control character
        return type(exc).__name__, str(exc)


@needs_libyaml
def test_libyaml_agrees_on_broken_and_odd_yaml() -> None:
    """Mutated specs: what load() returns (or raises) is exactly the pure-Python loader's."""
    rng = random.Random(20261125)
    bases = [p.read_text(encoding="utf-8") for p in CORPUS if p.stat().st_size < 4000]
    bases += SYNTHETIC
    fast = 0
    for _ in range(2000):
        text = _mutate(rng, rng.choice(bases))
        got = _outcome(lambda t: _comparable(yamlpos.load(t, "f.yaml")), text)
        assert got == _outcome(_slow, text), repr(text)
        fast += isinstance(got, tuple) and len(got) == 4 and not got[3]
    assert fast > 100  # valid mutants too, not only broken ones


def _history(tmp_path: Path, n: int) -> list[Change]:
    changes_dir = tmp_path / "changes"
    changes_dir.mkdir()
    (changes_dir / "0000_baseline.yaml").write_bytes(gencheck.BASELINE.read_bytes())
    for number in range(1, n):
        ident, text = gencheck._change(number)
        (changes_dir / f"{number:04d}_{ident}.yaml").write_text(text, encoding="utf-8")
    return load_changes(changes_dir, display_base=tmp_path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork()")
def test_two_processes_render_what_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = _history(tmp_path, render.FORK_THRESHOLD + 3)
    serial = render._render(render.make_env(), changes)
    assert len(serial) == 6 * len(changes)
    assert render._render_forked(render.make_env(), changes) == serial

    # A child that fails (here: raises) costs time, not files: its changes are rendered again.
    parent, real = os.getpid(), render._render

    def fails_in_the_child(env: Any, part: list[Change]) -> dict[str, str]:
        if os.getpid() != parent:
            raise RuntimeError("the child fails")
        return real(env, part)

    monkeypatch.setattr(render, "_render", fails_in_the_child)
    assert render._render_forked(render.make_env(), changes) == serial

    # generate() as a whole: the same files whether it forks or not.
    monkeypatch.setattr(render, "_render", real)
    forked = render.generate(changes)
    monkeypatch.setenv("SCHEMAGEN_JOBS", "1")
    assert not render._fork_helps(len(changes))
    assert render.generate(changes) == forked


def test_short_histories_render_in_one_process() -> None:
    assert not render._fork_helps(render.FORK_THRESHOLD - 1)
