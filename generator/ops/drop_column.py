"""``drop_column``: take a column out of the schema. With ``keep_data: true`` (the default)
its values stay in the table, renamed aside; with ``keep_data: false`` it is dropped.

**Renamed aside in place, not copied into an archive table**, by measured cost
(``python -m benchmarks.experiments.drop_column_cost``, 1M rows, a NOT NULL integer column
with a default and an index; docs/authoring.md#drop_column):

- renamed aside: PostgreSQL upgrade blocks writers 5 ms (ACCESS EXCLUSIVE, catalogue only;
  the index dropped CONCURRENTLY first, 19 ms, nobody blocked); its downgrade 127 ms (rename
  back; SET NOT NULL scans) plus the index built CONCURRENTLY; SQLite 26 ms (RENAME COLUMN)
  for a nullable column without default, 1.5 s when a rebuild drops NOT NULL or the default.
- copied into an archive table: PostgreSQL upgrade blocks writers 2.2 s (the copy is exact
  only while writes wait: SHARE lock); its downgrade 10.5 s (an UPDATE of every row, which
  doubles the table); SQLite 0.66 s (CREATE TABLE AS, DROP COLUMN).

The copy is only cheaper on SQLite when a rebuild is needed, where every migration holds the
database's one write lock anyway; one way on both dialects keeps one state. So the column is
renamed to ``_dropped_<change number>_<column>`` (its archive name, from the change), made
nullable and stripped of its default (writers that no longer know it are not burdened:
catalogue-only on PostgreSQL; SQLite rebuilds for that, and only for that), and every index
that names it is dropped first (CONCURRENTLY on PostgreSQL; ``drop_index``'s step). The
state keeps it in ``Table.aside`` with its place in the column order, so the validation SQL
expects it, a later SQLite rebuild keeps it, and ``purge`` can destroy it.

The derived downgrade renames it back in place and restores its default and NOT NULL (rows
written since the drop get the default first, as they would have; without a default such
rows are listed by the downgrade's fit-check before any DDL, which refuses it), then builds
the indexes again (CONCURRENTLY): every value is the one it had. On PostgreSQL NOT NULL
comes back as set_nullable does it: CHECK (c IS NOT NULL) NOT VALID, VALIDATE after the
commit, then SET NOT NULL proven by the check (no scan under ACCESS EXCLUSIVE), the check
dropped.

``keep_data: false`` is ``DropColumnStep``, the schema-only drop (also the derived downgrade
of ``add_column``, whose output it keeps byte for byte); its downgrade adds the column back
empty, and lint SG111 (an error) says so until it is acknowledged.

A column in the primary key, a unique key, a foreign key (its own or one that references
it) or a check is refused: drop the constraint first. The range check of a decimal converted
to float is the exception: it goes with the column (a ``drop_check`` step first: SQLite's
table CHECK; on PostgreSQL the column's type, its domain, stays with the archived column, and
is dropped with the last column using it, generator/domains.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator import checks
from generator.dialects import POSTGRESQL, SQLITE, catalog_default, catalog_type, quote_ident
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step
from generator.ops.drop_check import DropCheckStep
from generator.ops.drop_index import DropIndexStep
from generator.plan import RECREATE_TABLE, Group
from generator.resolve import MAX_NAME
from generator.spec import Identifier
from generator.state import Column, Schema, Table

if TYPE_CHECKING:
    from generator.checks import Fit
    from generator.load import Change
    from generator.resolve import Resolver


def archive_name(number: int, name: str) -> str:
    """The name a change's archive of ``name`` (a column or a table) has."""
    return f"{archive_prefix(number)}{name}"


def archive_prefix(number: int) -> str:
    return f"_dropped_{number:04d}_"


