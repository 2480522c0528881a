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
    # What the comparison read, for sum_problems to check without reading it again.
    on_disk: dict[str, str] = field(default_factory=dict, repr=False)
    owned: set[str] = field(default_factory=set, repr=False)

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.orphaned)


def compare(files: dict[str, str], out_dir: Path, label: str = "generated_migrations") -> Drift:
    drift = Drift()
    for path, text in sorted(files.items()):
        try:
            current = (out_dir / path).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            drift.missing.append(path)
            drift.diff.extend(
                difflib.unified_diff([], text.splitlines(True), "/dev/null", f"{label}/{path}")
            )
            continue
        drift.on_disk[path] = current
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
    drift.owned = owned_files(out_dir)
    for path in sorted(drift.owned - set(files)):
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


def _sum_lines(sum_text: str) -> dict[str, str]:
    return {line.rsplit(" ", 1)[0]: line for line in sum_text.splitlines()[1:]}


def sum_problems(
    out_dir: Path, drift: Drift | None = None, rendered: dict[str, str] | None = None
) -> list[str]:
    """Where the files on disk disagree with the committed sum file (hashes only).

    With the ``drift`` of :func:`compare` and the ``rendered`` files it compared, the files
    it read are not read again, and a file equal to its rendered text is not hashed again:
    its line is the one of the rendered sum file (the same text has the same hash).
    """
    path = out_dir / SUM_FILE
    if not path.is_file():
        return [f"{SUM_FILE} is missing"]
    read = drift.on_disk if drift is not None else {}
    owned = drift.owned if drift is not None else owned_files(out_dir)
    sum_text = read.get(SUM_FILE)
    if sum_text is None:
        sum_text = path.read_text(encoding="utf-8")
    lines = sum_text.splitlines()
    if not lines or _h1("\n".join(lines[1:]) + "\n") != lines[0]:
        return [f"{SUM_FILE} was edited: its first line is not the hash of the others"]
    listed = _sum_lines(sum_text)
    on_disk = {
        p: read[p] if p in read else (out_dir / p).read_text(encoding="utf-8") for p in owned
    }
    on_disk.pop(SUM_FILE, None)
    rendered = rendered or {}
    rendered_lines = _sum_lines(rendered[SUM_FILE]) if SUM_FILE in rendered else {}

    def line_of(p: str, text: str) -> str:
        if p in rendered_lines and rendered.get(p) == text:
            return rendered_lines[p]
        return f"{p} {_h1(text)}"

    problems = [f"{p} is not in {SUM_FILE}" for p in sorted(set(on_disk) - set(listed))]
    problems += [
        f"{p} is listed in {SUM_FILE} but missing" for p in sorted(set(listed) - set(on_disk))
    ]
    problems += [
        f"{p} differs from its hash in {SUM_FILE}"
        for p, text in sorted(on_disk.items())
        if p in listed and listed[p] != line_of(p, text)
    ]
    return problems
