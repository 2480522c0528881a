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


# Integer kinds: [low, high) of the values each holds.
INTEGER_RANGE = {"integer": (-(2**31), 2**31), "bigint": (-(2**63), 2**63)}
# A double holds every integer up to 2^53 in magnitude, and 15 significant decimal digits.
FLOAT_EXACT_INTEGER = 2**53
FLOAT_DIGITS = 15
# Whole digits each integer kind needs (the most a decimal can need to hold it).
INTEGER_DIGITS = {"integer": 10, "bigint": 19}


def narrows(old: SqlType, new: SqlType) -> bool:
    """Whether some value of ``old`` cannot be held by ``new`` unchanged: the conversion
    would cut, round or overflow it. Every such conversion gets a pre-check naming the rows
    that do not fit, and its PostgreSQL conversion raises rather than cut a row that slipped
    past (float -> decimal is the one that rounds, to the decimal's scale, by design)."""
    p, s = new.precision or 0, new.scale or 0
    p0, s0 = old.precision or 0, old.scale or 0
    match new.kind:
        case "text":
            return False
        case "varchar":
            return old.kind == "text" or (old.length or 0) > (new.length or 0)
        case "float":
            return old.kind == "bigint" or (old.kind == "decimal" and p0 > FLOAT_DIGITS)
        case "integer" | "bigint":
            if old.kind == "decimal":
                return s0 > 0 or p0 > INTEGER_DIGITS[new.kind] - 1
            return old.kind == "float" or (old.kind == "bigint" and new.kind == "integer")
        case "decimal":
            if old.kind == "decimal":
                return s0 > s or p0 - s0 > p - s
            return old.kind == "float" or INTEGER_DIGITS.get(old.kind, 0) > p - s
    return False