class DropColumn(OperationSpec):
    op: Literal["drop_column"]
    table: Identifier
    column: Identifier
    keep_data: bool = Field(
        default=True,
        description="keep the values (renamed aside, restored by the downgrade); false: drop "
        "them (lint SG111)",
    )

    position: ClassVar[int] = 90
    templates: ClassVar[tuple[str, ...]] = (
        "ops/drop_column.j2",
        "ops/set_column_aside.j2",
        "ops/restore_column.j2",
    )
    example: ClassVar[str] = "{op: drop_column, table: t, column: c}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `column`, `keep_data` (default true)",
        "drop its indexes, then rename it aside to `_dropped_<change>_<column>` (catalogue "
        "only), nullable, no default: its values stay until `purge`; `keep_data: false` drops "
        "it (lint SG111)",
        "rename it back with its default, NOT NULL and indexes: every value as it was "
        "(`keep_data: false`: the column comes back empty)",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        work = r.table(self.table, ("table",), problems)
        if work is None:
            return [], problems
        column = r.column(work, self.column, ("column",), problems)
        if column is None:
            return [], problems
        table = work.table()
        name = f"{self.table}.{self.column}"
        # a range check of the column's type (PostgreSQL: its domain, state.Domain) goes with
        # the column: dropped first (SQLite: a table CHECK; PostgreSQL: nothing to do, the
        # column keeps its type aside, or the domain is dropped once unused, generator.domains)
        own = [c for c in table.checks if c.domain is not None and c.columns == {self.column}]
        checked = [c for c in table.checks if c not in own]
        holders = [
            ("the primary key", column.primary_key),
            (
                "unique key "
                + ", ".join(u.name for u in table.uniques if self.column in u.columns),
                any(self.column in u.columns for u in table.uniques),
            ),
            ("its foreign key", bool(table.fks_using(self.column))),
            (
                "a foreign key of "
                + ", ".join(
                    f.table
                    for f in r.schema.referencing(self.table)
                    if self.column in f.ref_columns
                ),
                any(self.column in f.ref_columns for f in r.schema.referencing(self.table)),
            ),
            (
                "a check (" + ", ".join(c.name for c in checked if self.column in c.columns) + ")",
                any(self.column in c.columns for c in checked),
            ),
        ]
        for what, holds in holders:
            if holds:
                problems.append(
                    (("column",), f"column {name} is in {what}: drop that first, then the column")
                )
        if len(table.columns) == 1:
            problems.append((("column",), f"column {name} is the only column of the table"))
        steps: list[Step] = [
            DropIndexStep(i, True) for i in table.indexes if self.column in i.all_columns
        ]
        steps += [DropCheckStep(c) for c in own]
        if not self.keep_data:
            steps.append(DropColumnStep(self.table, column))
            return steps, problems
        aside = archive_name(r.change_number, self.column)
        if len(aside) > MAX_NAME:
            problems.append(
                (("column",), f"its archive name {aside!r} is longer than {MAX_NAME} characters")
            )
        elif aside in {c.name for c in table.physical()}:
            problems.append(
                (("column",), f"{self.table} already has a column {aside!r} (dropped before?)")
            )
        steps.append(SetColumnAsideStep(self.table, column, aside, table.primary_key))
        return steps, problems


def without_column(t: Table, name: str) -> Table:
    """``t`` without its column ``name`` (the columns set aside after it move up one)."""
    position = [c.name for c in t.physical()].index(name)
    return replace(
        t,
        columns=tuple(c for c in t.columns if c.name != name),
        aside=tuple((p - 1 if p > position else p, c) for p, c in t.aside if c.name != name),
    )


@dataclass(frozen=True)
class DropColumnStep(Step):
    """The schema-only drop: ``keep_data: false``, and the derived downgrade of add_column."""

    table_name: str
    column: Column

    kind: ClassVar[str] = "drop_column"
    template: ClassVar[str] = "ops/drop_column.j2"

    def apply(self, schema: Schema) -> Schema:
        return schema.put(without_column(schema.get(self.table_name), self.column.name))

    def reverse(self) -> Step:
        from generator.ops.add_column import AddColumnStep

        return AddColumnStep(self.table_name, self.column)

    def group(self, dialect: str) -> Group | None:
        return RECREATE_TABLE if dialect == SQLITE else None

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "catalogue-only change",
                blocks="reads and writes",
            )
        return Risk(
            "database write lock",
            True,
            "SQLite drops a column by rebuilding the table",
            scans=True,
            blocks="writes",
        )

    def findings(self, change: Change) -> Iterator[Finding]:
        yield Finding(
            "SG111",
            f"{self.table_name}.{self.column.name} is dropped with keep_data: false: its "
            "values are lost, and the downgrade brings the column back empty",
        )

    def drops(self) -> str:
        return f"column {self.table_name}.{self.column.name}"

    def describe(self) -> str:
        return f"drop column `{self.table_name}.{self.column.name}` (**its values are lost**)"


# SQLite: a rebuild of its own for setting a column aside or restoring it, never merged with
# the table's other rebuild steps: batch mode cannot rename a column and add or drop one of
# the same name in one pass (add c then set c aside, or restore c then drop c).
REBUILD_ASIDE = replace(RECREATE_TABLE, kind="recreate_table_aside")


def _restored_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return Risk(
        "ACCESS EXCLUSIVE (brief: the rename back and a NOT VALID check, then SET NOT NULL "
        "proven by it), SHARE UPDATE EXCLUSIVE to validate",
        False,
        "renamed back; NOT NULL through CHECK (c IS NOT NULL) NOT VALID, validated after "
        "commit while reads and writes go on, so SET NOT NULL does not scan under its lock",
        scans=True,
        blocks="reads and writes, briefly",
    )


# PostgreSQL, restoring a NOT NULL column: the renames back and the NOT VALID checks in the
# change's transaction, each VALIDATE after its commit, then SET NOT NULL and the checks
# dropped (set_nullable's way: no scan under ACCESS EXCLUSIVE).
RESTORED_NOT_NULL = Group(
    "restored_not_null", "ops/restore_column.j2", _restored_risk, transactional=False
)


def _needs_rebuild(column: Column) -> bool:
    """SQLite alters nullability and defaults only by rebuilding the table."""
    return not column.nullable or column.default is not None


