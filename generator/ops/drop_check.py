"""``drop_check``: drop a CHECK constraint; the derived downgrade adds it back as
``add_check`` does (NOT VALID, then VALIDATE apart on PostgreSQL; the rows failing it listed
before any DDL). PostgreSQL: a catalogue change in the table's ALTER TABLE; SQLite rebuilds
the table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, StrictStr

from generator.dialects import SQLITE
from generator.ops.add_check import EXPRESSION_HELP, AddCheckStep, make_check
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step, catalogue_only_risk
from generator.plan import ALTER_TABLE, RECREATE_TABLE, Group
from generator.spec import Identifier
from generator.state import CheckConstraint, Schema

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class DropCheck(OperationSpec):
    op: Literal["drop_check"]
    table: Identifier
    name: Identifier
    expression: StrictStr | None = Field(
        default=None,
        description="the check's expression, when given compared with the schema's: "
        + EXPRESSION_HELP,
    )

    position: ClassVar[int] = 211
    templates: ClassVar[tuple[str, ...]] = ("ops/drop_check.j2",)
    example: ClassVar[str] = "{op: drop_check, table: t, name: ck_t_c}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`, `expression` (optional: compared with the schema's)",
        "drop the check (PostgreSQL: catalogue only; SQLite rebuilds the table)",
        "add it back as `add_check` does (rows failing it listed before any DDL)",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        check = next((c for c in table.checks if c.name == self.name), None)
        if check is None:
            known = ", ".join(c.name for c in table.checks) or "none"
            problems.append(
                (("name",), f"table {self.table!r} has no check {self.name!r} (checks: {known})")
            )
            return [], problems
        if check.domain is not None:
            problems.append(
                (
                    ("name",),
                    f"check {self.name} is a range check held on PostgreSQL by its column's "
                    f"type, domain {check.domain.name}: convert the column back "
                    "(alter_column_type) to drop it",
                )
            )
            return [], problems
        if self.expression is not None:
            given = make_check(table, self.name, self.expression, ("expression",), problems)
            if given is not None and given.expression != check.expression:
                problems.append(
                    (("expression",), f"check {self.name} is `{check.text}`, not `{given.text}`")
                )
        return [DropCheckStep(check, online=True)], problems


@dataclass(frozen=True)
class DropCheckStep(Step):
    check: CheckConstraint
    online: bool = False  # the reverse adds it back NOT VALID, validated apart

    kind: ClassVar[str] = "drop_check"
    template: ClassVar[str] = "ops/drop_check.j2"

    @property
    def table_name(self) -> str:
        return self.check.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.check.table)
        return schema.put(replace(t, checks=tuple(c for c in t.checks if c != self.check)))

    def reverse(self) -> AddCheckStep:
        return AddCheckStep(self.check, self.online)

    def runs_on(self, dialect: str) -> bool:
        return self.check.on_table(dialect)  # PostgreSQL: a range check is its column's domain

    def group(self, dialect: str) -> Group:
        return RECREATE_TABLE if dialect == SQLITE else ALTER_TABLE

    def risk(self, dialect: str) -> Risk:
        return catalogue_only_risk(
            dialect,
            "catalogue-only change",
            "SQLite cannot drop a CHECK: the table is rebuilt",
            blocks="reads and writes",
        )

    def findings(self, change: Change) -> Iterator[Finding]:
        if self.online:
            yield Finding("SG120", f"drops check {self.check.name} on {self.check.table}")

    def describe(self) -> str:
        return f"drop check `{self.check.name}` on `{self.check.table}`"
