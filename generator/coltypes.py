"""The closed, portable vocabulary of column types and the conversions allowed between them."""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("integer", "bigint", "decimal", "float", "varchar", "text", "boolean", "timestamptz")
VOCABULARY = "integer, bigint, decimal(p,s), float, varchar(n), text, boolean, timestamptz"

_TYPE_RE = re.compile(
    r"^(?P<plain>integer|bigint|float|text|boolean|timestamptz)$"
    r"|^decimal\((?P<p>\d{1,4}),(?P<s>\d{1,4})\)$"
    r"|^varchar\((?P<n>\d{1,8})\)$"
)

NUMERIC_KINDS = frozenset({"integer", "bigint", "decimal", "float"})
STRING_KINDS = frozenset({"varchar", "text"})

# Largest precision PostgreSQL accepts for NUMERIC, and largest VARCHAR length.
MAX_PRECISION = 1000
MAX_VARCHAR = 10_485_760


@dataclass(frozen=True, order=True)
class SqlType:
    """A parsed portable type such as ``decimal(12,4)``."""

    kind: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.kind == "varchar":
            return f"varchar({self.length})"
        return self.kind

    @property
    def family(self) -> str:
        if self.kind in NUMERIC_KINDS:
            return "numeric"
        if self.kind in STRING_KINDS:
            return "string"
        return self.kind


class TypeError_(ValueError):
    """Raised for a type string outside the vocabulary."""


def parse_type(text: str) -> SqlType:
    """Parse a portable type name; whitespace inside the parentheses is ignored."""
    compact = re.sub(r"\s+", "", text.strip().lower()) if isinstance(text, str) else ""
    m = _TYPE_RE.match(compact)
    if not m:
        raise TypeError_(f"unknown type {text!r} (expected one of {VOCABULARY})")
    if m["plain"]:
        return SqlType(m["plain"])
    if m["n"] is not None:
        n = int(m["n"])
        if not 1 <= n <= MAX_VARCHAR:
            raise TypeError_(f"varchar length {n} out of range (expected 1 to {MAX_VARCHAR})")
        return SqlType("varchar", length=n)
    p, s = int(m["p"]), int(m["s"])
    if not 1 <= p <= MAX_PRECISION:
        raise TypeError_(f"decimal precision {p} out of range (expected 1 to {MAX_PRECISION})")
    if s > p:
        raise TypeError_(f"decimal scale {s} is larger than its precision {p}")
    return SqlType("decimal", precision=p, scale=s)


def conversion_problem(old: SqlType, new: SqlType) -> str | None:
    """Why ``old`` cannot be converted to ``new`` by alter_column_type, or None if it can."""
    if old == new:
        return f"column is already of type {new}"
    if old.family != new.family or old.family not in ("numeric", "string"):
        return (
            f"cannot convert {old} to {new} (alter_column_type converts within numeric types "
            "or within string types)"
        )
    return None