@dataclass(frozen=True)
class SetColumnAsideStep(Step):
    table_name: str
    column: Column  # as it was in the schema
    aside: str  # its archive name
    key: tuple[str, ...] = ()  # the table's primary key (names the rows of its checks)

    kind: ClassVar[str] = "set_column_aside"
    template: ClassVar[str] = "ops/set_column_aside.j2"

    @property
    def kept(self) -> Column:
        """The column as it stays in the table: renamed, nullable, no default, no key; of its
        type's domain still (PostgreSQL, state.Domain: its values keep the type)."""
        return Column(self.aside, self.column.type, True, domain=self.column.domain)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        position = [c.name for c in t.physical()].index(self.column.name)
        return schema.put(
            replace(
                t,
                columns=tuple(c for c in t.columns if c.name != self.column.name),
                aside=(*t.aside, (position, self.kept)),
            )
        )

    def reverse(self) -> RestoreColumnStep:
        return RestoreColumnStep(self.table_name, self.column, self.aside, self.key)

    def group(self, dialect: str) -> Group | None:
        return REBUILD_ASIDE if dialect == SQLITE and _needs_rebuild(self.column) else None

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "catalogue-only: renamed aside (DROP NOT NULL and DROP DEFAULT are catalogue "
                "changes too); its values stay",
                blocks="reads and writes, briefly",
            )
        if _needs_rebuild(self.column):
            return Risk(
                "database write lock",
                True,
                "SQLite drops NOT NULL or a default by rebuilding the table",
                scans=True,
                blocks="writes",
            )
        return Risk(
            "database write lock", False, "ALTER TABLE RENAME COLUMN: no rebuild", blocks="writes"
        )

    def describe(self) -> str:
        return (
            f"drop column `{self.table_name}.{self.column.name}`: renamed aside to "
            f"`{self.aside}`, its values kept until purged"
        )


@dataclass(frozen=True)
class RestoreColumnStep(Step):
    """The derived downgrade of ``SetColumnAsideStep``."""

    table_name: str
    column: Column  # as it comes back
    aside: str
    key: tuple[str, ...] = ()

    kind: ClassVar[str] = "restore_column"
    template: ClassVar[str] = "ops/restore_column.j2"

    @property
    def fills(self) -> bool:
        """Rows written since the drop hold NULL: they get the default before NOT NULL."""
        return not self.column.nullable and self.column.default is not None

    def fits(self) -> Iterator[Fit]:
        """NOT NULL without a default: rows written since the drop have no value for it; they
        are listed before any DDL and the downgrade refused."""
        if self.column.nullable or self.column.default is not None:
            return
        from generator.checks import Fit

        where = f"{quote_ident(self.aside)} IS NULL"
        yield Fit(self.table_name, self.key, self.aside, "not_null", where, where)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        physical = [self.column if c.name == self.aside else c for c in t.physical()]
        aside_names = {c.name for _, c in t.aside if c.name != self.aside}
        columns = tuple(c for c in physical if c.name not in aside_names)
        aside = tuple((i, c) for i, c in enumerate(physical) if c.name in aside_names)
        return schema.put(replace(t, columns=columns, aside=aside))

    def reverse(self) -> SetColumnAsideStep:
        return SetColumnAsideStep(self.table_name, self.column, self.aside, self.key)

    @property
    def check_name(self) -> str:
        """PostgreSQL: the transient CHECK (c IS NOT NULL) that proves NOT NULL (as
        set_nullable's)."""
        return f"{self.table_name}_{self.column.name}"[: MAX_NAME - 8] + "_notnull"

    def group(self, dialect: str) -> Group | None:
        if dialect == POSTGRESQL:
            return None if self.column.nullable else RESTORED_NOT_NULL
        return REBUILD_ASIDE if _needs_rebuild(self.column) else None

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        """Killed in its VALIDATE: renamed back with its default, still nullable, the
        transient check there (not yet valid, or valid)."""
        if dialect != POSTGRESQL or self.column.nullable:
            return
        c = self.column
        row = (c.name, catalog_type(c, dialect), "YES", catalog_default(c, dialect))
        yield f"{self.table_name}.columns", row
        for validated in ("NO", "YES"):
            yield f"{self.table_name}.check_constraints", (self.check_name, validated)

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            if not self.column.nullable:
                return _restored_risk((self,), dialect)
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "catalogue-only: renamed back",
                blocks="reads and writes, briefly",
            )
        if _needs_rebuild(self.column):
            return Risk(
                "database write lock",
                True,
                "SQLite restores NOT NULL or a default by rebuilding the table",
                scans=True,
                blocks="writes",
            )
        return Risk(
            "database write lock", False, "ALTER TABLE RENAME COLUMN: no rebuild", blocks="writes"
        )

    def describe(self) -> str:
        return (
            f"restore column `{self.table_name}.{self.column.name}` from `{self.aside}` with "
            "every value it had"
        )
