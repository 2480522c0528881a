"""``add_check``: a CHECK constraint whose ``expression`` is of the tool's safe grammar
(``generator.expr``: parsed, type-checked against the table's columns and rendered per
dialect; anything outside it is refused at its YAML line). Its step, ``AddCheckStep``, is also
what ``alter_column_type``'s ``range_check`` adds; its inverse is ``drop_check``'s step.

PostgreSQL: ``ADD CONSTRAINT ... CHECK (...) NOT VALID`` (a catalogue change under a brief
ACCESS EXCLUSIVE lock, no scan), committed, then ``VALIDATE CONSTRAINT`` in its own
transaction, which scans under SHARE UPDATE EXCLUSIVE while reads and writes go on. (The
range check of a type change is added inside that change's ALTER TABLE instead: the table is
rewritten under ACCESS EXCLUSIVE anyway, and checked in the same pass.) SQLite rebuilds the
table (batch mode, foreign-key safe). Before any DDL the migration lists the rows failing the
check, with their key, and does not start while there are any.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, StrictStr

from generator import checks, dialects, expr
from generator.dialects import POSTGRESQL, SQLITE
from generator.errors import Path
from generator.ops.base import OperationSpec, Problem, Risk, RowCheck, Step, sqlite_rebuild
from generator.plan import ALTER_TABLE, RECREATE_TABLE, Group
from generator.spec import Identifier
from generator.state import CheckConstraint, Schema, Table

if TYPE_CHECKING:
    from generator.ops.drop_check import DropCheckStep
    from generator.resolve import Resolver, TableLike

EXPRESSION_HELP = (
    "a condition of the expression grammar (docs/authoring.md#expressions): columns, "
    "literals, comparisons, IS [NOT] NULL, IN, BETWEEN, AND/OR/NOT, arithmetic, "
    "lower/upper/coalesce/length; not now"
)


class AddCheck(OperationSpec):
    op: Literal["add_check"]
    table: Identifier
    name: Identifier
    expression: StrictStr = Field(description=EXPRESSION_HELP)

    position: ClassVar[int] = 210
    templates: ClassVar[tuple[str, ...]] = ("ops/add_check.j2",)
    example: ClassVar[str] = "{op: add_check, table: t, name: ck_t_c, expression: c >= 0}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`, `expression`",
        "PostgreSQL: `ADD CONSTRAINT … CHECK (…) NOT VALID`, then `VALIDATE CONSTRAINT` in its "
        "own transaction (SHARE UPDATE EXCLUSIVE); SQLite rebuilds the table; the rows failing "
        "the check are listed before any DDL",
        "drop the check",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        r.free_name(self.name, ("name",), problems)
        check = make_check(table, self.name, self.expression, ("expression",), problems)
        if check is None:
            return [], problems
        return [AddCheckStep(check, online=True)], problems


def column_types(table: TableLike) -> dict[str, expr.TypeClass]:
    return {c.name: expr.type_class(str(c.type)) for c in table.columns}


def make_check(
    table: TableLike, name: str, text: str, path: Path, problems: list[Problem]
) -> CheckConstraint | None:
    """The check ``name`` of ``text`` on ``table``, or a problem saying what the grammar
    expected where (``at offset n`` of the expression)."""
    types = column_types(table)
    try:
        tree = expr.parse(text)
        expr.check(tree, "boolean", types, deterministic=True)
    except expr.ExprError as error:
        problems.append((path, f"{error.message} (at offset {error.offset} of {text!r})"))
        return None
    used = tuple(sorted((c, types[c]) for c in expr.columns(tree)))
    return CheckConstraint(name, table.name, tree, used)


def failing_rows(check: CheckConstraint, table: Table) -> RowCheck:
    """The rows a CHECK refuses: those whose expression is false (unknown passes a CHECK)."""
    shown = [*table.primary_key, *sorted(check.columns - set(table.primary_key))]
    cols = ", ".join(dialects.quote_ident(c) for c in shown)
    sql = {
        d: f"SELECT {cols} FROM {dialects.quote_ident(table.name)}\nWHERE NOT ({check.sql_for(d)})"
        for d in dialects.DIALECTS
    }
    return RowCheck(f"{table.name}.{check.name}.failing_rows", sql[POSTGRESQL], sql[SQLITE])


def _validated_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return Risk(
        "ACCESS EXCLUSIVE (brief; the NOT VALID constraint), then SHARE UPDATE EXCLUSIVE to "
        "validate",
        False,
        "added NOT VALID (catalogue only), validated after commit while reads and writes go on",
        scans=True,
        blocks="reads and writes, briefly",
    )


# PostgreSQL: the checks added NOT VALID in the change's transaction, then each VALIDATE in a
# transaction of its own (outside the change's: it commits part of the change by itself).
VALIDATED_CHECKS = Group(
    "validated_checks", "ops/add_check.j2", _validated_risk, transactional=False
)


@dataclass(frozen=True)
class AddCheckStep(Step):
    check: CheckConstraint
    # True: added NOT VALID and validated apart (add_check). False: a clause of the table's
    # ALTER TABLE next to the type change it guards (alter_column_type's range_check).
    online: bool = False

    kind: ClassVar[str] = "add_check"
    template: ClassVar[str] = "ops/add_check.j2"

    @property
    def table_name(self) -> str:
        return self.check.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.check.table)
        return schema.put(replace(t, checks=(*t.checks, self.check)))

    def apply_in(self, r: Resolver) -> None:
        r.add_check(self.check)

    def reverse(self) -> DropCheckStep:
        from generator.ops.drop_check import DropCheckStep

        return DropCheckStep(self.check, self.online)

    def runs_on(self, dialect: str) -> bool:
        return self.check.on_table(dialect)  # PostgreSQL: a range check is its column's domain

    def group(self, dialect: str) -> Group:
        if dialect == SQLITE:
            return RECREATE_TABLE
        return VALIDATED_CHECKS if self.online else ALTER_TABLE

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            if self.online:
                return _validated_risk((self,), dialect)
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "the new CHECK scans the table under the lock",
                scans=True,
                blocks="reads and writes",
            )
        return sqlite_rebuild("SQLite cannot add a CHECK: the table is rebuilt")

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        table = before.table(self.check.table)
        if self.online and table is not None and all(table.column(c) for c in self.check.columns):
            yield failing_rows(self.check, table)

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        if self.online and dialect == POSTGRESQL:
            yield f"{self.check.table}.check_constraints", (self.check.name, "NO")

    def describe(self) -> str:
        if self.online:
            return f"add check `{self.check.name}` on `{self.check.table}`: `{self.check.text}`"
        return f"add check `{self.check.name}` on `{self.check.table}`"
