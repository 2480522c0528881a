"""``drop_check``: drop a CHECK constraint; the derived downgrade adds it back as
``add_check`` does (NOT VALID, then VALIDATE apart on PostgreSQL; the rows failing it listed
before any DDL). PostgreSQL: a catalogue change in the table's ALTER TABLE; SQLite rebuilds
the table.

A range check of a decimal converted to float (``alter_column_type`` with ``range_check``) is
held on PostgreSQL by the column's type, a domain (state.Domain): dropping it converts the
column to the domain's base type, ``double precision`` (binary coercible: catalogue only, no
row read), and the domain goes once no column uses it (generator/domains.py); SQLite drops the
table CHECK as for any check. The derived downgrade converts the column back to the domain
(PostgreSQL checks every row against it: the table is rewritten), the rows out of the range
listed before any DDL."""

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
from generator.state import CheckConstraint, Column, Schema

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
        "drop the check (PostgreSQL: catalogue only; a range check of a decimal converted to "
        "float: the column goes from its domain to `double precision`, catalogue only, the "
        "domain dropped once unused; SQLite rebuilds the table)",
        "add it back as `add_check` does (rows failing it listed before any DDL; a range "
        "check: the column converted back to its domain, which rewrites the table on "
        "PostgreSQL)",
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
        if self.expression is not None:
            given = make_check(table, self.name, self.expression, ("expression",), problems)
            if given is not None and given.expression != check.expression:
                problems.append(
                    (("expression",), f"check {self.name} is `{check.text}`, not `{given.text}`")
                )
        if check.domain is not None:
            # a range check held on PostgreSQL by its column's type (state.Domain): the column
            # goes to the domain's base type (catalogue only), SQLite drops the table CHECK
            (name,) = check.columns
            column = table.column(name)
            assert column is not None and column.domain == check.domain
            return [domain_released(self.table, column, check)], problems
        return [DropCheckStep(check, online=True)], problems


def domain_released(table: str, column: Column, check: CheckConstraint) -> Step:
    """The column of a range check's domain converted to the domain's base type, the check
    dropped with it (its reverse converts it back to the domain, the rows listed first)."""
    from generator.ops.alter_column_type import AlterColumnTypeStep

    return AlterColumnTypeStep(table, column, column.type, dropped=(check,))


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
