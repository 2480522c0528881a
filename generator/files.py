"""Write generated files, or compare them with what is on disk (``generate --check``).

Both consume the same ``{path: text}`` from :func:`generator.render.generate`. Only files the
generator owns are ever written or reported as orphans; env.py and friends are left alone.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

OWNED_PATTERNS = ("versions/*.py", "validation/*/*.sql", "review/*.md", "schemagen.sum")


def owned_files(out_dir: Path) -> set[str]:
    found: set[str] = set()
    for pattern in OWNED_PATTERNS:
        found.update(
            p.relative_to(out_dir).as_posix() for p in out_dir.glob(pattern) if p.is_file()
        )
    return found


@dataclass
class Drift:
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.orphaned)


def compare(files: dict[str, str], out_dir: Path, label: str = "generated_migrations") -> Drift:
    drift = Drift()
    for path, text in sorted(files.items()):
        target = out_dir / path
        if not target.is_file():
            drift.missing.append(path)
            drift.diff.extend(
                difflib.unified_diff([], text.splitlines(True), "/dev/null", f"{label}/{path}")
            )
            continue
        current = target.read_text(encoding="utf-8")
        if current != text:
            drift.changed.append(path)
            drift.diff.extend(
                difflib.unified_diff(
                    current.splitlines(True),
                    text.splitlines(True),
                    f"{label}/{path} (on disk)",
                    f"{label}/{path} (rendered from the specs)",
                )
            )
    for path in sorted(owned_files(out_dir) - set(files)):
        drift.orphaned.append(path)
    return drift


def write(files: dict[str, str], out_dir: Path) -> tuple[list[str], list[str]]:
    """Write every file that differs and delete orphans; returns (written, deleted)."""
    written, deleted = [], []
    for path, text in sorted(files.items()):
        target = out_dir / path
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(path)
    for path in sorted(owned_files(out_dir) - set(files)):
        (out_dir / path).unlink()
        deleted.append(path)
    return written, deleted


SUM_FILE = "schemagen.sum"


def _h1(text: str) -> str:
    return "h1:" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def sum_file(files: dict[str, str]) -> str:
    """Like atlas.sum: a hash per generated file, in order, and a hash over those lines.

    It catches a hand edit, a swap of two files' contents, and an edit of the sum itself by
    hashes alone, so `generate --check` holds even when a renderer upgrade changes the output.
    """
    lines = [f"{path} {_h1(text)}" for path, text in sorted(files.items()) if path != SUM_FILE]
    body = "\n".join(lines) + "\n"
    return f"{_h1(body)}\n{body}"


def sum_problems(out_dir: Path) -> list[str]:
    """Where the files on disk disagree with the committed sum file (hashes only)."""
    path = out_dir / SUM_FILE
    if not path.is_file():
        return [f"{SUM_FILE} is missing"]
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or _h1("\n".join(lines[1:]) + "\n") != lines[0]:
        return [f"{SUM_FILE} was edited: its first line is not the hash of the others"]
    listed = {line.rsplit(" ", 1)[0]: line for line in lines[1:]}
    on_disk = {p: (out_dir / p).read_text(encoding="utf-8") for p in owned_files(out_dir)}
    on_disk.pop(SUM_FILE, None)
    problems = [f"{p} is not in {SUM_FILE}" for p in sorted(set(on_disk) - set(listed))]
    problems += [
        f"{p} is listed in {SUM_FILE} but missing" for p in sorted(set(listed) - set(on_disk))
    ]
    problems += [
        f"{p} differs from its hash in {SUM_FILE}"
        for p, text in sorted(on_disk.items())
        if p in listed and listed[p] != f"{p} {_h1(text)}"
    ]
    return problems
