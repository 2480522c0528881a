"""The DDL that neither SQLAlchemy nor Alembic has a construct for, as small DDL elements.

A migration runs one with ``op.execute(ddl.ValidateConstraint("orders", "ck_total"))``; it
compiles (``@compiles``) for PostgreSQL, the only dialect these statements exist on, and every
identifier in it is quoted by the dialect's ``IdentifierPreparer`` (only where PostgreSQL needs
it, as Alembic's own operations do), every string by its literal renderer. Everything else a
migration runs is an Alembic operation (``op.create_index(..., postgresql_concurrently=True)``,
``op.create_foreign_key(..., postgresql_not_valid=True)``, ``op.drop_constraint(...,
if_exists=True)``, ``op.alter_column(..., new_column_name=...)``) or SQLAlchemy's own
(``CreateEnumType``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler

from generator import dialects


class _Statement(ExecutableDDLElement):
    """A PostgreSQL DDL statement of names only (no parameters, nothing to cache)."""

    inherit_cache = False


class ValidateConstraint(_Statement):
    """``ALTER TABLE t VALIDATE CONSTRAINT c``: scans the table for a NOT VALID key or check
    under SHARE UPDATE EXCLUSIVE (reads and writes go on)."""

    def __init__(self, table: str, name: str) -> None:
        self.table, self.name = table, name


class AddUniqueUsingIndex(_Statement):
    """``ALTER TABLE t ADD CONSTRAINT c UNIQUE USING INDEX i``: a unique index built
    CONCURRENTLY attached as the constraint (catalogue only; the index takes its name)."""

    def __init__(self, table: str, name: str, index: str | None = None) -> None:
        self.table, self.name, self.index = table, name, index or name


class RenameConstraint(_Statement):
    """``ALTER TABLE t RENAME CONSTRAINT old TO new`` (a key's index is renamed with it)."""

    def __init__(self, table: str, old: str, new: str) -> None:
        self.table, self.old, self.new = table, old, new


class RenameIndex(_Statement):
    """``ALTER INDEX old RENAME TO new``."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new


class AlterSequenceType(_Statement):
    """``ALTER SEQUENCE s AS type``: a serial key's sequence follows its column's new integer
    type (its maximum with it). ``type_sql`` is the type as the dialect spells it."""

    def __init__(self, sequence: str, type_sql: str) -> None:
        self.sequence, self.type_sql = sequence, type_sql


class DropType(_Statement):
    """``DROP TYPE IF EXISTS name`` (SQLAlchemy's ``DropEnumType`` has no IF EXISTS)."""

    def __init__(self, name: str) -> None:
        self.name = name


@dataclass(frozen=True)
class NewAction:
    """A foreign key as it is after :class:`SwapForeignKeyActions`, with its new ON DELETE
    action as the spec names it (``cascade``, ``set_null``, ``restrict``, ``no_action``,
    ``set_default``)."""

    table: str
    name: str
    columns: Sequence[str]  # the key's columns (several: a composite key)
    ref_table: str
    ref_columns: Sequence[str]
    on_delete: str


# How a swap's DO block starts: a statement that changes no row (generator.runtime lets it run
# in an autocommit block, where it commits each key on its own).
SWAP_BLOCK = "DO $swap$"


class SwapForeignKeyActions(_Statement):
    """One ``DO`` block that gives each foreign key its new ON DELETE action: the tables
    locked first (referencing tables before the ones they reference, the runner's
    lock_timeout shared among them), then per key, unless it already has the action (a
    re-run): the new key added NOT VALID under a temporary name, the old one dropped, the new
    one renamed to the old name. VALIDATE CONSTRAINT comes after, in its own transaction."""

    def __init__(self, keys: Sequence[NewAction]) -> None:
        self.keys = list(keys)

    def lock_order(self) -> list[str]:
        return dialects.fk_lock_order(self.keys)


def _q(compiler: DDLCompiler, name: str) -> str:
    return compiler.preparer.quote(name)


def _literal(compiler: DDLCompiler, value: str) -> str:
    return str(compiler.sql_compiler.render_literal_value(value, sa.String()))


@compiles(ValidateConstraint, "postgresql")
def _validate(element: ValidateConstraint, compiler: DDLCompiler, **kw: Any) -> str:
    return (
        f"ALTER TABLE {_q(compiler, element.table)} "
        f"VALIDATE CONSTRAINT {_q(compiler, element.name)}"
    )


@compiles(AddUniqueUsingIndex, "postgresql")
def _unique_using_index(element: AddUniqueUsingIndex, compiler: DDLCompiler, **kw: Any) -> str:
    return (
        f"ALTER TABLE {_q(compiler, element.table)} ADD CONSTRAINT {_q(compiler, element.name)} "
        f"UNIQUE USING INDEX {_q(compiler, element.index)}"
    )


@compiles(RenameConstraint, "postgresql")
def _rename_constraint(element: RenameConstraint, compiler: DDLCompiler, **kw: Any) -> str:
    return (
        f"ALTER TABLE {_q(compiler, element.table)} RENAME CONSTRAINT "
        f"{_q(compiler, element.old)} TO {_q(compiler, element.new)}"
    )


@compiles(RenameIndex, "postgresql")
def _rename_index(element: RenameIndex, compiler: DDLCompiler, **kw: Any) -> str:
    return f"ALTER INDEX {_q(compiler, element.old)} RENAME TO {_q(compiler, element.new)}"


@compiles(AlterSequenceType, "postgresql")
def _alter_sequence_type(element: AlterSequenceType, compiler: DDLCompiler, **kw: Any) -> str:
    return f"ALTER SEQUENCE {_q(compiler, element.sequence)} AS {element.type_sql}"


@compiles(DropType, "postgresql")
def _drop_type(element: DropType, compiler: DDLCompiler, **kw: Any) -> str:
    return f"DROP TYPE IF EXISTS {_q(compiler, element.name)}"


def swap_name(name: str) -> str:
    """The temporary name of a key's replacement while both exist (63 bytes at most)."""
    return name[:58] + "_swap"


@compiles(SwapForeignKeyActions, "postgresql")
def _swap(element: SwapForeignKeyActions, compiler: DDLCompiler, **kw: Any) -> str:
    tables = element.lock_order()
    lines = [
        SWAP_BLOCK,
        "DECLARE",
        "  wait_ms integer := (SELECT setting::integer FROM pg_settings "
        "WHERE name = 'lock_timeout');",
        "BEGIN",
        "  IF wait_ms > 0 THEN",
        "    PERFORM set_config('lock_timeout', "
        f"greatest(1, wait_ms / {len(tables)})::text || 'ms', true);",
        "  END IF;",
        f"  LOCK TABLE {', '.join(_q(compiler, t) for t in tables)} IN ACCESS EXCLUSIVE MODE;",
        "  IF wait_ms > 0 THEN",
        "    PERFORM set_config('lock_timeout', wait_ms::text || 'ms', true);",
        "  END IF;",
    ]
    for fk in element.keys:
        table, name, temp = (_q(compiler, n) for n in (fk.table, fk.name, swap_name(fk.name)))
        code = _literal(compiler, dialects.PG_FK_ACTION_CODE[fk.on_delete])
        lines += [
            "  IF NOT EXISTS (SELECT 1 FROM pg_constraint AS con JOIN pg_class AS c "
            "ON c.oid = con.conrelid",
            "      JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema()",
            f"      AND c.relname = {_literal(compiler, fk.table)} "
            f"AND con.conname = {_literal(compiler, fk.name)}",
            f"      AND con.contype = 'f' AND con.confdeltype = {code}) THEN",
            f"    ALTER TABLE {table} ADD CONSTRAINT {temp}",
            f"      FOREIGN KEY ({', '.join(_q(compiler, c) for c in fk.columns)}) REFERENCES "
            f"{_q(compiler, fk.ref_table)} ({', '.join(_q(compiler, c) for c in fk.ref_columns)})",
            f"      ON DELETE {dialects.FK_ACTION_SQL[fk.on_delete]} NOT VALID;",
            f"    ALTER TABLE {table} DROP CONSTRAINT {name};",
            f"    ALTER TABLE {table} RENAME CONSTRAINT {temp} TO {name};",
            "  END IF;",
        ]
    lines += ["END", "$swap$"]
    return "\n".join(lines)
