"""``swap_fk_action``: change the ON DELETE action of a foreign key. PostgreSQL swaps every key
of a change in one block (``swap_fk_actions``: NOT VALID, then VALIDATE after the commit);
SQLite rebuilds the table."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator import checks
from generator.dialects import POSTGRESQL
from generator.ops.base import OperationSpec, Problem, Risk, Step
from generator.plan import RECREATE_TABLE, Group
from generator.spec import FkAction, Identifier
from generator.state import ForeignKey, Schema

if TYPE_CHECKING:
    from generator.resolve import Resolver


class SwapFkAction(OperationSpec):
    """Change the ON DELETE action of the foreign key on ``table.column``."""

    op: Literal["swap_fk_action"]
    table: Identifier
    column: Identifier
    from_: FkAction = Field(alias="from")
    to: FkAction

    position: ClassVar[int] = 60
    templates: ClassVar[tuple[str, ...]] = ("ops/swap_fk_action.j2", "ops/swap_fk_actions.j2")
    example: ClassVar[str] = (
        "{op: swap_fk_action, table: t, column: parent_id, from: cascade, to: restrict}"
    )
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `column` (of the key; a composite key by any of its columns), `from`, `to` "
        "(ON DELETE action)",
        "replace the foreign key",
        "restore the old action",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        if r.column(table, self.column, ("column",), problems) is None:
            return [], problems
        # a composite key is named by any of its columns (the first one's key first)
        using = table.fks_using(self.column)
        fk = table.fk_on(self.column) or (using[0] if len(using) == 1 else None)
        if fk is None and len(using) > 1:
            names = ", ".join(f.name for f in using)
            problems.append(
                (("column",), f"column {self.table}.{self.column} is in several keys: {names}")
            )
            return [], problems
        if fk is None:
            problems.append((("column",), f"column {self.table}.{self.column} has no foreign key"))
            return [], problems
        if fk.on_delete != self.from_:
            problems.append(
                (("from",), f"foreign key {fk.name} is ON DELETE {fk.on_delete}, not {self.from_}")
            )
        elif self.to == self.from_:
            problems.append((("to",), f"foreign key {fk.name} is already ON DELETE {self.to}"))
        columns = [table.column(c) for c in fk.columns]
        if self.to == "set_null" and any(c is not None and not c.nullable for c in columns):
            problems.append((("to",), "ON DELETE set_null needs a nullable column (each)"))
        return [SwapFkActionStep(fk, self.to)], problems


def _swap_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return Risk(
        "ACCESS EXCLUSIVE on the two tables of each key in turn (brief; LOCK TABLE first, "
        "referencing before referenced, each key committed on its own), then SHARE UPDATE "
        "EXCLUSIVE to validate",
        False,
        "added NOT VALID, validated after commit while writes go on",
        scans=True,
        blocks="reads and writes, briefly",
    )


# PostgreSQL: each swap of a change in a DO block committed on its own, then each VALIDATE.
SWAP_FK_ACTIONS = Group(
    "swap_fk_actions",
    "ops/swap_fk_actions.j2",
    _swap_risk,
    any_table=True,
    transactional=False,
    commits_each_step=True,
)


@dataclass(frozen=True)
class SwapFkActionStep(Step):
    fk: ForeignKey  # as it is before the step
    to: str

    kind: ClassVar[str] = "swap_fk_action"
    template: ClassVar[str] = "ops/swap_fk_action.j2"

    @property
    def table_name(self) -> str:
        return self.fk.table

    @functools.cached_property  # once per step: one object, found again by its identity
    def new_fk(self) -> ForeignKey:
        return replace(self.fk, on_delete=self.to)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.fk.table)
        fks = tuple(self.new_fk if f.name == self.fk.name else f for f in t.foreign_keys)
        return schema.put(replace(t, foreign_keys=fks))

    def reverse(self) -> SwapFkActionStep:
        return SwapFkActionStep(self.new_fk, self.fk.on_delete)

    def group(self, dialect: str) -> Group:
        return SWAP_FK_ACTIONS if dialect == POSTGRESQL else RECREATE_TABLE

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return _swap_risk((self,), dialect)
        return Risk(
            "database write lock",
            True,
            "SQLite cannot alter a constraint: the table is rebuilt",
            scans=True,
            blocks="writes",
        )

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        pending = checks.fk_row(self.new_fk, dialect, validated=False)
        yield f"{self.new_fk.table}.foreign_keys", pending

    def describe(self) -> str:
        return f"`{self.fk.name}`: ON DELETE {self.fk.on_delete} → {self.to}"
