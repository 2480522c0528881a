"""``drop_foreign_key``: drop a foreign key. PostgreSQL: a catalogue change (ACCESS EXCLUSIVE
briefly on the table; the referenced table's triggers go too); SQLite rebuilds the table. The
derived downgrade adds it back as ``add_foreign_key`` does (orphans listed before any DDL,
NOT VALID then VALIDATE apart)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from generator.dialects import POSTGRESQL
from generator.ops.add_foreign_key import AddForeignKeyStep
from generator.ops.base import ConstraintDropStep, OperationSpec, Problem, Step
from generator.spec import Identifier
from generator.state import ForeignKey, Schema

if TYPE_CHECKING:
    from generator.resolve import Resolver


class DropForeignKey(OperationSpec):
    op: Literal["drop_foreign_key"]
    table: Identifier
    name: Identifier

    position: ClassVar[int] = 241
    templates: ClassVar[tuple[str, ...]] = ("ops/drop_foreign_key.j2",)
    example: ClassVar[str] = "{op: drop_foreign_key, table: t, name: fk_t_p}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`",
        "drop the key (PostgreSQL: catalogue only; SQLite rebuilds the table)",
        "add it back as `add_foreign_key` does (orphans listed before any DDL)",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        fk = next((f for f in table.foreign_keys if f.name == self.name), None)
        if fk is None:
            known = ", ".join(f.name for f in table.foreign_keys) or "none"
            message = f"table {self.table!r} has no foreign key {self.name!r}"
            problems.append((("name",), f"{message} (foreign keys: {known})"))
            return [], problems
        return [DropForeignKeyStep(fk)], problems


@dataclass(frozen=True)
class DropForeignKeyStep(ConstraintDropStep):
    fk: ForeignKey
    # PostgreSQL keeps the key: the operation around this step carries it (nothing to run)
    kept: bool = False

    kind: ClassVar[str] = "drop_foreign_key"
    template: ClassVar[str] = "ops/drop_foreign_key.j2"
    what: ClassVar[str] = "foreign key"
    why_postgresql: ClassVar[str] = (
        "catalogue-only change (the key's triggers on both tables dropped)"
    )
    why_sqlite: ClassVar[str] = "SQLite cannot drop a foreign key: the table is rebuilt"

    @property
    def constraint(self) -> ForeignKey:
        return self.fk

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.fk.table)
        return schema.put(replace(t, foreign_keys=tuple(f for f in t.foreign_keys if f != self.fk)))

    def runs_on(self, dialect: str) -> bool:
        return not (self.kept and dialect == POSTGRESQL)

    def reverse(self) -> AddForeignKeyStep:
        return AddForeignKeyStep(self.fk, self.kept)

    def describe(self) -> str:
        f = self.fk
        mine = f"({', '.join(f.columns)})" if f.composite else f.column
        return f"drop foreign key `{f.name}` (`{f.table}.{mine}` → `{f.ref_table}`)"
