"""Errors that point at a place in a spec file: ``file:line:col: field.path: message``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """``("operations", 2, "to")`` -> ``operations[2].to``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, order=True)
class SpecError:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecErrors(Exception):
    """One or more invalid specs; carries every error found in the run."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        self.errors = sorted(set(errors), key=lambda e: (e.file, e.line, e.column, e.message))
        super().__init__("\n".join(str(e) for e in self.errors))
