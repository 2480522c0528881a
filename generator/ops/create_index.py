"""``create_index``: an index, CONCURRENTLY on PostgreSQL by default; the inverse of
``drop_index`` (generator/ops/drop_index.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from generator import checks
from generator.dialects import POSTGRESQL
from generator.ops.base import IndexStep, OperationSpec, Problem, Risk, Step
from generator.spec import WHERE_HELP, Identifier, Where
from generator.state import Index, Schema

if TYPE_CHECKING:
    from generator.ops.drop_index import DropIndexStep
    from generator.resolve import Resolver


class CreateIndex(OperationSpec):
    op: Literal["create_index"]
    table: Identifier
    name: Identifier
    columns: Annotated[list[Identifier], Field(min_length=1)]
    unique: bool = False
    where: Where | None = Field(default=None, description=WHERE_HELP)
    descending: list[Identifier] = Field(
        default_factory=list, description="key columns in descending order (DESC)"
    )
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
        "`table`, `name`, `columns`, `unique` (default false), `where` (partial index), "
        "`descending` (key columns in DESC order), `include` (PostgreSQL covering columns; "
        "SQLite builds the index without them)",
        "create it",
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

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        yield f"{self.index.table}.indexes", checks.index_row(self.index, dialect, False)

    def describe(self) -> str:
        i = self.index
        return f"create index `{i.name}` on `{i.table}` ({', '.join(i.columns)})"
