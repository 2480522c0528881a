"""Check each spec operation against the schema before it and turn it into a typed step.

A problem is reported as ``(path inside the operation, message)`` so the loader can point
at the exact YAML line; an operation with any problem yields no step.
"""

from __future__ import annotations

import math
from dataclasses import replace

from generator import spec
from generator.coltypes import SqlType, conversion_problem, parse_type
from generator.conventions import DEFAULT, Conventions
from generator.errors import Path
from generator.state import (
    AddCheckStep,
    AddColumnStep,
    AlterColumnTypeStep,
    CheckConstraint,
    Column,
    CreateIndexStep,
    CreateTableStep,
    DefaultValue,
    DropIndexStep,
    ForeignKey,
    Index,
    Schema,
    SetFkActionStep,
    Step,
    Table,
    UniqueConstraint,
)

Problem = tuple[Path, str]
MAX_NAME = 63


def default_problem(value: DefaultValue, type_: SqlType) -> str | None:
    """Why ``value`` is not a valid literal default for a column of ``type_``."""
    kind = type_.kind
    if kind == "timestamptz":
        return None if value == "now" else "a timestamptz default must be `now`"
    if kind == "boolean":
        return None if isinstance(value, bool) else "a boolean default must be true or false"
    if isinstance(value, bool):
        return f"a {type_} default cannot be a boolean"
    if kind in ("integer", "bigint"):
        if not isinstance(value, int):
            return f"a {type_} default must be an integer"
        limit = 2**31 if kind == "integer" else 2**63
        return None if -limit <= value < limit else f"default {value} is out of range for {type_}"
    if kind in ("decimal", "float"):
        if not isinstance(value, int | float):
            return f"a {type_} default must be a number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"a {type_} default must be a finite number, not {value}"
        if kind == "float" and abs(value) >= 1e308:
            return f"default {value} is out of range for a float column"
        if kind == "decimal" and type_.precision is not None and type_.scale is not None:
            digits = type_.precision - type_.scale
            if abs(value) >= 10**digits:
                return f"default {value} does not fit {type_}"
        return None
    if not isinstance(value, str):
        return f"a {type_} default must be a string"
    if "\x00" in value:
        return "a default cannot contain a NUL character (neither database stores one)"
    if type_.length is not None and len(value) > type_.length:
        return f"default is {len(value)} characters long, longer than {type_}"
    return None


class _Work:
    """A table as a run of operations changes it: mutable, so that applying a step costs the
    same however many columns and indexes the table has. Immutable Tables (and Schemas) are
    built from it only when asked for (at the end of a change, or for a rare step kind).
    Loading a spec of N operations on one table was quadratic with a new Table per step."""

    def __init__(self, table: Table) -> None:
        self.name = table.name
        self.columns_by_name = {c.name: c for c in table.columns}
        self.indexes_by_name = {i.name: i for i in table.indexes}
        self.foreign_keys = table.foreign_keys
        self.uniques = table.uniques
        self.checks = table.checks
        self.pk_constraint = table.pk_constraint  # the convention's name, kept on a rebuild
        self.built: Table | None = table

    def table(self) -> Table:
        if self.built is None:
            self.built = Table(
                self.name,
                tuple(self.columns_by_name.values()),
                # Tables keep their indexes sorted by name (CreateIndexStep, create_table).
                tuple(sorted(self.indexes_by_name.values(), key=lambda i: i.name)),
                self.foreign_keys,
                self.uniques,
                self.checks,
                self.pk_constraint,
            )
        return self.built

    # The read side handlers use, as on Table.
    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(self.columns_by_name.values())

    @property
    def indexes(self) -> tuple[Index, ...]:
        return self.table().indexes

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.table().primary_key

    def column(self, name: str) -> Column | None:
        return self.columns_by_name.get(name)

    def index(self, name: str) -> Index | None:
        return self.indexes_by_name.get(name)

    def fk_on(self, column: str) -> ForeignKey | None:
        return next((f for f in self.foreign_keys if f.column == column), None)

    def is_unique_key(self, columns: tuple[str, ...]) -> bool:
        return self.table().is_unique_key(columns)


TableLike = Table | _Work


