"""``backfill``: set columns of existing rows from expressions, in keyset batches on the
primary key, each batch a short transaction of its own outside the change's DDL transaction,
its progress recorded in the database so that a killed run resumes after the last finished
batch (generator/batches.py runs them). The old values of columns that existed before the
change are kept aside, with the primary key, in an archive named from the change, written in
the same transaction as each batch's update; the derived downgrade restores them exactly (a
column added earlier in the same change has nothing to restore: its drop takes it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, StrictStr

from generator import expr
from generator.dialects import POSTGRESQL
from generator.ops.base import OperationSpec, Problem, Risk, Step
from generator.plan import Group
from generator.spec import Identifier
from generator.state import Schema

if TYPE_CHECKING:
    from generator.resolve import Resolver

SET_HELP = "column: expression (the grammar of docs/authoring.md, Expressions) per column set"
WHERE_HELP = "only the rows for which this expression holds (default: every row)"


class Backfill(OperationSpec):
    op: Literal["backfill"]
    table: Identifier
    set: Annotated[dict[Identifier, StrictStr], Field(min_length=1, description=SET_HELP)]
    where: StrictStr | None = Field(default=None, description=WHERE_HELP)
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000

    position: ClassVar[int] = 150
    templates: ClassVar[tuple[str, ...]] = ("ops/backfill.j2",)
    example: ClassVar[str] = "{op: backfill, table: t, set: {c: lower(d)}, where: c IS NULL}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `set: {column: expression}`, `where` (optional), `batch_size` (1000)",
        "keyset batches on the primary key, each its own short transaction outside the DDL "
        "transaction (ROW EXCLUSIVE per batch); old values kept in an archive named from the "
        "change; progress in the database: a killed run resumes after its last finished batch",
        "restores the old values from the archive, in batches (nothing for a column added "
        "earlier in the same change)",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        key = table.primary_key
        if not key:
            problems.append((("table",), f"table {self.table!r} has no primary key to batch on"))
        types = {c.name: expr.type_class(str(c.type)) for c in table.columns}
        values: list[tuple[str, str]] = []
        for name, text in self.set.items():
            column = r.column(table, name, ("set", name), problems)
            if column is None:
                continue
            if name in key:
                problems.append((("set", name), f"{name!r} is in the primary key the batches use"))
                continue
            try:
                parsed = expr.parse(text)
                expr.check(parsed, types[name], types)
            except expr.ExprError as exc:
                problems.append((("set", name), f"{exc.message} (at character {exc.offset + 1})"))
                continue
            values.append((name, expr.canonical(parsed)))
        where = None
        if self.where is not None:
            try:
                parsed = expr.parse(self.where)
                expr.check(parsed, "boolean", types)
                where = expr.canonical(parsed)
            except expr.ExprError as exc:
                problems.append((("where",), f"{exc.message} (at character {exc.offset + 1})"))
        if problems:
            return [], problems
        before = r.change_start.table(self.table)
        kept = tuple(c for c, _ in values if before is not None and before.column(c) is not None)
        step = BackfillStep(
            self.table,
            key,
            tuple(values),
            where,
            self.batch_size,
            kept,
            tuple(sorted(types.items())),
        )
        return [step], problems


def _risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return steps[0].risk(dialect)


# Both dialects: the batches commit one by one, outside the change's transaction (what ran
# before them is committed first, as for a CONCURRENTLY block).
BACKFILLS = Group("backfills", "ops/backfill.j2", _risk, transactional=False)


@dataclass(frozen=True)
class BackfillStep(Step):
    table_name: str
    key: tuple[str, ...]  # the primary key the batches follow
    values: tuple[tuple[str, str], ...]  # (column, canonical expression)
    where: str | None  # canonical
    batch_size: int
    kept: tuple[str, ...]  # columns that existed before the change: archived, restored
    types: tuple[tuple[str, expr.TypeClass], ...]  # the table's column classes

    kind: ClassVar[str] = "backfill"
    template: ClassVar[str] = "ops/backfill.j2"
    direction: ClassVar[str] = "upgrade"

    @property
    def step_key(self) -> str:
        """Names the step's progress rows and archive: stable for the same backfill."""
        text = repr((self.table_name, self.values, self.where))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def values_sql(self, dialect: str) -> dict[str, str]:
        types = dict(self.types)
        return {
            c: expr.to_sql(expr.parse(e), dialect, types)  # type: ignore[arg-type]
            for c, e in self.values
        }

    def where_sql(self, dialect: str) -> str | None:
        if self.where is None:
            return None
        return expr.to_sql(expr.parse(self.where), dialect, dict(self.types))  # type: ignore[arg-type]

    @property
    def checked(self) -> tuple[str, ...]:
        """Columns the check after the batches compares with their expression: those whose
        expression reads no column the backfill sets and not the clock."""
        setting = {c for c, _ in self.values}
        out = []
        for c, e in self.values:
            parsed = expr.parse(e)
            if not expr.uses_now(parsed) and not (expr.columns(parsed) & setting):
                out.append(c)
        return tuple(out)

    def apply(self, schema: Schema) -> Schema:
        return schema  # values only: the schema is unchanged

    def _as(self, cls: type[BackfillStep]) -> BackfillStep:
        """The same batches in the other direction (the step and its reverse share fields)."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(self)})

    def reverse(self) -> Step:
        return self._as(RestoreBackfillStep)

    def group(self, dialect: str) -> Group:
        return BACKFILLS

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "ROW EXCLUSIVE per batch",
                False,
                f"keyset batches of {self.batch_size} rows, each a short transaction of its "
                "own (row locks for one batch, under the runner's lock_timeout); no DDL lock "
                "on the table; progress and archive in the schema schemagen",
                scans=True,
                blocks="writers of the batch's rows, for one batch",
            )
        return Risk(
            "database write lock per batch",
            False,
            f"keyset batches of {self.batch_size} rows, each its own transaction; progress and "
            "archive in the attached file <database>-schemagen",
            scans=True,
            blocks="writes, one batch at a time",
        )

    def describe(self) -> str:
        sets = ", ".join(f"{c} = {e}" for c, e in self.values)
        where = f" where {self.where}" if self.where else ""
        return f"backfill `{self.table_name}`: {sets}{where} (batches of {self.batch_size})"


@dataclass(frozen=True)
class RestoreBackfillStep(BackfillStep):
    """The derived downgrade of a backfill: the archived values back, in batches."""

    kind: ClassVar[str] = "restore_backfill"
    direction: ClassVar[str] = "downgrade"

    def reverse(self) -> Step:
        return self._as(BackfillStep)

    def describe(self) -> str:
        if not self.kept:
            return f"backfill `{self.table_name}` undone by dropping its new column(s)"
        return (
            f"restore `{self.table_name}`.{', '.join(self.kept)} from the backfill's archive "
            f"(batches of {self.batch_size})"
        )
