"""``add_column``: a new column (no key: constrain it in a later change); its inverse is the
schema-only ``DropColumnStep`` of ``drop_column`` (generator/ops/drop_column.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from generator.dialects import POSTGRESQL, default_is_clock
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step
from generator.plan import RECREATE_TABLE, Group
from generator.spec import ColumnSpec, Identifier
from generator.state import Column, Schema

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class AddColumn(OperationSpec):
    op: Literal["add_column"]
    table: Identifier
    column: ColumnSpec

    position: ClassVar[int] = 50
    templates: ClassVar[tuple[str, ...]] = ("ops/add_column.j2",)
    example: ClassVar[str] = (
        "op: add_column\ntable: t\ncolumn: {name: c, type: timestamptz, nullable: true}"
    )
    doc: ClassVar[tuple[str, str, str]] = ("`table`, `column`", "add it", "drop it")

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        if table.column(self.column.name) is not None:
            problems.append(
                (
                    ("column", "name"),
                    f"column {self.column.name!r} already exists in {self.table!r}",
                )
            )
        column = r.make_column(self.table, self.column, ("column",), problems)
        for field_name in ("primary_key", "unique", "references"):
            if getattr(self.column, field_name):
                problems.append(
                    (
                        ("column", field_name),
                        f"add_column does not support {field_name}; add the column, then "
                        "constrain it in a later change (add_unique, add_foreign_key, "
                        "set_nullable)",
                    )
                )
        # A NOT NULL column without a default is lint rule SG108: an error unless acknowledged
        # (fine on a table known to be empty).
        return [AddColumnStep(self.table, column)], problems


def can_add_natively(column: Column, dialect: str) -> bool:
    """SQLite's ALTER TABLE ADD COLUMN refuses non-constant defaults and keys."""
    if dialect == POSTGRESQL:
        return True
    if column.primary_key:
        return False
    return column.default is None or not default_is_clock(column.default, column.type)


@dataclass(frozen=True)
class AddColumnStep(Step):
    table_name: str
    column: Column

    kind: ClassVar[str] = "add_column"
    template: ClassVar[str] = "ops/add_column.j2"

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        return schema.put(replace(t, columns=(*t.columns, self.column)))

    def apply_in(self, r: Resolver) -> None:
        r.put_column(self.table_name, self.column)

    def reverse(self) -> Step:
        from generator.ops.drop_column import DropColumnStep

        return DropColumnStep(self.table_name, self.column)

    def group(self, dialect: str) -> Group | None:
        return None if can_add_natively(self.column, dialect) else RECREATE_TABLE

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL and self.column.domain is not None:
            # the derived downgrade of a range-checked column's drop (state.Domain)
            return Risk(
                "ACCESS EXCLUSIVE",
                True,
                "PostgreSQL 15 rewrites the table to add a column of a domain with a CHECK "
                "(docs/online.md)",
                scans=True,
                blocks="reads and writes",
            )
        if dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "catalogue-only change",
                blocks="reads and writes",
            )
        if not can_add_natively(self.column, dialect):
            return Risk(
                "database write lock",
                True,
                "SQLite adds a column with a non-constant default by rebuilding the table",
                scans=True,
                blocks="writes",
            )
        return Risk("database write lock", False, "quick (ALTER TABLE ADD COLUMN)", blocks="writes")

    def findings(self, change: Change) -> Iterator[Finding]:
        c = self.column
        if not c.nullable and c.default is None:
            yield Finding("SG108", f"{self.table_name}.{c.name} is NOT NULL without a default")
        if c.name == change.conventions.soft_delete_column:
            table = change.after.table(self.table_name)
            if table is not None and not any(i.columns[0] == c.name for i in table.indexes):
                yield Finding("SG109", f"{self.table_name}.{c.name} has no index leading with it")

    def describe(self) -> str:
        return f"add column `{self.table_name}.{self.column.name}` {self.column.type}"
