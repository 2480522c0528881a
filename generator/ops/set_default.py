"""``set_default``: set, change or drop a column's default (``default: null`` drops it). The
derived downgrade restores the default the column had. Existing rows keep their values: a
default only fills rows inserted later.

PostgreSQL: ``ALTER COLUMN ... SET DEFAULT`` / ``DROP DEFAULT``, a catalogue change under a
brief ACCESS EXCLUSIVE lock (no rewrite, no scan). SQLite cannot alter a default: the table
is rebuilt (the batch recreate group, foreign-key safe).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator.dialects import SQLITE
from generator.ops.base import (
    ColumnChangeStep,
    OperationSpec,
    Problem,
    Risk,
    Step,
    catalogue_only_risk,
)
from generator.plan import RECREATE_TABLE, Group
from generator.resolve import default_problem
from generator.spec import DefaultValue, Identifier
from generator.state import Column

if TYPE_CHECKING:
    from generator.resolve import Resolver


class SetDefault(OperationSpec):
    op: Literal["set_default"]
    table: Identifier
    column: Identifier
    default: DefaultValue | None = Field(
        description="a literal of the column's type (`now` on a timestamptz column); "
        "null drops the default"
    )

    position: ClassVar[int] = 200
    templates: ClassVar[tuple[str, ...]] = ("ops/set_default.j2",)
    example: ClassVar[str] = "{op: set_default, table: t, column: c, default: 0}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `column`, `default` (null drops it)",
        "set or drop the default (PostgreSQL: catalogue only; SQLite rebuilds the table); "
        "existing rows keep their values",
        "restore the old default",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        found = r.table_column(self.table, self.column, problems)
        if found is None:
            return [], problems
        _, column = found
        if column.identity:
            problems.append(
                (
                    ("column",),
                    f"{self.table}.{self.column} is an identity: its values are generated",
                )
            )
        if self.default is not None and (problem := default_problem(self.default, column.type)):
            problems.append((("default",), problem))
        if self.default == column.default and type(self.default) is type(column.default):
            now = "no default" if self.default is None else f"default {self.default!r}"
            problems.append((("default",), f"{self.table}.{self.column} already has {now}"))
        return [SetDefaultStep(self.table, column, self.default)], problems


@dataclass(frozen=True)
class SetDefaultStep(ColumnChangeStep):
    table_name: str
    column: Column  # as it is before the step
    default: DefaultValue | None  # the new default (None: none)

    kind: ClassVar[str] = "set_default"
    template: ClassVar[str] = "ops/set_default.j2"

    @property
    def new_column(self) -> Column:
        return replace(self.column, default=self.default)

    def reverse(self) -> SetDefaultStep:
        return SetDefaultStep(self.table_name, self.new_column, self.column.default)

    def group(self, dialect: str) -> Group | None:
        return RECREATE_TABLE if dialect == SQLITE else None

    def risk(self, dialect: str) -> Risk:
        return catalogue_only_risk(
            dialect,
            "catalogue-only change: existing rows keep their values",
            "SQLite cannot alter a default: the table is rebuilt",
        )

    def describe(self) -> str:
        where = f"`{self.table_name}.{self.column.name}`"
        if self.default is None:
            return f"drop the default of {where}"
        return f"set the default of {where} to `{self.default!r}`"
