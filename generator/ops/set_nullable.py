"""``set_nullable``: make a column NOT NULL (``nullable: false``), filling its NULLs with the
literal ``fill`` when given, or nullable again (``nullable: true``).

PostgreSQL NOT NULL never scans the table under ACCESS EXCLUSIVE: ``CHECK (c IS NOT NULL)
NOT VALID`` (catalogue only), committed; ``VALIDATE CONSTRAINT`` in its own transaction
(SHARE UPDATE EXCLUSIVE: reads and writes go on while it scans); then ``SET NOT NULL``, which
PostgreSQL proves from the validated check without a scan, and the check is dropped. SQLite
rebuilds the table (batch mode, foreign-key safe).

Without ``fill``, the rows holding NULL are listed before any DDL and the migration does not
start while there are any. With ``fill``, the keys of the rows filled are kept aside in a
table named from the change (``filled_<change>_<table>_<column>``, part of the schema, so the
validation expects it) before they are updated, and the derived downgrade sets exactly those
rows back to NULL, then drops the table. Keeping the keys, not a guess: a row whose value
equals the fill may have held it before; only the keys tell which were NULL.

Live writers (PostgreSQL): the application may go on writing NULL into the column while the
change runs (it is the old version of the application, which still may). Before the fill, a
temporary ``BEFORE INSERT OR UPDATE`` trigger is created and committed on its own (SHARE ROW
EXCLUSIVE, catalogue only, the runner's short lock_timeout): it replaces a NULL written into
the column with the fill and keeps the row's key aside like the fill's. So no NULL can appear
after the fill, VALIDATE and SET NOT NULL succeed, and no writer's statement fails on the NOT
VALID check. The trigger is dropped with the check, in the transaction of SET NOT NULL; the
way back drops it too (first, so that it cannot fill what the restore sets back to NULL),
which also cleans up after an upgrade interrupted half-way.

Which rows the downgrade sets back to NULL: every row whose NULL this change replaced, the
fill's and the trigger's alike, as long as it still holds the fill. A NULL the application
wrote while the change ran is a NULL of the old application, which the downgrade brings back;
the change replaced it, so undoing the change restores it. A value the application wrote
itself is never touched: not an explicit value equal to the fill (the trigger keeps only the
keys of the NULLs it replaced), and not a value written since into a kept row (the restore
skips a row no longer holding the fill; with a clock fill, ``now``, which differs at each
write, that guard cannot apply and every kept row is restored).

SQLite: one writer at a time. The fill, the table rebuild and the kept keys commit in one
transaction under the database write lock; a writer waits for it (its busy timeout) and
cannot write a NULL in between, so no trigger is needed there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator import checks, dialects, risk
from generator.dialects import POSTGRESQL, SQLITE
from generator.ops.base import Finding, OperationSpec, Problem, Risk, RowCheck, Step
from generator.plan import RECREATE_TABLE, Group
from generator.resolve import MAX_NAME, default_problem
from generator.spec import DefaultValue, Identifier
from generator.state import Column, Schema, Table

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class SetNullable(OperationSpec):
    op: Literal["set_nullable"]
    table: Identifier
    column: Identifier
    nullable: bool
    fill: DefaultValue | None = Field(
        default=None,
        description="with nullable: false, the literal that replaces existing NULLs (their "
        "keys are kept so the downgrade restores them to NULL)",
    )

    position: ClassVar[int] = 220
    templates: ClassVar[tuple[str, ...]] = ("ops/set_nullable.j2",)
    example: ClassVar[str] = "{op: set_nullable, table: t, column: c, nullable: false, fill: 0}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `column`, `nullable`, `fill` (optional literal for existing NULLs)",
        "PostgreSQL NOT NULL: `CHECK (c IS NOT NULL) NOT VALID` → `VALIDATE` → `SET NOT NULL` → "
        "drop the check (no full scan under ACCESS EXCLUSIVE); SQLite rebuilds the table; "
        "without `fill` the NULL rows are listed before any DDL; with it the filled rows' keys "
        "are kept in `filled_<change>_<table>_<column>`, and on PostgreSQL a temporary trigger "
        "(committed before the fill, dropped with the check) fills the NULLs the application "
        "writes meanwhile (see [set_nullable](#set_nullable-with-fill-under-live-writers))",
        "the inverse; the kept rows still holding the fill restored to NULL, the table of keys "
        "dropped",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        found = r.table_column(self.table, self.column, problems)
        if found is None:
            return [], problems
        table, column = found
        if column.nullable == self.nullable:
            now = "nullable" if self.nullable else "NOT NULL"
            problems.append((("nullable",), f"{self.table}.{self.column} is already {now}"))
        if self.nullable and column.primary_key:
            problems.append((("nullable",), "a primary key column cannot be nullable"))
        aside = None
        if self.fill is not None:
            if self.nullable:
                problems.append((("fill",), "fill is for nullable: false (it replaces NULLs)"))
            elif problem := default_problem(self.fill, column.type):
                problems.append((("fill",), problem))
            elif not table.primary_key:
                problems.append(
                    (("fill",), f"{self.table} has no primary key to remember the filled rows by")
                )
            else:
                name = f"filled_{r.change_number:04d}_{self.table}_{self.column}"
                if len(name) > MAX_NAME - 3:  # and its key's pk_<name>
                    problems.append((("fill",), f"the table of filled keys {name!r} is too long"))
                r.free_name(name, ("fill",), problems)
                key = tuple(
                    replace(c, nullable=False, default=None, identity=False, serial=None)
                    for c in table.columns
                    if c.primary_key
                )
                aside = Table(name, key)
        return [SetNullableStep(self.table, column, self.nullable, self.fill, aside)], problems


def _validated_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    filled = any(isinstance(s, SetNullableStep) and s.aside for s in steps)
    return Risk(
        "ACCESS EXCLUSIVE (brief: the NOT VALID check, then SET NOT NULL proven by it), "
        + (f"{risk.TRIGGER_LOCK} (brief) for the fill's trigger, " if filled else "")
        + "SHARE UPDATE EXCLUSIVE to validate",
        False,
        "CHECK (c IS NOT NULL) NOT VALID, validated after commit while reads and writes go "
        "on; SET NOT NULL uses it instead of a scan"
        + (
            "; first "
            + risk.trigger_risk("replaces a NULL the application writes with the fill")
            + ", committed before the fill UPDATEs the NULL rows (row locks)"
            if filled
            else ""
        ),
        scans=True,
        blocks="reads and writes, briefly",
    )


# PostgreSQL NOT NULL: the NOT VALID checks in the change's transaction, each VALIDATE in one
# of its own, then SET NOT NULL and the checks dropped.
VALIDATED_NOT_NULL = Group(
    "validated_not_null", "ops/set_nullable.j2", _validated_risk, transactional=False
)


def _restore_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return Risk(
        "ACCESS EXCLUSIVE (brief)",
        False,
        "DROP NOT NULL (catalogue only, with the fill's trigger if an interrupted upgrade left "
        "it) committed by itself; then the kept rows still holding the fill set back to NULL "
        "(row locks)",
        scans=True,
        blocks="reads and writes, briefly",
    )


# PostgreSQL, the way back from a fill: DROP NOT NULL committed by itself before the rows
# kept are set back to NULL, so the UPDATE never runs under its ACCESS EXCLUSIVE lock.
RESTORED_NULLS = Group("restored_nulls", "ops/set_nullable.j2", _restore_risk, transactional=False)


@dataclass(frozen=True)
class SetNullableStep(Step):
    table_name: str
    column: Column  # as it is before the step
    nullable: bool
    fill: DefaultValue | None = None
    # The table of the filled rows' keys: created by the NOT NULL step, read and dropped by
    # its reverse.
    aside: Table | None = None

    kind: ClassVar[str] = "set_nullable"
    template: ClassVar[str] = "ops/set_nullable.j2"

    @property
    def new_column(self) -> Column:
        return replace(self.column, nullable=self.nullable)

    @property
    def fill_column(self) -> Column:
        """The column as the fill's literal is rendered for (its type, the fill)."""
        return replace(self.column, default=self.fill)

    @property
    def check_name(self) -> str:
        """The transient CHECK (c IS NOT NULL) of PostgreSQL's NOT NULL."""
        return f"{self.table_name}_{self.column.name}"[: MAX_NAME - 8] + "_notnull"

    @property
    def trigger_name(self) -> str:
        """The fill's temporary trigger (PostgreSQL), named as its table of kept keys (a name
        the change holds); its function is ``schemagen.<that name>``."""
        assert self.aside is not None
        return self.aside.name

    @property
    def constant_fill(self) -> bool:
        """The fill is the same value at every write (not the clock): the restore can tell a
        kept row still holding it from one the application has written since."""
        return self.fill is not None and not (
            self.column.type.kind == "timestamptz"
            or (self.column.type.kind == "timestamp" and self.fill == "now")
        )

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.aside.columns) if self.aside else ()

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        cols = tuple(self.new_column if c.name == self.column.name else c for c in t.columns)
        schema = schema.put(replace(t, columns=cols))
        if self.aside is not None:
            schema = schema.without(self.aside.name) if self.nullable else schema.put(self.aside)
        return schema

    def reverse(self) -> SetNullableStep:
        return SetNullableStep(
            self.table_name, self.new_column, not self.nullable, self.fill, self.aside
        )

    def group(self, dialect: str) -> Group | None:
        if dialect == POSTGRESQL:
            if self.nullable:
                return RESTORED_NULLS if self.aside else None
            return VALIDATED_NOT_NULL
        # SQLite: one rebuild with the table's other changes, unless rows are filled or
        # restored around it (a unit of its own: the fill before the rebuild, the restore after)
        return None if self.aside else RECREATE_TABLE

    def risk(self, dialect: str) -> Risk:
        if dialect == SQLITE:
            return Risk(
                "database write lock",
                True,
                "SQLite cannot alter a column's nullability: the table is rebuilt",
                scans=True,
                blocks="writes",
            )
        if not self.nullable:
            return _validated_risk((self,), dialect)
        if self.aside:
            return _restore_risk((self,), dialect)
        return Risk(
            "ACCESS EXCLUSIVE (brief)",
            False,
            "DROP NOT NULL: catalogue only",
            blocks="reads and writes, briefly",
        )

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        table = before.table(self.table_name)
        if self.nullable or table is None or table.column(self.column.name) is None:
            return
        if self.fill is not None:
            yield from self._fill_collisions(table)
            return
        shown = [*table.primary_key, self.column.name] if table.primary_key else ["*"]
        cols = ", ".join(c if c == "*" else dialects.quote_ident(c) for c in shown)
        sql = (
            f"SELECT {cols} FROM {dialects.quote_ident(self.table_name)}\n"
            f"WHERE {dialects.quote_ident(self.column.name)} IS NULL"
        )
        yield RowCheck(f"{self.table_name}.{self.column.name}.nulls", sql, sql)

    def _fill_collisions(self, table: Table) -> Iterator[RowCheck]:
        """With ``fill`` on a column that is a unique key by itself: the rows that would hold
        the same value once filled (every NULL, and a row already holding the fill), when
        there are two or more."""
        alone = (self.column.name,)
        if not table.is_unique_key(alone) and not any(
            i.unique and i.columns == alone and not i.where for i in table.indexes
        ):
            return
        q = dialects.quote_ident
        shown = ", ".join(q(c) for c in (*table.primary_key, self.column.name))
        sql = {}
        for d in dialects.DIALECTS:
            fill = dialects.default_sql(self.fill, self.column.type, d)  # type: ignore[arg-type]
            hit = f"{q(self.column.name)} IS NULL OR {q(self.column.name)} = {fill}"
            sql[d] = (
                f"SELECT {shown} FROM {q(self.table_name)}\n"
                f"WHERE ({hit}) AND (SELECT count(*) FROM {q(self.table_name)} WHERE {hit}) > 1"
            )
        yield RowCheck(
            f"{self.table_name}.{self.column.name}.fill_repeats",
            sql[POSTGRESQL],
            sql[SQLITE],
        )

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        if dialect == POSTGRESQL and not self.nullable:
            for validated in ("NO", "YES"):
                yield f"{self.table_name}.check_constraints", (self.check_name, validated)

    def findings(self, change: Change) -> Iterator[Finding]:
        if self.nullable:
            yield Finding("SG120", f"makes {self.table_name}.{self.column.name} nullable")

    def describe(self) -> str:
        where = f"`{self.table_name}.{self.column.name}`"
        if self.nullable:
            back = (
                f"; the rows kept in `{self.aside.name}` set back to NULL, that table dropped"
                if self.aside
                else ""
            )
            return f"{where} nullable{back}"
        if self.aside is not None:
            return (
                f"{where} NOT NULL; NULLs filled with `{self.fill!r}`, their keys kept in "
                f"`{self.aside.name}`"
            )
        return f"{where} NOT NULL (refused while a row holds NULL)"
