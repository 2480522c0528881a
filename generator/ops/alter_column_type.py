"""``alter_column_type``: convert a column's values to another type of its family; with
``range_check`` (decimal to float) also a CHECK keeping the decimal's range, added with the
``add_check`` operation's step inside the table's ALTER TABLE (the ``drop_check`` step undoes
it).

What a conversion costs is decided by generator.risk (the type facts, kept central and proven
on a real server); what narrows, by generator.coltypes; the SQL of both, by generator.dialects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator import coltypes, indexexpr, risk
from generator.coltypes import SqlType, conversion_problem, parse_type
from generator.dialects import POSTGRESQL, SQLITE
from generator.ops.add_check import AddCheckStep
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step
from generator.plan import ALTER_TABLE, RECREATE_TABLE, Group
from generator.resolve import default_problem
from generator.spec import Identifier, TypeName
from generator.state import CheckConstraint, Column, Schema

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class AlterColumnType(OperationSpec):
    op: Literal["alter_column_type"]
    table: Identifier
    column: Identifier
    from_: TypeName = Field(alias="from")
    to: TypeName
    range_check: bool = Field(
        default=False,
        description=(
            "decimal to float only: add CHECK ck_<table>_<column>_range keeping values finite "
            "and inside the range the decimal allowed"
        ),
    )

    position: ClassVar[int] = 40
    templates: ClassVar[tuple[str, ...]] = ("ops/alter_column_type.j2",)
    example: ClassVar[str] = (
        "{op: alter_column_type, table: t, column: c, from: integer, to: bigint}"
    )
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `column`, `from`, `to`, `range_check` (default false)",
        "convert (numeric ↔ numeric, string ↔ string); with `range_check` on a decimal → float "
        "conversion, add `CHECK ck_<table>_<column>_range` keeping values finite and inside the "
        "decimal's range",
        "drop the check; convert back to `from`; a conversion that narrows (see "
        "[Conversions](#conversions)) is refused before any DDL while a row does not fit",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        column = r.column(table, self.column, ("column",), problems)
        if column is None:
            return [], problems
        old, new = parse_type(self.from_), parse_type(self.to)
        if column.type != old:
            problems.append(
                (("from",), f"column {self.table}.{self.column} is {column.type}, not {old}")
            )
        elif problem := conversion_problem(old, new):
            problems.append((("to",), problem))
        elif new.kind == "enum":
            r.check_enum(new, ("to",), problems)
            if column.default is not None and column.default not in new.labels:
                problems.append(
                    (("to",), f"the column's default {column.default!r} is not one of its labels")
                )
        if column.primary_key:
            problems.append(
                (
                    ("column",),
                    "cannot change the type of a primary key column (widen_key widens an "
                    "integer key with the columns that reference it)",
                )
            )
        fk = table.fk_on(column.name)
        referencing = [
            f
            for t in r.tables()
            for f in t.foreign_keys
            if f.ref_table == table.name and f.ref_column == column.name
        ]
        if fk is not None or referencing:
            problems.append(
                (
                    ("column",),
                    "cannot change the type of a column in a foreign key (widen_key widens an "
                    "integer key with the columns that reference it)",
                )
            )
        partial = [
            i.name
            for i in table.indexes
            if i.where is not None and column.name in indexexpr.compared_columns(i.where)
        ]
        if partial:
            # a comparison in its predicate is rendered (and read back from the catalogue) by
            # the column's type
            problems.append(
                (
                    ("column",),
                    f"the predicate of index {', '.join(partial)} names the column: drop the "
                    "index first, then change the type",
                )
            )
        if column.default is not None and (problem := default_problem(column.default, new)):
            problems.append((("to",), f"the column's default no longer fits: {problem}"))
        steps: list[Step] = [AlterColumnTypeStep(self.table, column, new)]
        if self.range_check:
            if old.kind != "decimal" or new.kind != "float":
                problems.append(
                    (("range_check",), "range_check applies to a decimal to float conversion")
                )
            else:
                assert old.precision is not None and old.scale is not None
                name = r.conventions.range_check_name(self.table, self.column)
                r.free_name(name, ("range_check",), problems)
                bound = 10 ** (old.precision - old.scale)
                steps.append(
                    AddCheckStep(CheckConstraint.range(name, self.table, self.column, bound))
                )
        return steps, problems


def _alter_group(dialect: str) -> Group:
    """PostgreSQL alters the column in the table's ALTER TABLE; SQLite rebuilds the table."""
    return RECREATE_TABLE if dialect == SQLITE else ALTER_TABLE


@dataclass(frozen=True)
class AlterColumnTypeStep(Step):
    table_name: str
    column: Column  # as it is before the step
    to: SqlType

    kind: ClassVar[str] = "alter_column_type"
    template: ClassVar[str] = "ops/alter_column_type.j2"

    @property
    def new_column(self) -> Column:
        return replace(self.column, type=self.to)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        cols = tuple(self.new_column if c.name == self.column.name else c for c in t.columns)
        return schema.put(replace(t, columns=cols))

    def apply_in(self, r: Resolver) -> None:
        r.put_column(self.table_name, self.new_column)

    def reverse(self) -> AlterColumnTypeStep:
        return AlterColumnTypeStep(self.table_name, self.new_column, self.column.type)

    def group(self, dialect: str) -> Group:
        return _alter_group(dialect)

    def type_change(self) -> tuple[Column, SqlType]:
        return self.column, self.to

    def risk(self, dialect: str) -> Risk:
        decided = risk.type_change(self.column.type, self.to, dialect)
        return Risk(
            decided.lock,
            decided.rewrites,
            decided.why,
            scans=decided.rewrites,
            blocks="reads and writes" if dialect == POSTGRESQL else "writes",
        )

    def findings(self, change: Change) -> Iterator[Finding]:
        old, new = self.column.type, self.to
        where = f"{self.table_name}.{self.column.name}"
        if self.risk(POSTGRESQL).rewrites:
            yield Finding("SG102", f"{where}: {old} -> {new} rewrites {self.table_name}")
        if coltypes.narrows(old, new):
            # the same test that gives the conversion its fit-check
            note = coltypes.narrowing_note(old, new)
            yield Finding("SG103", f"{where}: {old} -> {new} {note}")
        range_check = change.conventions.range_check_name(self.table_name, self.column.name)
        final = change.after.table(self.table_name)
        checked = final is not None and any(c.name == range_check for c in final.checks)
        if old.kind == "decimal" and new.kind == "float" and not checked:
            yield Finding("SG104", f"{where}: {old} -> float without range_check")

    def describe(self) -> str:
        return f"`{self.table_name}.{self.column.name}`: {self.column.type} → {self.to}"
