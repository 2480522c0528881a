"""One YAML parser (PyYAML's pure-Python one under the strict composer): on broken and odd
YAML it answers with errors that have a position inside the text, never an exception.

This file held the comparison of the libyaml fast path with the pure-Python parser and of
two-process rendering with one process; both mechanisms are gone (issue 11: a warm
``generate`` does not parse at all, see tests/generator/test_cache.py), and what still
applies is kept: the project's specs and 2,000 mutants of them parse without an exception,
and every error points inside the document.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from benchmarks import gencheck
from generator import yamlpos

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted([*ROOT.glob("changes/*.yaml"), *ROOT.glob("tests/golden/**/*.yaml")])
SYNTHETIC = [gencheck._change(n)[1] for n in range(1, gencheck.CYCLE + 1)]


def test_every_spec_of_the_project_parses() -> None:
    texts = [p.read_text(encoding="utf-8") for p in CORPUS] + SYNTHETIC
    assert len(texts) > 40
    valid = 0
    for text in texts:
        data, positions, errors = yamlpos.load(text, "f.yaml")
        if not errors:
            valid += 1
            assert isinstance(data, dict), text
            assert positions.of_value(("id",)) != (1, 1) or text.startswith("id:"), text
    assert valid >= len(SYNTHETIC) + 5


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


def test_broken_and_odd_yaml_is_an_error_with_a_position_never_an_exception() -> None:
    """Mutated specs: load() returns (it does not raise), and each error's line and column
    lie inside the document."""
    rng = random.Random(20261125)
    bases = [p.read_text(encoding="utf-8") for p in CORPUS if p.stat().st_size < 4000]
    bases += SYNTHETIC
    valid = broken = 0
    for _ in range(2000):
        text = _mutate(rng, rng.choice(bases))
        data, _, errors = yamlpos.load(text, "f.yaml")
        lines = text.splitlines() or [""]
        for error in errors:
            assert error.file == "f.yaml"
            assert 1 <= error.line <= len(lines) + 1, (repr(text), str(error))
            assert error.column >= 1, (repr(text), str(error))
        if errors:
            broken += 1
            assert data is None or isinstance(data, dict | list), repr(text)
        else:
            valid += 1
    assert valid > 100 and broken > 100  # valid mutants too, not only broken ones


def _positions(node: yaml.Node, path: tuple[object, ...], out: dict[object, object]) -> None:
    """Every value's position as PyYAML's composer marks its node."""
    out[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _positions(value, (*path, key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, (*path, i), out)


def test_the_data_and_positions_are_pyyamls() -> None:
    """The data composed from the events is what PyYAML's safe loader makes of the text, and
    each value's position is where its composer's node starts (specs and valid mutants)."""
    rng = random.Random(20261204)
    bases = [p.read_text(encoding="utf-8") for p in CORPUS if p.stat().st_size < 4000]
    texts = bases + SYNTHETIC + [_mutate(rng, rng.choice(bases)) for _ in range(1000)]
    compared = 0
    for text in texts:
        data, positions, errors = yamlpos.load(text, "f.yaml")
        if errors:
            continue
        # the same parser (libyaml takes a tab pure PyYAML refuses, counts a BOM's column
        # otherwise)
        loader = yaml.CSafeLoader if yamlpos.LIBYAML else yaml.SafeLoader
        assert data == yaml.load(text, Loader=loader), repr(text)
        expected: dict[object, object] = {}
        _positions(yaml.compose(text, Loader=loader), (), expected)
        assert positions.values == expected, repr(text)
        compared += 1
    assert compared > 300


def test_nesting_is_bounded_by_the_composer() -> None:
    """MAX_DEPTH levels (the document's mapping is the first) parse; one more is an error
    naming the limit (libyaml's own limit, a thousand levels, is far above it)."""
    n = yamlpos.MAX_DEPTH - 1
    deep = "a: " + "[" * n + "]" * n + "\n"
    assert not yamlpos.load(deep, "f.yaml")[2]
    deeper = "a: " + "[" * (n + 1) + "]" * (n + 1) + "\n"
    (error,) = yamlpos.load(deeper, "f.yaml")[2]
    assert (error.line, error.message) == (1, f"nested deeper than {yamlpos.MAX_DEPTH} levels")


def test_a_reader_error_points_at_the_character_after_non_ascii_text() -> None:
    """libyaml reports a byte offset: the column counts characters all the same."""
    (error,) = yamlpos.load('id: x\nname: "éé→\x07"\n', "f.yaml")[2]
    assert (error.line, error.column) == (2, 11)
    assert "U+0007" in error.message
