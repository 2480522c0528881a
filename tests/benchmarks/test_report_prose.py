"""docs/performance.md's prose holds no number typed by hand: every measurement in it is
rendered from the results it describes, every configured size from the code that sets it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import benchmarks.report

REPORT = Path(benchmarks.report.__file__)
# Names that contain digits but are not numbers the page reports: revision ids, type names.
ALLOWED = re.compile(
    r"\b0{3}\d\b"  # a revision: 0000 ... 0009
    r"|\bDECIMAL\(12,4\)|\bdecimal\(12,4\)"  # the baseline's price type, by its SQL name
    r"|\bphase 1\b|\bsqlite3\b|\bpsycopg 3\b"
    r"|\bbelow 1\b|\bN - 1\b"  # a ratio's neutral value; arithmetic on a size
    r"|--\w+ \d+"  # the arguments of an example command line
)
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _docstrings(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def prose_numbers(source: str) -> list[tuple[int, str, str]]:
    """(line, number, context) of every digit run in the prose of ``source``: the text of
    its string literals and f-strings of at least four words, docstrings, format specs and
    ``{placeholders}`` left out."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            skip.update(id(n) for n in ast.walk(node.format_spec))
    texts: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # an f-string: its text around the placeholders
            parts = [v for v in node.values if isinstance(v, ast.Constant)]
            skip.update(id(v) for v in parts)
            texts.append((node.lineno, " ".join(str(v.value) for v in parts)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            texts.append((node.lineno, node.value))
    found = []
    for line, raw in sorted(texts):
        if len(raw.split()) < 4:
            continue
        text = ALLOWED.sub("", PLACEHOLDER.sub("", raw))
        for match in re.finditer(r"\d[\d,.]*", text):
            context = text[max(0, match.start() - 40) : match.end() + 20].replace("\n", " ")
            found.append((line, match.group(), context))
    return found


def test_the_report_prose_has_no_number_typed_by_hand() -> None:
    assert prose_numbers(REPORT.read_text()) == []


def test_the_scan_finds_a_number_typed_by_hand() -> None:
    source = '''
NOTES = """\\
- a note: COPY took 303 ms at head against {copy_ms} ms, and 0000 is a revision.
"""
def f(x: float) -> str:
    """A docstring may say 12 things."""
    return f"measured at {x:.2f} ms over 20,000 rows in this run" + "too short 5"
'''
    assert [number for _, number, _ in prose_numbers(source)] == ["303", "20,000"]
