"""``drop_table``: take a table out of the schema. With ``keep_data: true`` (the default) it is
renamed aside to its archive name, ``_dropped_<change number>_<table>``, with every row, key
and index (they keep their names, which stay taken); with ``keep_data: false`` it is dropped.

Catalogue-only on both dialects (``ALTER TABLE ... RENAME TO``): PostgreSQL holds ACCESS
EXCLUSIVE for the rename only; SQLite rewrites the references to it in the DDL of tables that
reference it (archives), no rebuild. The archive keeps its own foreign keys, so it stays what
the table was: deleting a parent row still cascades into it or is refused by it, and the
derived downgrade renames back a table consistent with its parents. The state keeps it in
``Schema.archives``: the validation SQL checks it like any table (columns, keys, indexes),
and ``purge`` destroys it.

A foreign key of another live table that references it is refused: drop that key (or that
table) earlier in the same change. ``keep_data: false`` is ``DropTableStep`` (the derived
downgrade of ``create_table``): the downgrade creates the table empty, and lint SG111 says
so until it is acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator.dialects import POSTGRESQL
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step
from generator.ops.drop_column import archive_name
from generator.resolve import MAX_NAME
from generator.spec import Identifier
from generator.state import Schema, Table

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class DropTable(OperationSpec):
    op: Literal["drop_table"]
    table: Identifier
    keep_data: bool = Field(
        default=True,
        description="keep the rows (the table renamed aside, restored by the downgrade); "
        "false: drop them (lint SG111)",
    )

    position: ClassVar[int] = 100
    templates: ClassVar[tuple[str, ...]] = (
        "ops/drop_table.j2",
        "ops/archive_table.j2",
        "ops/restore_table.j2",
    )
    example: ClassVar[str] = "{op: drop_table, table: t}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `keep_data` (default true)",
        "rename it aside to `_dropped_<change>_<table>` with its rows, keys and indexes "
        "(catalogue only) until `purge`; a foreign key of another table to it is refused "
        "unless dropped first in the same change; `keep_data: false` drops it (lint SG111)",
        "rename it back: every row, index and key as it was (`keep_data: false`: created empty)",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        work = r.table(self.table, ("table",), problems)
        if work is None:
            return [], problems
        table = work.table()
        for f in r.schema.referencing(self.table):
            if f.table != self.table:
                problems.append(
                    (
                        ("table",),
                        f"foreign key {f.name} of {f.table}.{f.column} references "
                        f"{self.table}: drop it (or {f.table}) earlier in this change",
                    )
                )
        position = [t.name for t in r.schema.tables].index(self.table)
        if not self.keep_data:
            return [DropTableStep(table)], problems
        archive = archive_name(r.change_number, self.table)
        if len(archive) > MAX_NAME:
            problems.append(
                (("table",), f"its archive name {archive!r} is longer than {MAX_NAME} characters")
            )
        elif archive in r.relation_names():
            problems.append((("table",), f"name {archive!r} is already used (dropped before?)"))
        return [ArchiveTableStep(table, archive, position)], problems


def _retarget(t: Table, old: str, new: str) -> Table:
    """``t`` with its foreign keys to table ``old`` pointing at ``new`` (and, when ``t`` is
    that table, its own name and the table of its indexes and keys)."""
    fks = tuple(
        replace(f, ref_table=new if f.ref_table == old else f.ref_table) for f in t.foreign_keys
    )
    if t.name != old:
        return replace(t, foreign_keys=fks) if fks != t.foreign_keys else t
    return replace(
        t,
        name=new,
        indexes=tuple(replace(i, table=new) for i in t.indexes),
        foreign_keys=tuple(replace(f, table=new) for f in fks),
        uniques=tuple(replace(u, table=new) for u in t.uniques),
        checks=tuple(replace(c, table=new) for c in t.checks),
    )


@dataclass(frozen=True)
class ArchiveTableStep(Step):
    table: Table  # as it is in the schema
    archive: str
    position: int  # its place in the schema's tables (restored there)

    kind: ClassVar[str] = "archive_table"
    template: ClassVar[str] = "ops/archive_table.j2"

    @property
    def table_name(self) -> str:
        return self.table.name

    def apply(self, schema: Schema) -> Schema:
        moved = schema.map(lambda t: _retarget(t, self.table.name, self.archive))
        archived = moved.get(self.archive)
        return Schema(
            tuple(t for t in moved.tables if t.name != self.archive),
            (*moved.archives, archived),
        )

    def reverse(self) -> RestoreTableStep:
        return RestoreTableStep(self.table, self.archive, self.position)

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "catalogue-only: renamed aside with its rows, keys and indexes",
                blocks="reads and writes, briefly",
            )
        return Risk(
            "database write lock", False, "ALTER TABLE RENAME TO: no rebuild", blocks="writes"
        )

    def describe(self) -> str:
        return (
            f"drop table `{self.table.name}`: renamed aside to `{self.archive}` with its rows, "
            "keys and indexes, kept until purged"
        )


@dataclass(frozen=True)
class RestoreTableStep(Step):
    """The derived downgrade of ``ArchiveTableStep``."""

    table: Table  # as it comes back
    archive: str
    position: int

    kind: ClassVar[str] = "restore_table"
    template: ClassVar[str] = "ops/restore_table.j2"

    @property
    def table_name(self) -> str:
        return self.archive

    def apply(self, schema: Schema) -> Schema:
        moved = schema.map(lambda t: _retarget(t, self.archive, self.table.name))
        restored = moved.archive(self.table.name)
        assert restored is not None, f"no archive {self.archive}"
        tables = list(moved.tables)
        tables.insert(self.position, restored)
        return Schema(tuple(tables), tuple(t for t in moved.archives if t is not restored))

    def reverse(self) -> ArchiveTableStep:
        return ArchiveTableStep(self.table, self.archive, self.position)

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "catalogue-only: renamed back with its rows, keys and indexes",
                blocks="reads and writes, briefly",
            )
        return Risk(
            "database write lock", False, "ALTER TABLE RENAME TO: no rebuild", blocks="writes"
        )

    def describe(self) -> str:
        return f"restore table `{self.table.name}` from `{self.archive}` with every row"


@dataclass(frozen=True)
class DropTableStep(Step):
    """The schema-only drop: ``keep_data: false``, and the derived downgrade of create_table."""

    table: Table

    kind: ClassVar[str] = "drop_table"
    template: ClassVar[str] = "ops/drop_table.j2"

    @property
    def table_name(self) -> str:
        return self.table.name

    def apply(self, schema: Schema) -> Schema:
        return schema.without(self.table.name)

    def reverse(self) -> Step:
        from generator.ops.create_table import CreateTableStep

        return CreateTableStep(self.table)

    def risk(self, dialect: str) -> Risk:
        why = "deletes the table and every row in it"
        if dialect == POSTGRESQL:
            return Risk("ACCESS EXCLUSIVE", False, why, blocks="reads and writes")
        return Risk("database write lock", False, why, blocks="writes")

    def findings(self, change: Change) -> Iterator[Finding]:
        # Only drop_table with keep_data: false puts this step in an upgrade.
        yield Finding(
            "SG111",
            f"table {self.table.name} is dropped with keep_data: false: its rows are lost, "
            "and the downgrade creates it empty",
        )

    def drops(self) -> str:
        return f"table {self.table.name}"

    def describe(self) -> str:
        return f"drop table `{self.table.name}` (**its rows are deleted**)"
