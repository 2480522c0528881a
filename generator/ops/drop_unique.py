"""``drop_unique``: drop a UNIQUE constraint (and its index); refused while a foreign key
references its columns. PostgreSQL: a catalogue change under a brief ACCESS EXCLUSIVE lock;
SQLite rebuilds the table. The derived downgrade adds it back as ``add_unique`` does (rows
sharing a key listed before any DDL, the index built CONCURRENTLY)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator.ops.add_unique import AddUniqueStep
from generator.ops.base import ConstraintDropStep, OperationSpec, Problem, Step
from generator.spec import Identifier
from generator.state import Schema, UniqueConstraint

if TYPE_CHECKING:
    from generator.resolve import Resolver


class DropUnique(OperationSpec):
    op: Literal["drop_unique"]
    table: Identifier
    name: Identifier
    columns: list[Identifier] | None = Field(
        default=None, description="the constraint's columns, when given compared with the schema's"
    )

    position: ClassVar[int] = 231
    templates: ClassVar[tuple[str, ...]] = ("ops/drop_unique.j2",)
    example: ClassVar[str] = "{op: drop_unique, table: t, name: uq_t_c}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`, `columns` (optional: compared with the schema's)",
        "drop the constraint and its index (PostgreSQL: catalogue only; SQLite rebuilds the "
        "table); refused while a foreign key references its columns",
        "add it back as `add_unique` does",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        unique = next((u for u in table.uniques if u.name == self.name), None)
        if unique is None:
            known = ", ".join(u.name for u in table.uniques) or "none"
            problems.append(
                (("name",), f"table {self.table!r} has no unique {self.name!r} (uniques: {known})")
            )
            return [], problems
        if self.columns is not None and tuple(self.columns) != unique.columns:
            problems.append(
                (("columns",), f"{self.name} is on ({', '.join(unique.columns)}), not these")
            )
        referencing = [
            f.name
            for t in r.tables()
            for f in t.foreign_keys
            if f.ref_table == self.table and f.ref_columns == unique.columns
        ]
        if referencing and unique.columns != table.primary_key:
            problems.append(
                (("name",), f"foreign keys reference these columns: {', '.join(referencing)}")
            )
        return [DropUniqueStep(unique)], problems


@dataclass(frozen=True)
class DropUniqueStep(ConstraintDropStep):
    unique: UniqueConstraint

    kind: ClassVar[str] = "drop_unique"
    template: ClassVar[str] = "ops/drop_unique.j2"
    what: ClassVar[str] = "unique"
    why_postgresql: ClassVar[str] = "catalogue-only change (the constraint's index dropped with it)"
    why_sqlite: ClassVar[str] = "SQLite cannot drop a constraint: the table is rebuilt"

    @property
    def constraint(self) -> UniqueConstraint:
        return self.unique

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.unique.table)
        return schema.put(replace(t, uniques=tuple(u for u in t.uniques if u != self.unique)))

    def reverse(self) -> AddUniqueStep:
        return AddUniqueStep(self.unique)

    def describe(self) -> str:
        u = self.unique
        return f"drop unique `{u.name}` on `{u.table}` ({', '.join(u.columns)})"
