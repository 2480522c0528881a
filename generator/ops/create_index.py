"""``create_index``: an index, CONCURRENTLY on PostgreSQL by default; the inverse of
``drop_index`` (generator/ops/drop_index.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator import checks, dialects
from generator.dialects import POSTGRESQL
from generator.ops.base import IndexStep, OperationSpec, Problem, Risk, RowCheck, Step
from generator.spec import DESCENDING_HELP, WHERE_HELP, Identifier, IndexKey, IndexKeys, Where
from generator.state import Index, Schema, Table

if TYPE_CHECKING:
    from generator.ops.drop_index import DropIndexStep
    from generator.resolve import Resolver


class CreateIndex(OperationSpec):
    op: Literal["create_index"]
    table: Identifier
    name: Identifier
    columns: IndexKeys
    unique: bool = False
    where: Where | None = Field(default=None, description=WHERE_HELP)
    descending: list[IndexKey] = Field(default_factory=list, description=DESCENDING_HELP)
    include: list[Identifier] = Field(
        default_factory=list,
        description="PostgreSQL: non-key columns stored in the index (INCLUDE); SQLite builds "
        "the index without them",
    )
    concurrently: bool = Field(
        default=True, description="PostgreSQL: CREATE INDEX CONCURRENTLY (false: blocks writes)"
    )

    position: ClassVar[int] = 30
    templates: ClassVar[tuple[str, ...]] = ("ops/create_index.j2",)
    example: ClassVar[str] = "{op: create_index, table: t, name: ix_t_c, columns: [c]}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`, `columns` (columns or expression keys: `lower(email)`, `upper`, "
        "`length`, `coalesce`), `unique` (default false), `where` (partial index), "
        "`descending` (keys in DESC order), `include` (PostgreSQL covering columns; "
        "SQLite builds the index without them)",
        "create it (unique: duplicates listed before any DDL)",
        "drop it",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        r.free_name(self.name, ("name",), problems)
        index = r.make_index(
            table,
            self.name,
            self.columns,
            self.unique,
            self.where,
            (),
            problems,
            self.descending,
            self.include,
        )
        return [CreateIndexStep(index, self.concurrently)], problems


@dataclass(frozen=True)
class CreateIndexStep(IndexStep):
    index: Index
    concurrently: bool = True  # PostgreSQL: outside a transaction, without blocking writes

    kind: ClassVar[str] = "create_index"
    template: ClassVar[str] = "ops/create_index.j2"

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.index.table)
        indexes = tuple(sorted((*t.indexes, self.index), key=lambda i: i.name))
        return schema.put(replace(t, indexes=indexes))

    def apply_in(self, r: Resolver) -> None:
        r.add_index(self.index)

    def reverse(self) -> DropIndexStep:
        from generator.ops.drop_index import DropIndexStep

        return DropIndexStep(self.index, self.concurrently)

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            if self.concurrently:
                return Risk(
                    "SHARE UPDATE EXCLUSIVE",
                    False,
                    "CONCURRENTLY: reads and writes go on; scans the table twice",
                    scans=True,
                    blocks="nothing",
                )
            return Risk(
                "SHARE",
                False,
                "without CONCURRENTLY: writes wait while it builds",
                scans=True,
                blocks="writes",
            )
        return Risk("database write lock", False, "scans the table", scans=True, blocks="writes")

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        table = before.table(self.index.table)
        if (
            self.index.unique
            and table is not None
            and self.index.all_columns <= {c.name for c in table.columns}
        ):
            yield duplicate_rows(self.index, table)

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        yield f"{self.index.table}.indexes", checks.index_row(self.index, dialect, False)

    def describe(self) -> str:
        i = self.index
        keys = ", ".join(k + (" DESC" if k in i.descending else "") for k in i.columns)
        return (
            f"create {'unique ' if i.unique else ''}index `{i.name}` on `{i.table}` ({keys})"
            + (f" INCLUDE ({', '.join(i.include)})" if i.include else "")
            + (f" WHERE {i.where_text}" if i.where is not None else "")
        )


def duplicate_rows(index: Index, table: Table) -> RowCheck:
    """The rows that share a value of a unique index's keys (expression keys evaluated; rows
    with a NULL key never collide; a partial index's rows only), with the table's primary key
    and the key columns, per dialect (the predicate is rendered per dialect)."""
    q = dialects.quote_ident
    keys = [index.key_sql(k) for k in index.columns]
    used = [c.name for c in table.columns if c.name in index.key_columns]
    shown = [*table.primary_key, *(c for c in used if c not in table.primary_key)]
    aliases = [f"k{n}" for n in range(len(keys))]
    named = ", ".join(f"{k} AS {a}" for k, a in zip(keys, aliases, strict=True))
    table_q = q(table.name)

    def sql(dialect: str) -> str:
        where = f"({index.where_sql(dialect)})" if index.where is not None else None
        only = f" WHERE {where}" if where else ""
        not_null = " AND ".join([*(f"{k} IS NOT NULL" for k in keys), *([where] if where else [])])
        return (
            f"SELECT {', '.join('r.' + q(c) for c in shown)} FROM (\n"
            f"    SELECT {', '.join(q(c) for c in shown)}, {named}\n"
            f"    FROM {table_q}{only}) AS r\n"
            f"JOIN (SELECT {named} FROM {table_q}\n"
            f"    WHERE {not_null}\n"
            f"    GROUP BY {', '.join(keys)} HAVING count(*) > 1) AS d\n"
            f"ON {' AND '.join(f'r.{a} = d.{a}' for a in aliases)}"
        )

    return RowCheck(f"{table.name}.{index.name}.duplicates", sql("postgresql"), sql("sqlite"))
