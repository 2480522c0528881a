"""The closed, portable vocabulary of column types and the conversions allowed between them."""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = (
    "smallint",
    "integer",
    "bigint",
    "decimal",
    "float",
    "varchar",
    "text",
    "boolean",
    "date",
    "timestamp",
    "timestamptz",
    "uuid",
    "json",
    "bytes",
    "enum",
)
VOCABULARY = (
    "smallint, integer, bigint, decimal(p,s), float, varchar(n), text, boolean, date, "
    "timestamp, timestamptz, uuid, json, bytes, enum(name: label, ...)"
)

_TYPE_RE = re.compile(
    r"^(?P<plain>smallint|integer|bigint|float|text|boolean|date|timestamptz|timestamp|uuid"
    r"|json|bytes)$"
    r"|^decimal\((?P<p>\d{1,4}),(?P<s>\d{1,4})\)$"
    r"|^varchar\((?P<n>\d{1,8})\)$"
    r"|^enum\((?P<enum>[a-z_][a-z0-9_]{0,62}):(?P<labels>[^()]*)\)$"
)
# An enum's label: lowercase letters, digits and _ (safe in SQL and YAML without quotes).
LABEL_RE = re.compile(r"[a-z0-9_]{1,63}")
# Names an enum type cannot have: SQLite's CHECK of a uuid or json column is <column>_is_<kind>.
RESERVED_ENUM_NAMES = frozenset({"uuid", "json"})

INTEGER_KINDS = ("smallint", "integer", "bigint")  # narrowest first
NUMERIC_KINDS = frozenset({*INTEGER_KINDS, "decimal", "float"})
STRING_KINDS = frozenset({"varchar", "text"})
TEMPORAL_KINDS = frozenset({"date", "timestamp", "timestamptz"})
# Characters of a uuid in its canonical form (8-4-4-4-12 lowercase hexadecimal digits).
UUID_LENGTH = 36

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
    name: str | None = None  # enum: the PostgreSQL type's name
    labels: tuple[str, ...] = ()  # enum: its values, in order

    def __str__(self) -> str:
        if self.kind == "enum":
            return f"enum({self.name}: {', '.join(self.labels)})"
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
        if self.kind in TEMPORAL_KINDS:
            return "temporal"
        return self.kind


class TypeError_(ValueError):
    """Raised for a type string outside the vocabulary."""


def parse_type(text: str) -> SqlType:
    """Parse a portable type name; whitespace inside the parentheses is ignored."""
    compact = re.sub(r"\s+", "", text.strip().lower()) if isinstance(text, str) else ""
    m = _TYPE_RE.match(compact)
    if m and m["enum"] is not None and re.sub(r"\s+", "", text.strip()) != compact:
        raise TypeError_(f"enum {text!r}: its name and labels are lowercase")
    if not m:
        raise TypeError_(f"unknown type {text!r} (expected one of {VOCABULARY})")
    if m["plain"]:
        return SqlType(m["plain"])
    if m["enum"] is not None:
        labels = tuple(m["labels"].split(",")) if m["labels"] else ()
        if not labels:
            raise TypeError_(f"enum {m['enum']} has no labels (enum(name: label, ...))")
        for label in labels:
            if not LABEL_RE.fullmatch(label):
                raise TypeError_(
                    f"enum label {label!r}: expected lowercase letters, digits and _ (at most 63)"
                )
        if len(set(labels)) != len(labels):
            raise TypeError_(f"enum {m['enum']} lists a label twice")
        if m["enum"] in RESERVED_ENUM_NAMES:
            raise TypeError_(f"an enum type cannot be named {m['enum']!r}")
        return SqlType("enum", name=m["enum"], labels=labels)
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
    """Why ``old`` cannot be converted to ``new`` by alter_column_type, or None if it can.

    Allowed: within the numeric types, within the string types, within date / timestamp /
    timestamptz, a string to uuid or json and back (a uuid only to a varchar that holds its
    36 characters). The table of docs/authoring.md ("Conversions") says which of them narrow
    and which rewrite on PostgreSQL; every allowed pair's reverse is allowed too, so every
    derived downgrade is."""
    if old == new:
        return f"column is already of type {new}"
    families = {old.family, new.family}
    if old.family == new.family and old.family in ("numeric", "string", "temporal"):
        return None
    if families == {"string", "enum"}:
        return None
    if old.kind == new.kind == "enum":
        return (
            f"cannot convert {old} to {new}: an enum's type or labels change through text "
            "(alter_column_type to text, then to the new enum)"
        )
    if families in ({"string", "uuid"}, {"string", "json"}):
        if old.kind == "uuid" and new.kind == "varchar" and (new.length or 0) < UUID_LENGTH:
            return (
                f"cannot convert uuid to {new}: a uuid is {UUID_LENGTH} characters "
                f"(convert to varchar({UUID_LENGTH}) or longer, or text)"
            )
        return None
    if "bytes" in families:
        return (
            f"cannot convert {old} to {new}: bytes converts to no other type and no type to "
            "bytes (add a new column and copy the values in the application)"
        )
    return (
        f"cannot convert {old} to {new} (alter_column_type converts within numeric types, "
        "within string types, within date/timestamp/timestamptz, and between a string type "
        "and uuid, json or an enum; see docs/authoring.md, Conversions)"
    )


