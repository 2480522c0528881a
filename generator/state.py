"""The schema as it stands between changes, and the typed steps that transform it.

Every step knows its inverse, computed from the state it was resolved against, so a
downgrade is the reversed list of reversed steps and never written by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from generator.coltypes import SqlType

DefaultValue = bool | int | float | str


@dataclass(frozen=True)
class Column:
    name: str
    type: SqlType
    nullable: bool
    primary_key: bool = False
    default: DefaultValue | None = None


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None  # a partial index's predicate, canonical (spec.Where)

    @property
    def where_terms(self) -> tuple[tuple[str, bool], ...]:
        """The predicate as (column, is_null) terms: ``a IS NULL AND b IS NOT NULL``."""
        if not self.where:
            return ()
        return tuple(
            (term.split()[0], not term.endswith("NOT NULL")) for term in self.where.split(" AND ")
        )


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str
    column: str
    ref_table: str
    ref_column: str
    on_delete: str


@dataclass(frozen=True)
class UniqueConstraint:
    name: str
    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class CheckConstraint:
    """``-bound < column < bound``: keeps a float column finite and inside the range of the
    decimal it was converted from (NaN and both infinities fail the comparison)."""

    name: str
    table: str
    column: str
    bound: int

    @property
    def sql(self) -> str:
        col = '"' + self.column + '"'
        return f"{col} > -{self.bound} AND {col} < {self.bound}"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    indexes: tuple[Index, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    uniques: tuple[UniqueConstraint, ...] = ()
    checks: tuple[CheckConstraint, ...] = ()
    # The primary key constraint's name, as the project's naming convention made it.
    pk_constraint: str | None = None

    @property
    def pk_name(self) -> str:
        return self.pk_constraint or f"pk_{self.name}"

    @property
    def primary_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.primary_key)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def index(self, name: str) -> Index | None:
        return next((i for i in self.indexes if i.name == name), None)

    def fk_on(self, column: str) -> ForeignKey | None:
        return next((f for f in self.foreign_keys if f.column == column), None)

    def is_unique_key(self, columns: tuple[str, ...]) -> bool:
        return columns == self.primary_key or any(u.columns == columns for u in self.uniques)

    def relation_names(self) -> set[str]:
        """Names PostgreSQL keeps in one namespace with tables: indexes and key indexes."""
        names = {self.name, *(i.name for i in self.indexes), *(u.name for u in self.uniques)}
        names |= {c.name for c in self.checks}
        if self.primary_key:
            names.add(self.pk_name)
        return names


def _sorted(items: Iterable[Index]) -> tuple[Index, ...]:
    return tuple(sorted(items, key=lambda i: i.name))


@dataclass(frozen=True)
class Schema:
    """Tables in creation order (parents before children)."""

    tables: tuple[Table, ...] = ()

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def get(self, name: str) -> Table:
        table = self.table(name)
        if table is None:
            raise KeyError(name)
        return table

    def put(self, table: Table) -> Schema:
        if self.table(table.name) is None:
            return Schema((*self.tables, table))
        return Schema(tuple(table if t.name == table.name else t for t in self.tables))

    def without(self, name: str) -> Schema:
        return Schema(tuple(t for t in self.tables if t.name != name))

    def relation_names(self) -> set[str]:
        return set().union(*(t.relation_names() for t in self.tables)) if self.tables else set()

    def referencing(self, table: str) -> list[ForeignKey]:
        return [f for t in self.tables for f in t.foreign_keys if f.ref_table == table]


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class CreateTableStep:
    table: Table
    kind: str = field(default="create_table", init=False)

    @property
    def table_name(self) -> str:
        return self.table.name

    def apply(self, schema: Schema) -> Schema:
        return schema.put(self.table)

    def reverse(self) -> DropTableStep:
        return DropTableStep(self.table)


@dataclass(frozen=True)
class DropTableStep:
    table: Table
    kind: str = field(default="drop_table", init=False)

    @property
    def table_name(self) -> str:
        return self.table.name

    def apply(self, schema: Schema) -> Schema:
        return schema.without(self.table.name)

    def reverse(self) -> CreateTableStep:
        return CreateTableStep(self.table)


@dataclass(frozen=True)
class CreateIndexStep:
    index: Index
    concurrently: bool = True  # PostgreSQL: outside a transaction, without blocking writes
    kind: str = field(default="create_index", init=False)

    @property
    def table_name(self) -> str:
        return self.index.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.index.table)
        return schema.put(replace(t, indexes=_sorted((*t.indexes, self.index))))

    def reverse(self) -> DropIndexStep:
        return DropIndexStep(self.index, self.concurrently)


@dataclass(frozen=True)
class DropIndexStep:
    index: Index
    concurrently: bool = True
    kind: str = field(default="drop_index", init=False)

    @property
    def table_name(self) -> str:
        return self.index.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.index.table)
        return schema.put(
            replace(t, indexes=tuple(i for i in t.indexes if i.name != self.index.name))
        )

    def reverse(self) -> CreateIndexStep:
        return CreateIndexStep(self.index, self.concurrently)


@dataclass(frozen=True)
class AlterColumnTypeStep:
    table_name: str
    column: Column  # as it is before the step
    to: SqlType
    kind: str = field(default="alter_column_type", init=False)

    @property
    def new_column(self) -> Column:
        return replace(self.column, type=self.to)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        cols = tuple(self.new_column if c.name == self.column.name else c for c in t.columns)
        return schema.put(replace(t, columns=cols))

    def reverse(self) -> AlterColumnTypeStep:
        return AlterColumnTypeStep(self.table_name, self.new_column, self.column.type)


@dataclass(frozen=True)
class AddColumnStep:
    table_name: str
    column: Column
    kind: str = field(default="add_column", init=False)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        return schema.put(replace(t, columns=(*t.columns, self.column)))

    def reverse(self) -> DropColumnStep:
        return DropColumnStep(self.table_name, self.column)


@dataclass(frozen=True)
class DropColumnStep:
    table_name: str
    column: Column
    kind: str = field(default="drop_column", init=False)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        return schema.put(
            replace(t, columns=tuple(c for c in t.columns if c.name != self.column.name))
        )

    def reverse(self) -> AddColumnStep:
        return AddColumnStep(self.table_name, self.column)


@dataclass(frozen=True)
class SetFkActionStep:
    fk: ForeignKey  # as it is before the step
    to: str
    kind: str = field(default="swap_fk_action", init=False)

    @property
    def table_name(self) -> str:
        return self.fk.table

    @property
    def new_fk(self) -> ForeignKey:
        return replace(self.fk, on_delete=self.to)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.fk.table)
        fks = tuple(self.new_fk if f.name == self.fk.name else f for f in t.foreign_keys)
        return schema.put(replace(t, foreign_keys=fks))

    def reverse(self) -> SetFkActionStep:
        return SetFkActionStep(self.new_fk, self.fk.on_delete)


@dataclass(frozen=True)
class AddCheckStep:
    check: CheckConstraint
    kind: str = field(default="add_check", init=False)

    @property
    def table_name(self) -> str:
        return self.check.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.check.table)
        return schema.put(replace(t, checks=(*t.checks, self.check)))

    def reverse(self) -> DropCheckStep:
        return DropCheckStep(self.check)


@dataclass(frozen=True)
class DropCheckStep:
    check: CheckConstraint
    kind: str = field(default="drop_check", init=False)

    @property
    def table_name(self) -> str:
        return self.check.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.check.table)
        return schema.put(replace(t, checks=tuple(c for c in t.checks if c != self.check)))

    def reverse(self) -> AddCheckStep:
        return AddCheckStep(self.check)


Step = (
    CreateTableStep
    | DropTableStep
    | CreateIndexStep
    | DropIndexStep
    | AlterColumnTypeStep
    | AddColumnStep
    | DropColumnStep
    | SetFkActionStep
    | AddCheckStep
    | DropCheckStep
)
