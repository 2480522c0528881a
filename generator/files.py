"""Write generated files, or compare them with what is on disk (``generate --check``).

Both consume the same ``{path: text}`` from :func:`generator.render.generate`. Only files the
generator owns are ever written or reported as orphans; env.py and friends are left alone.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

OWNED_PATTERNS = ("versions/*.py", "validation/*/*.sql", "review/*.md")


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