# Integer kinds: [low, high) of the values each holds.
INTEGER_RANGE = {
    "smallint": (-(2**15), 2**15),
    "integer": (-(2**31), 2**31),
    "bigint": (-(2**63), 2**63),
}
# A double holds every integer up to 2^53 in magnitude, and 15 significant decimal digits.
FLOAT_EXACT_INTEGER = 2**53
FLOAT_DIGITS = 15
# Whole digits each integer kind needs (the most a decimal can need to hold it).
INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}


def narrows(old: SqlType, new: SqlType) -> bool:
    """Whether some value of ``old`` cannot be held by ``new`` unchanged: the conversion
    would cut, round or overflow it, or it is not in the new type's form (a string that is
    not a uuid or not JSON, a timestamp with a time of day going to a date). Every such
    conversion gets a pre-check naming the rows
    that do not fit, and its PostgreSQL conversion raises rather than cut a row that slipped
    past (float -> decimal is the one that rounds, to the decimal's scale, by design)."""
    p, s = new.precision or 0, new.scale or 0
    p0, s0 = old.precision or 0, old.scale or 0
    match new.kind:
        case "text":
            return False
        case "enum":
            return True  # a string that is not one of its labels
        case "varchar":
            if old.kind == "uuid":
                return (new.length or 0) < UUID_LENGTH
            if old.kind == "enum":
                return (new.length or 0) < max(len(label) for label in old.labels)
            return old.kind in ("text", "json") or (old.length or 0) > (new.length or 0)
        case "uuid" | "json":
            return old.family == "string"
        case "date":
            return old.kind in ("timestamp", "timestamptz")
        case "timestamp" | "timestamptz":
            return False
        case "float":
            return old.kind == "bigint" or (old.kind == "decimal" and p0 > FLOAT_DIGITS)
        case "smallint" | "integer" | "bigint":
            if old.kind == "decimal":
                return s0 > 0 or p0 > INTEGER_DIGITS[new.kind] - 1
            if old.kind in INTEGER_KINDS:
                return INTEGER_KINDS.index(old.kind) > INTEGER_KINDS.index(new.kind)
            return old.kind == "float"
        case "decimal":
            if old.kind == "decimal":
                return s0 > s or p0 - s0 > p - s
            return old.kind == "float" or INTEGER_DIGITS.get(old.kind, 0) > p - s
    return False


def narrowing_note(old: SqlType, new: SqlType) -> str:
    """What a narrowing conversion (see narrows) can refuse, for lint SG103."""
    if new.kind == "uuid":
        return "refuses a value that is not a uuid in canonical form"
    if new.kind == "json":
        return "refuses a value that is not JSON"
    if new.kind == "enum":
        return f"refuses a value that is not one of {', '.join(new.labels)}"
    if new.kind == "date":
        return "refuses a time of day other than midnight (it would be lost)"
    return "can lose precision"
