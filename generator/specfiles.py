"""Which files under ``changes/`` are specs, and how they are named: shared by the loader
and by the cache (generator.cache), which must accept exactly the histories the loader does
without importing it (and Pydantic with it)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

# ASCII digits only: \d would take "٠٠٠٦" (Arabic-Indic digits) for 0006.
FILE_RE = re.compile(r"^(?P<num>[0-9]{4})_(?P<id>[a-z_][a-z0-9_]*)\.yaml$")
# A number of four non-ASCII digits, to name the mistake instead of "bad file name".
NON_ASCII_NUMBER = re.compile(r"^(?P<num>\d{4})_")
# Limits that keep a hostile or runaway spec from exhausting the stack or memory.
MAX_SPEC_BYTES = 16 * 1024 * 1024


def spec_files(changes_dir: Path) -> list[Path]:
    """The spec files of a changes folder, in the order they are loaded."""
    return sorted(p for p in changes_dir.iterdir() if p.suffix in (".yaml", ".yml"))


def display_name(file: Path, base: Path | None) -> str:
    base = base or Path.cwd()
    try:
        return os.path.relpath(file, base) if file.is_absolute() else str(file)
    except ValueError:  # another drive on Windows
        return str(file)


def text_digest(text: str) -> str:
    """The digest of a spec's text as the loader read it (the cache keys changes on it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
