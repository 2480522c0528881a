"""``rename_column``: rename a column in place. The schema renames it everywhere it is named:
the table's indexes (and their predicates), primary and unique keys, checks, its own foreign
key and the foreign keys of other tables that reference it; constraint and index names stay.
Catalogue-only on both dialects (no rewrite, no rebuild), except on SQLite for a uuid, json or
enum column, whose CHECK is named after it: that table is rebuilt with the CHECK renamed. The
derived downgrade renames back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from generator.coltypes import SqlType
from generator.dialects import POSTGRESQL, SQLITE, type_check
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step
from generator.plan import RECREATE_TABLE, Group
from generator.spec import Identifier
from generator.state import Schema, Table

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class RenameColumn(OperationSpec):
    op: Literal["rename_column"]
    table: Identifier
    column: Identifier
    to: Identifier

    position: ClassVar[int] = 70
    templates: ClassVar[tuple[str, ...]] = ("ops/rename_column.j2",)
    example: ClassVar[str] = "{op: rename_column, table: t, column: c, to: d}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `column`, `to`",
        "rename the column (catalogue only); indexes, keys and checks follow it, their names "
        "stay; lint SG110: code still using the old name breaks",
        "rename it back",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        found = r.table_column(self.table, self.column, problems)
        if found is None:
            return [], problems
        table, column = found
        if self.to == self.column:
            problems.append((("to",), f"column {self.table}.{self.column} is already named so"))
        elif table.column(self.to) is not None:
            problems.append((("to",), f"column {self.to!r} already exists in {self.table!r}"))
        # SQLite keeps a renamed column's constraint names: a uuid, json or enum column's CHECK
        # (named after the column, dialects.type_check) is renamed in a table rebuild.
        typed = column.type if type_check(column.name, column.type, SQLITE) else None
        return [RenameColumnStep(self.table, self.column, self.to, typed)], problems


def _renamed(columns: tuple[str, ...], old: str, new: str) -> tuple[str, ...]:
    return tuple(new if c == old else c for c in columns)


def _rename_in(t: Table, table: str, old: str, new: str) -> Table:
    """``t`` with ``table.old`` called ``new`` wherever ``t`` names it."""
    fks = tuple(f.ref_renamed(table, old, new) for f in t.foreign_keys)
    if t.name != table:
        return replace(t, foreign_keys=fks) if fks != t.foreign_keys else t
    return replace(
        t,
        columns=tuple(replace(c, name=new) if c.name == old else c for c in t.columns),
        indexes=tuple(i.renamed(old, new) for i in t.indexes),
        foreign_keys=tuple(f.renamed(old, new) for f in fks),
        uniques=tuple(replace(u, columns=_renamed(u.columns, old, new)) for u in t.uniques),
        checks=tuple(c.renamed(old, new) for c in t.checks),
    )


@dataclass(frozen=True)
class RenameColumnStep(Step):
    table_name: str
    column: str
    to: str
    # The column's type when SQLite holds it by a CHECK named after the column (uuid, json,
    # enum): then SQLite renames it in a table rebuild, the CHECK renamed with it.
    typed: SqlType | None = None

    kind: ClassVar[str] = "rename_column"
    template: ClassVar[str] = "ops/rename_column.j2"

    def apply(self, schema: Schema) -> Schema:
        return schema.map(lambda t: _rename_in(t, self.table_name, self.column, self.to))

    def reverse(self) -> RenameColumnStep:
        return RenameColumnStep(self.table_name, self.to, self.column, self.typed)

    def group(self, dialect: str) -> Group | None:
        return RECREATE_TABLE if dialect == SQLITE and self.typed is not None else None

    def type_checks(self) -> tuple[tuple[str, str], tuple[str, str]] | None:
        """SQLite: (name, SQL) of the column's CHECK before and after the rename."""
        if self.typed is None:
            return None
        before = type_check(self.column, self.typed, SQLITE)
        after = type_check(self.to, self.typed, SQLITE)
        return (before, after) if before and after else None

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "catalogue-only rename; held briefly, no rewrite",
                blocks="reads and writes, briefly",
            )
        if self.typed is not None:
            return Risk(
                "database write lock",
                True,
                "rebuilds the table: its CHECK is named after the column",
                scans=True,
                blocks="writes",
            )
        return Risk(
            "database write lock",
            False,
            "ALTER TABLE RENAME COLUMN: no rebuild",
            blocks="writes",
        )

    def findings(self, change: Change) -> Iterator[Finding]:
        yield Finding(
            "SG110",
            f"{self.table_name}.{self.column} is renamed to {self.to}: running code that "
            f"still uses {self.column} fails from the moment the rename commits",
        )

    def describe(self) -> str:
        return f"rename column `{self.table_name}.{self.column}` → `{self.to}`"
