"""``sql``: raw SQL per dialect, then its ``checks`` (queries that return the failing rows);
the derived downgrade runs ``down`` (or, with ``irreversible: true``, refuses before anything
runs, naming the change).

**No schema effect.** The tool cannot know what raw SQL does, so the operation declares none:
the schema after it is the schema before it. Its own post-checks then compare the database
with that schema, so SQL that changes a table, column, key or index the schema models fails
the change and rolls it back (the checks name the drift); the operations exist for that. Raw
SQL is for data (a fix-up, a backfill of a few rows) and for objects the schema does not
model (views, functions, grants). Its locks are unknown: its Risk says so, and lint SG113
asks for a review. The SQL is run as written (``op.execute``), in the change's transaction.

SQLite: a table rebuild (batch mode renames the new table into place) fails while a view
names the table, so a view created here must be dropped before such a rebuild, and created
after it (within a change: order the operations so).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator.dialects import POSTGRESQL
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step
from generator.ops.purge import IrreversibleStep
from generator.spec import Spec
from generator.state import Schema

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class PerDialect(Spec):
    """SQL text for each dialect (both are required: a project runs on either)."""

    postgresql: str = Field(min_length=1)
    sqlite: str = Field(min_length=1)


class Sql(OperationSpec):
    op: Literal["sql"]
    up: PerDialect
    down: PerDialect | None = None
    irreversible: bool = False
    checks: list[PerDialect] = Field(
        default=[], description="queries run after `up` that return the rows failing them"
    )

    position: ClassVar[int] = 120
    templates: ClassVar[tuple[str, ...]] = ("ops/sql.j2",)
    example: ClassVar[str] = (
        "op: sql\nup: {postgresql: 'UPDATE t SET c = 0 WHERE c < 0', sqlite: 'UPDATE t SET c = 0 "
        "WHERE c < 0'}\nirreversible: true"
    )
    doc: ClassVar[tuple[str, str, str]] = (
        "`up: {postgresql, sqlite}`, `down: {postgresql, sqlite}` or `irreversible: true`, "
        "`checks` (queries returning failing rows)",
        "run it, then its checks (a failing row rolls the change back); no schema effect: the "
        "change's post-checks refuse SQL that alters the modelled schema; lint SG113",
        "run `down`; with `irreversible` a downgrade past it fails, naming the change",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        if self.down is None and not self.irreversible:
            problems.append((("down",), "give `down` (SQL undoing `up`) or `irreversible: true`"))
        if self.down is not None and self.irreversible:
            problems.append((("irreversible",), "`irreversible: true` and a `down`: give one"))
        down = self.down or PerDialect(postgresql="-", sqlite="-")
        step = SqlStep(
            f"{r.change_number:04d}_{r.change_id}",
            (self.up.postgresql, self.up.sqlite),
            None if self.irreversible else (down.postgresql, down.sqlite),
            tuple((c.postgresql, c.sqlite) for c in self.checks),
        )
        return [step], problems


@dataclass(frozen=True)
class SqlStep(Step):
    change: str  # the change's name (its checks' failures and its refusal name it)
    sql: tuple[str, str]  # (postgresql, sqlite)
    undo: tuple[str, str] | None  # None: irreversible
    checks: tuple[tuple[str, str], ...] = ()
    undo_checks: tuple[tuple[str, str], ...] = ()

    kind: ClassVar[str] = "sql"
    template: ClassVar[str] = "ops/sql.j2"
    table_name: ClassVar[str] = ""

    def text(self, dialect: str) -> str:
        return self.sql[0] if dialect == POSTGRESQL else self.sql[1]

    def check_queries(self, dialect: str) -> list[tuple[str, str]]:
        i = 0 if dialect == POSTGRESQL else 1
        return [(f"sql_check_{n}", c[i]) for n, c in enumerate(self.checks, 1)]

    def apply(self, schema: Schema) -> Schema:
        return schema

    def reverse(self) -> Step:
        if self.undo is None:
            return IrreversibleStep("", self.change, "its raw SQL is marked irreversible", self)
        return SqlStep(self.change, self.undo, self.sql, self.undo_checks, self.checks)

    def risk(self, dialect: str) -> Risk:
        return Risk(
            "unknown (raw SQL)",
            False,
            "raw SQL: the tool cannot know what it locks or scans; review it",
            blocks="unknown",
        )

    def findings(self, change: Change) -> Iterator[Finding]:
        yield Finding(
            "SG113",
            "raw SQL: its locks and effects are not checked by the tool"
            + ("; it cannot be undone" if self.undo is None else ""),
        )

    def describe(self) -> str:
        first = self.sql[0].strip().splitlines()[0] if self.sql[0].strip() else ""
        return f"raw SQL: `{first[:60]}`" + (" (irreversible)" if self.undo is None else "")
