"""``add_unique``: a UNIQUE constraint on existing columns; its inverse is ``drop_unique``'s
step.

PostgreSQL: ``CREATE UNIQUE INDEX CONCURRENTLY`` (outside the transaction, SHARE UPDATE
EXCLUSIVE: reads and writes go on while it builds), then ``ADD CONSTRAINT ... UNIQUE USING
INDEX`` (a catalogue change under a brief ACCESS EXCLUSIVE lock: the index becomes the
constraint's). An INVALID index a killed build left is dropped and built again. SQLite
rebuilds the table with the constraint (batch mode, foreign-key safe). Before any DDL the
migration lists the rows that share a key (NULLs never collide) and does not start while
there are any.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from generator import checks, dialects
from generator.dialects import POSTGRESQL
from generator.ops.base import OperationSpec, Problem, Risk, RowCheck, Step, sqlite_rebuild
from generator.plan import RECREATE_TABLE, Group
from generator.spec import Identifier
from generator.state import Index, Schema, Table, UniqueConstraint

if TYPE_CHECKING:
    from generator.ops.drop_unique import DropUniqueStep
    from generator.resolve import Resolver

Columns = Annotated[list[Identifier], Field(min_length=1)]


class AddUnique(OperationSpec):
    op: Literal["add_unique"]
    table: Identifier
    name: Identifier
    columns: Columns

    position: ClassVar[int] = 230
    templates: ClassVar[tuple[str, ...]] = ("ops/add_unique.j2",)
    example: ClassVar[str] = "{op: add_unique, table: t, name: uq_t_c, columns: [c]}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`, `columns`",
        "PostgreSQL: `CREATE UNIQUE INDEX CONCURRENTLY`, then `ADD CONSTRAINT … UNIQUE USING "
        "INDEX`; SQLite rebuilds the table; rows sharing a key are listed before any DDL",
        "drop the constraint",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        r.free_name(self.name, ("name",), problems)
        r.index_columns(table, self.columns, ("columns",), problems)
        if table.is_unique_key(tuple(self.columns)):
            problems.append((("columns",), f"({', '.join(self.columns)}) is already a key"))
        unique = UniqueConstraint(self.name, self.table, tuple(self.columns))
        return [AddUniqueStep(unique)], problems


def duplicate_rows(unique: UniqueConstraint, table: Table) -> RowCheck:
    """The rows that share a value of the key (NULLs never collide), with their own key."""
    q = dialects.quote_ident
    cols = [q(c) for c in unique.columns]
    shown = [*(c for c in table.primary_key if c not in unique.columns), *unique.columns]
    sql = (
        f"SELECT {', '.join('r.' + q(c) for c in shown)} FROM {q(table.name)} AS r\n"
        f"JOIN (SELECT {', '.join(cols)} FROM {q(table.name)}\n"
        f"    WHERE {' AND '.join(c + ' IS NOT NULL' for c in cols)}\n"
        f"    GROUP BY {', '.join(cols)} HAVING count(*) > 1) AS d\n"
        f"ON {' AND '.join(f'r.{c} = d.{c}' for c in cols)}"
    )
    return RowCheck(f"{table.name}.{unique.name}.duplicates", sql, sql)


def _online_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return Risk(
        "SHARE UPDATE EXCLUSIVE while the index builds CONCURRENTLY, then ACCESS EXCLUSIVE "
        "(brief) to attach it",
        False,
        "CREATE UNIQUE INDEX CONCURRENTLY (reads and writes go on; two scans), then "
        "ADD CONSTRAINT USING INDEX (catalogue only)",
        scans=True,
        blocks="reads and writes, briefly",
    )


# PostgreSQL: the unique indexes built CONCURRENTLY outside the transaction, then attached.
UNIQUE_USING_INDEX = Group(
    "unique_using_index", "ops/add_unique.j2", _online_risk, any_table=True, transactional=False
)


@dataclass(frozen=True)
class AddUniqueStep(Step):
    unique: UniqueConstraint

    kind: ClassVar[str] = "add_unique"
    template: ClassVar[str] = "ops/add_unique.j2"

    @property
    def table_name(self) -> str:
        return self.unique.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.unique.table)
        return schema.put(replace(t, uniques=(*t.uniques, self.unique)))

    def reverse(self) -> DropUniqueStep:
        from generator.ops.drop_unique import DropUniqueStep

        return DropUniqueStep(self.unique)

    def group(self, dialect: str) -> Group:
        return UNIQUE_USING_INDEX if dialect == POSTGRESQL else RECREATE_TABLE

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return _online_risk((self,), dialect)
        return sqlite_rebuild("SQLite cannot add a constraint: the table is rebuilt")

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        table = before.table(self.unique.table)
        if table is not None and all(table.column(c) for c in self.unique.columns):
            yield duplicate_rows(self.unique, table)

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        if dialect == POSTGRESQL:
            u = self.unique
            index = Index(u.name, u.table, u.columns, unique=True)
            for valid in (False, True):  # killed during the build, or before the attach
                yield f"{u.table}.indexes", checks.index_row(index, dialect, valid)

    def describe(self) -> str:
        u = self.unique
        return f"add unique `{u.name}` on `{u.table}` ({', '.join(u.columns)})"
