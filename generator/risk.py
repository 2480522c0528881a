"""What a column type change does to a live table, per dialect: decided here, once.

PostgreSQL 15 skips the table rewrite of ``ALTER COLUMN ... TYPE`` when the old values are
valid values of the new type without conversion: the cast is binary-coercible (varchar to
text) or a length/precision coercion that its support function proves a no-op
(``varchar_support``: a longer or unlimited varchar; ``numeric_support``: a larger precision
at the same scale). Every other conversion rewrites the table and its indexes. Either way the
statement takes ACCESS EXCLUSIVE: without a rewrite it is held for a catalogue change only.
``tests/generator/test_risk_truth.py`` proves every pair on a real server (relfilenode before
and after; the lock as ``pg_locks`` shows it from a second connection).
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.coltypes import SqlType

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"


@dataclass(frozen=True)
class TypeChangeRisk:
    lock: str  # the strongest lock the change takes on the table
    rewrites: bool  # every row is rewritten (PostgreSQL) or copied into a new table (SQLite)
    why: str  # one line for the review


def _pg_no_rewrite(old: SqlType, new: SqlType) -> str | None:
    """Why PostgreSQL keeps the table's storage for ``old`` -> ``new``, or None."""
    if old.kind == "varchar" and new.kind == "text":
        return "varchar to text is binary-coercible"
    if old.kind == "varchar" and new.kind == "varchar":
        assert old.length is not None and new.length is not None
        if new.length >= old.length:
            return f"a longer varchar ({old.length} to {new.length}) needs no conversion"
    if old.kind == "decimal" and new.kind == "decimal":
        assert old.precision is not None and new.precision is not None
        if old.scale == new.scale and new.precision >= old.precision:
            return (
                f"numeric at the same scale with a larger precision ({old} to {new}) "
                "needs no conversion"
            )
    return None


def postgresql_type_change(old: SqlType, new: SqlType) -> TypeChangeRisk:
    why = _pg_no_rewrite(old, new)
    if why is not None:
        return TypeChangeRisk(
            ACCESS_EXCLUSIVE, False, f"catalogue-only: {why}; held briefly, no rewrite"
        )
    return TypeChangeRisk(
        ACCESS_EXCLUSIVE,
        True,
        f"rewrites the table and its indexes ({old} to {new} converts every value); "
        "reads and writes wait",
    )


def type_change(old: SqlType, new: SqlType, dialect: str) -> TypeChangeRisk:
    """The risk of ``old`` -> ``new`` on ``dialect``; SQLite rebuilds the table (batch mode)."""
    if dialect == "postgresql":
        return postgresql_type_change(old, new)
    return TypeChangeRisk(
        "database write lock", True, "the table is rebuilt (every row copied into a new table)"
    )


# A row trigger created (or replaced) on a live table: CREATE TRIGGER takes SHARE ROW
# EXCLUSIVE, a catalogue change that reads no row; writers wait only while it commits, and it
# waits (the runner's short lock_timeout, retried) for the writes already running. DROP
# TRIGGER takes ACCESS EXCLUSIVE, as briefly. tests/generator/test_set_nullable.py shows both
# in pg_locks from a second connection.
TRIGGER_LOCK = "SHARE ROW EXCLUSIVE"
DROP_TRIGGER_LOCK = ACCESS_EXCLUSIVE


def trigger_risk(purpose: str) -> str:
    """The review's words for a temporary row trigger that ``purpose``."""
    return (
        f"a temporary BEFORE INSERT OR UPDATE trigger that {purpose}: {TRIGGER_LOCK} to create "
        f"it, {DROP_TRIGGER_LOCK} to drop it, each catalogue-only and brief"
    )
