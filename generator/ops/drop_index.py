"""``drop_index``: drop an index, CONCURRENTLY on PostgreSQL by default; the derived downgrade
builds it again as it was (``create_index``, generator/ops/create_index.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator import checks
from generator.dialects import POSTGRESQL
from generator.ops.base import Finding, IndexStep, OperationSpec, Problem, Risk, Step
from generator.spec import Identifier
from generator.state import Index, Schema

if TYPE_CHECKING:
    from generator.load import Change
    from generator.ops.create_index import CreateIndexStep
    from generator.resolve import Resolver


class DropIndex(OperationSpec):
    op: Literal["drop_index"]
    table: Identifier
    name: Identifier
    concurrently: bool = Field(
        default=True, description="PostgreSQL: DROP INDEX CONCURRENTLY (false: in the transaction)"
    )

    position: ClassVar[int] = 20
    templates: ClassVar[tuple[str, ...]] = ("ops/drop_index.j2",)
    example: ClassVar[str] = "{op: drop_index, table: t, name: ix_t_c}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`",
        "drop the index",
        "recreate it with the columns (and predicate) it had",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        index = table.index(self.name)
        if index is None:
            elsewhere = next((t.name for t in r.tables() if t.index(self.name)), None)
            hint = f" (it belongs to table {elsewhere!r})" if elsewhere else ""
            known = ", ".join(i.name for i in table.indexes) or "none"
            problems.append(
                (
                    ("name",),
                    f"index {self.name!r} does not exist on table {self.table!r}{hint} "
                    f"(indexes: {known})",
                )
            )
            return [], problems
        return [DropIndexStep(index, self.concurrently)], problems


def _fk_columns_without_index(schema: Schema) -> set[tuple[str, str]]:
    out = set()
    for t in schema.tables:
        # a partial index holds only some rows: it cannot serve the RESTRICT / CASCADE check
        leading = {i.columns[0] for i in t.indexes if not i.where}
        leading |= {u.columns[0] for u in t.uniques}
        if t.primary_key:
            leading.add(t.primary_key[0])
        out |= {(t.name, f.column) for f in t.foreign_keys if f.column not in leading}
    return out


@dataclass(frozen=True)
class DropIndexStep(IndexStep):
    index: Index
    concurrently: bool = True

    kind: ClassVar[str] = "drop_index"
    template: ClassVar[str] = "ops/drop_index.j2"

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.index.table)
        return schema.put(
            replace(t, indexes=tuple(i for i in t.indexes if i.name != self.index.name))
        )

    def apply_in(self, r: Resolver) -> None:
        r.remove_index(self.index)

    def reverse(self) -> CreateIndexStep:
        from generator.ops.create_index import CreateIndexStep

        return CreateIndexStep(self.index, self.concurrently)

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            if self.concurrently:
                return Risk(
                    "SHARE UPDATE EXCLUSIVE",
                    False,
                    "CONCURRENTLY: reads and writes go on",
                    blocks="nothing",
                )
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "without CONCURRENTLY: reads and writes of the table wait for the lock",
                blocks="reads and writes",
            )
        return Risk("database write lock", False, "quick", blocks="writes")

    def findings(self, change: Change) -> Iterator[Finding]:
        yield from super().findings(change)  # SG101
        # SG106 once per table, at the first of the change's index drops on it.
        first = next(
            s
            for s in change.steps
            if isinstance(s, DropIndexStep) and s.table_name == self.table_name
        )
        if first is not self:
            return
        missing = _fk_columns_without_index(change.after) - _fk_columns_without_index(change.before)
        lost = sorted(c for t, c in missing if t == self.table_name)
        if lost:
            yield Finding(
                "SG106",
                f"after this change {self.table_name}.{', '.join(lost)} has no index leading "
                "with it",
            )

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        yield f"{self.index.table}.indexes", checks.index_row(self.index, dialect, False)

    def describe(self) -> str:
        return f"drop index `{self.index.name}` on `{self.index.table}`"