class Resolver:
    """Resolves operations one after another, carrying the schema along."""

    def __init__(self, schema: Schema, conventions: Conventions = DEFAULT) -> None:
        self.conventions = conventions
        self._load(schema)

    def _load(self, schema: Schema) -> None:
        self._works = {t.name: _Work(t) for t in schema.tables}
        self._built: Schema | None = schema
        # The schema's relation names, kept up to date step by step (None: recompute).
        self._names: set[str] | None = None

    @property
    def schema(self) -> Schema:
        """The schema as the operations so far left it (built once per change, not per step)."""
        if self._built is None:
            self._built = Schema(tuple(w.table() for w in self._works.values()))
        return self._built

    def resolve(self, op: spec.Operation) -> tuple[list[Step], list[Problem]]:
        handler = getattr(self, f"_{op.op}")
        steps, problems = handler(op)
        if not problems:
            for step in steps:
                self._apply(step)
        return (steps if not problems else []), problems

    def _apply(self, step: Step) -> None:
        """``step.apply`` on the working tables; the same result, without a copy per step."""
        names = self._names
        if isinstance(step, CreateIndexStep | DropIndexStep):
            work = self._works[step.index.table]
            if isinstance(step, CreateIndexStep):
                work.indexes_by_name[step.index.name] = step.index
                if names is not None:
                    names.add(step.index.name)
            else:
                work.indexes_by_name.pop(step.index.name, None)
                if names is not None:
                    names.discard(step.index.name)
        elif isinstance(step, AddColumnStep | AlterColumnTypeStep):
            work = self._works[step.table_name]
            new = step.column if isinstance(step, AddColumnStep) else step.new_column
            work.columns_by_name[new.name] = new
        elif isinstance(step, AddCheckStep):
            work = self._works[step.check.table]
            work.checks = (*work.checks, step.check)
            if names is not None:
                names.add(step.check.name)
        elif isinstance(step, CreateTableStep) and step.table.name not in self._works:
            work = self._works[step.table.name] = _Work(step.table)
            if names is not None:
                names |= step.table.relation_names()
        else:  # any other step: through the immutable model, then back to working tables
            self._load(step.apply(self.schema))
            return
        work.built = None
        self._built = None

    def relation_names(self) -> set[str]:
        if self._names is None:
            self._names = self.schema.relation_names()
        return self._names

    def _schema_table(self, name: str) -> _Work | None:
        return self._works.get(name)

    # ------------------------------------------------------------------ helpers

    def _table(self, name: str, path: Path, problems: list[Problem]) -> _Work | None:
        table = self._schema_table(name)
        if table is None:
            known = ", ".join(self._works) or "none"
            problems.append((path, f"table {name!r} does not exist (tables: {known})"))
        return table

    def _column(
        self, table: TableLike, name: str, path: Path, problems: list[Problem]
    ) -> Column | None:
        column = table.column(name)
        if column is None:
            known = ", ".join(c.name for c in table.columns)
            problems.append(
                (path, f"column {name!r} does not exist in table {table.name!r} (columns: {known})")
            )
        return column

    def _free_name(self, name: str, path: Path, problems: list[Problem]) -> None:
        if len(name) > MAX_NAME:
            problems.append((path, f"name {name!r} is longer than {MAX_NAME} characters"))
        elif name in self.relation_names():
            problems.append(
                (path, f"name {name!r} is already used by a table, index or key in the schema")
            )

    def _index_columns(
        self, table: TableLike, columns: list[str], path: Path, problems: list[Problem]
    ) -> None:
        seen: set[str] = set()
        for i, col in enumerate(columns):
            if col in seen:
                problems.append(((*path, i), f"column {col!r} is listed twice"))
            seen.add(col)
            self._column(table, col, (*path, i), problems)

    def _where_columns(
        self, table: TableLike, where: str | None, path: Path, problems: list[Problem]
    ) -> None:
        for column, _ in Index("", table.name, (), where=where).where_terms:
            self._column(table, column, path, problems)

    def _make_column(
        self, table_name: str, c: spec.ColumnSpec, path: Path, problems: list[Problem]
    ) -> Column:
        type_ = parse_type(c.type)
        if c.default is not None:
            problem = default_problem(c.default, type_)
            if problem:
                problems.append(((*path, "default"), problem))
        if c.primary_key and c.unique:
            problems.append(((*path, "unique"), "a primary key column is already unique"))
        return Column(c.name, type_, c.is_nullable, c.primary_key, c.default)

    @staticmethod
    def _identities(
        op: spec.CreateTable, columns: list[Column], problems: list[Problem]
    ) -> list[Column]:
        """Identity as declared; by default only on a single-column integer primary key (a
        composite key's columns are values of other rows, never generated)."""
        keys = [c for c in columns if c.primary_key]
        out = []
        for i, (c, declared) in enumerate(zip(columns, op.columns, strict=True)):
            integer = c.type.kind in ("integer", "bigint")
            identity = declared.identity
            if identity is None:
                identity = c.primary_key and integer and len(keys) == 1
            elif identity and not integer:
                problems.append(
                    (
                        ("columns", i, "identity"),
                        f"identity needs an integer or bigint, not {c.type}",
                    )
                )
            elif identity and len(keys) > 1:
                problems.append(
                    (
                        ("columns", i, "identity"),
                        "identity needs a single-column primary key (SQLite generates values "
                        "only for its rowid)",
                    )
                )
            out.append(replace(c, identity=bool(identity)))
        return out

    def _make_fk(
        self,
        table: TableLike,
        column: Column,
        ref: spec.References,
        path: Path,
        problems: list[Problem],
    ) -> ForeignKey | None:
        parent: TableLike | None = (
            table if ref.table == table.name else self._schema_table(ref.table)
        )
        if parent is None:
            problems.append(((*path, "table"), f"referenced table {ref.table!r} does not exist"))
            return None
        target = parent.column(ref.column)
        if target is None:
            problems.append(
                ((*path, "column"), f"column {ref.column!r} does not exist in table {ref.table!r}")
            )
            return None
        if not parent.is_unique_key((ref.column,)):
            problems.append(
                (
                    (*path, "column"),
                    f"{ref.table}.{ref.column} is neither a primary key nor unique, "
                    "so it cannot be referenced",
                )
            )
        if target.type != column.type:
            problems.append(
                (
                    path,
                    f"column type {column.type} does not match the referenced "
                    f"{ref.table}.{ref.column} ({target.type})",
                )
            )
        name = self.conventions.fk_name(table.name, column.name, ref.table)
        if len(name) > MAX_NAME:
            problems.append((path, f"derived foreign key name {name!r} is too long"))
        return ForeignKey(name, table.name, column.name, ref.table, ref.column, ref.on_delete)

    # --------------------------------------------------------------- operations

    def _create_table(self, op: spec.CreateTable) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        if self._schema_table(op.name) is not None:
            problems.append((("name",), f"table {op.name!r} already exists"))
        else:
            self._free_name(op.name, ("name",), problems)
        columns: list[Column] = []
        seen: set[str] = set()
        for i, c in enumerate(op.columns):
            if c.name in seen:
                problems.append((("columns", i, "name"), f"column {c.name!r} is declared twice"))
            seen.add(c.name)
            columns.append(self._make_column(op.name, c, ("columns", i), problems))
        columns = self._identities(op, columns, problems)
        pk = self.conventions.pk_name(op.name)
        table = Table(op.name, tuple(columns), pk_constraint=pk)
        names: set[str] = set()
        if table.primary_key:
            if len(pk) > MAX_NAME:
                problems.append((("name",), f"derived primary key name {pk!r} is too long"))
            names.add(table.pk_name)
        uniques = []
        for i, c in enumerate(op.columns):
            if c.unique:
                name = self.conventions.uq_name(op.name, c.name)
                self._free_name(name, ("columns", i, "unique"), problems)
                uniques.append(UniqueConstraint(name, op.name, (c.name,)))
                names.add(name)
        table = Table(op.name, tuple(columns), uniques=tuple(uniques), pk_constraint=pk)
        fks = []
        for i, (c, col) in enumerate(zip(op.columns, columns, strict=True)):
            if c.references is not None:
                fk = self._make_fk(table, col, c.references, ("columns", i, "references"), problems)
                if fk is not None:
                    fks.append(fk)
        indexes = []
        for i, ix in enumerate(op.indexes):
            path: Path = ("indexes", i)
            if ix.name in names:
                problems.append(((*path, "name"), f"name {ix.name!r} is used twice in this table"))
            else:
                self._free_name(ix.name, (*path, "name"), problems)
            names.add(ix.name)
            self._index_columns(table, ix.columns, (*path, "columns"), problems)
            self._where_columns(table, ix.where, (*path, "where"), problems)
            indexes.append(Index(ix.name, op.name, tuple(ix.columns), ix.unique, ix.where))
        table = Table(
            op.name,
            tuple(columns),
            indexes=tuple(sorted(indexes, key=lambda x: x.name)),
            foreign_keys=tuple(fks),
            uniques=tuple(uniques),
            pk_constraint=pk,
        )
        return [CreateTableStep(table)], problems

    def _drop_index(self, op: spec.DropIndex) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = self._table(op.table, ("table",), problems)
        if table is None:
            return [], problems
        index = table.index(op.name)
        if index is None:
            elsewhere = next((t.name for t in self._works.values() if t.index(op.name)), None)
            hint = f" (it belongs to table {elsewhere!r})" if elsewhere else ""
            known = ", ".join(i.name for i in table.indexes) or "none"
            problems.append(
                (
                    ("name",),
                    f"index {op.name!r} does not exist on table {op.table!r}{hint} "
                    f"(indexes: {known})",
                )
            )
            return [], problems
        return [DropIndexStep(index, op.concurrently)], problems

    def _create_index(self, op: spec.CreateIndex) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = self._table(op.table, ("table",), problems)
        if table is None:
            return [], problems
        self._free_name(op.name, ("name",), problems)
        self._index_columns(table, op.columns, ("columns",), problems)
        self._where_columns(table, op.where, ("where",), problems)
        index = Index(op.name, op.table, tuple(op.columns), op.unique, op.where)
        return [CreateIndexStep(index, op.concurrently)], problems

    def _alter_column_type(self, op: spec.AlterColumnType) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = self._table(op.table, ("table",), problems)
        if table is None:
            return [], problems
        column = self._column(table, op.column, ("column",), problems)
        if column is None:
            return [], problems
        old, new = parse_type(op.from_), parse_type(op.to)
        if column.type != old:
            problems.append(
                (("from",), f"column {op.table}.{op.column} is {column.type}, not {old}")
            )
        elif problem := conversion_problem(old, new):
            problems.append((("to",), problem))
        if column.primary_key:
            problems.append((("column",), "cannot change the type of a primary key column"))
        fk = table.fk_on(column.name)
        referencing = [
            f
            for t in self._works.values()
            for f in t.foreign_keys
            if f.ref_table == table.name and f.ref_column == column.name
        ]
        if fk is not None or referencing:
            problems.append((("column",), "cannot change the type of a column in a foreign key"))
        if column.default is not None and (problem := default_problem(column.default, new)):
            problems.append((("to",), f"the column's default no longer fits: {problem}"))
        steps: list[Step] = [AlterColumnTypeStep(op.table, column, new)]
        if op.range_check:
            if old.kind != "decimal" or new.kind != "float":
                problems.append(
                    (("range_check",), "range_check applies to a decimal to float conversion")
                )
            else:
                assert old.precision is not None and old.scale is not None
                name = self.conventions.range_check_name(op.table, op.column)
                self._free_name(name, ("range_check",), problems)
                bound = 10 ** (old.precision - old.scale)
                steps.append(AddCheckStep(CheckConstraint(name, op.table, op.column, bound)))
        return steps, problems

    def _add_column(self, op: spec.AddColumn) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = self._table(op.table, ("table",), problems)
        if table is None:
            return [], problems
        if table.column(op.column.name) is not None:
            problems.append(
                (("column", "name"), f"column {op.column.name!r} already exists in {op.table!r}")
            )
        column = self._make_column(op.table, op.column, ("column",), problems)
        for field_name in ("primary_key", "unique", "references"):
            if getattr(op.column, field_name):
                problems.append(
                    (
                        ("column", field_name),
                        f"add_column does not support {field_name}; add the column, "
                        "then constrain it in a later change",
                    )
                )
        # A NOT NULL column without a default is lint rule SG108: an error unless acknowledged
        # (fine on a table known to be empty).
        return [AddColumnStep(op.table, column)], problems

    def _swap_fk_action(self, op: spec.SwapFkAction) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = self._table(op.table, ("table",), problems)
        if table is None:
            return [], problems
        if self._column(table, op.column, ("column",), problems) is None:
            return [], problems
        fk = table.fk_on(op.column)
        if fk is None:
            problems.append((("column",), f"column {op.table}.{op.column} has no foreign key"))
            return [], problems
        if fk.on_delete != op.from_:
            problems.append(
                (("from",), f"foreign key {fk.name} is ON DELETE {fk.on_delete}, not {op.from_}")
            )
        elif op.to == op.from_:
            problems.append((("to",), f"foreign key {fk.name} is already ON DELETE {op.to}"))
        column = table.column(op.column)
        if op.to == "set_null" and column is not None and not column.nullable:
            problems.append((("to",), "ON DELETE set_null needs a nullable column"))
        return [SetFkActionStep(fk, op.to)], problems
