"""The schema as a run of operations changes it, and the checks operations share.

Each operation resolves itself (``OperationSpec.resolve`` in its module under
``generator/ops/``) against a :class:`Resolver`, which holds the working schema and the
helpers every operation uses (does this table, column or name exist). A problem is reported
as ``(path inside the operation, message)`` so the loader can point at the exact YAML line;
an operation with any problem yields no step.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import replace
from typing import TypeVar, cast

from generator import expr, indexexpr, spec
from generator.coltypes import INTEGER_RANGE, SqlType, parse_type
from generator.conventions import DEFAULT, Conventions
from generator.errors import Path
from generator.ops.base import OperationSpec, Problem, Step
from generator.state import (
    CheckConstraint,
    Column,
    DefaultValue,
    ForeignKey,
    Index,
    Schema,
    Table,
)

MAX_NAME = 63


# The literal defaults of the types written as text, as the author must write them: the form
# both databases store and PostgreSQL's catalogue shows back.
TEXT_FORMS = {
    "date": "'YYYY-MM-DD'",
    "timestamp": "'YYYY-MM-DD HH:MM:SS' in UTC (up to 6 digits of a second after a '.', no "
    "trailing zero), or `now`",
    "uuid": "8-4-4-4-12 lowercase hexadecimal digits (canonical)",
    "json": "'{}' or '[]' (another default: set it in the application)",
    "bytes": "none: a bytes column takes no default",
}
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{0,5}[1-9])?$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _text_form_problem(value: str, kind: str) -> str | None:
    """Why the string ``value`` is not a default of ``kind`` (one of TEXT_FORMS)."""
    wrong = f"default {value!r} is not a {kind} in the form {TEXT_FORMS[kind]}"
    if kind == "json":
        return None if value in ("{}", "[]") else f"a json default must be {TEXT_FORMS[kind]}"
    if kind == "uuid":
        return None if _UUID_RE.match(value) else wrong
    if kind == "timestamp":
        if value == "now":
            return None
        if not _TIMESTAMP_RE.match(value):
            return wrong
        try:
            datetime.datetime.fromisoformat(value)
        except ValueError:
            return f"default {value!r} is not a valid timestamp"
        return None
    try:
        parsed = datetime.date.fromisoformat(value)
    except ValueError:
        return wrong
    return None if parsed.isoformat() == value else wrong


def default_problem(value: DefaultValue, type_: SqlType) -> str | None:
    """Why ``value`` is not a valid literal default for a column of ``type_``."""
    kind = type_.kind
    if kind == "timestamptz":
        return None if value == "now" else "a timestamptz default must be `now`"
    if kind == "bytes":
        return "a bytes column takes no default"
    if kind == "enum":
        if value in type_.labels:
            return None
        return f"default {value!r} is not one of {type_.name}'s labels ({', '.join(type_.labels)})"
    if kind in TEXT_FORMS:
        if not isinstance(value, str):
            return f"a {type_} default must be a string: {TEXT_FORMS[kind]}"
        return _text_form_problem(value, kind)
    if kind == "boolean":
        return None if isinstance(value, bool) else "a boolean default must be true or false"
    if isinstance(value, bool):
        return f"a {type_} default cannot be a boolean"
    if kind in INTEGER_RANGE:
        if not isinstance(value, int):
            return f"a {type_} default must be an integer"
        low, high = INTEGER_RANGE[kind]
        return None if low <= value < high else f"default {value} is out of range for {type_}"
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


_Part = TypeVar("_Part")


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return all(x is y for x, y in zip(a, b, strict=True))


def _parts(table: Table) -> tuple[object, ...]:
    """A table's fields (every field of state.Table), each part by its identity."""
    return (
        table.name,
        table.pk_constraint,
        *map(id, table.columns),
        None,
        *map(id, table.indexes),
        None,
        *map(id, table.foreign_keys),
        None,
        *map(id, table.uniques),
        None,
        *map(id, table.checks),
        None,
        *((position, id(column)) for position, column in table.aside),
    )


class WorkTable:
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
        self.pk_constraint = table.pk_constraint
        self.aside = table.aside
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
                self.aside,
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

    def fks_using(self, column: str) -> list[ForeignKey]:
        return [f for f in self.foreign_keys if column in f.columns]

    def is_unique_key(self, columns: tuple[str, ...]) -> bool:
        return self.table().is_unique_key(columns)


TableLike = Table | WorkTable


class Resolver:
    """Resolves operations one after another, carrying the schema along."""

    def __init__(self, schema: Schema, conventions: Conventions = DEFAULT) -> None:
        self.conventions = conventions
        # The change being resolved: its number, and the number of each change id so far
        # (archives are named from the change that makes them; purge names a change by id).
        self.change_number, self.change_id = 0, ""
        self.change_numbers: dict[str, int] = {}
        # The schema before the change being resolved (the loader sets it per change): what
        # an operation tells apart from what earlier operations of the same change added.
        self.change_start = schema
        # The tables of the states settled so far (settled_schema), by their parts, and
        # their parts (columns, indexes, keys, checks) by their repr; the ids of both (the
        # dicts keep them alive, so that their ids are not reused).
        self._interned: dict[tuple[object, ...], Table] = {}
        self._parts: dict[tuple[type, str], object] = {}
        self._settled: set[int] = set()
        self._load(schema)

    def _load(self, schema: Schema) -> None:
        self._works = {t.name: WorkTable(t) for t in schema.tables}
        self._archives = schema.archives
        self._built: Schema | None = schema
        # The schema's relation names, kept up to date step by step (None: recompute).
        self._names: set[str] | None = None

    @property
    def schema(self) -> Schema:
        """The schema as the operations so far left it (built once per change, not per step)."""
        if self._built is None:
            self._built = Schema(tuple(w.table() for w in self._works.values()), self._archives)
        return self._built

    def settled_schema(self) -> Schema:
        """:attr:`schema` at the end of a change (the loader's ``after``), settled: a part
        (a column, an index, a key, a check) of the same repr as one of an earlier state is
        that part, and a table of the very same parts as an earlier state's is that table
        (an index built, then dropped: the table of two changes back; a key swapped and
        swapped back). The caches of rendering find a table by identity before they hash or
        print it (generator.memo), so a state that comes back costs them no new key. By
        repr and identity, not ``==``: a default of 1 equals one of True, and they render
        differently."""
        schema = self.schema
        tables = []
        for table in schema.tables:
            if id(table) not in self._settled:
                columns = self._settle(table.columns)
                indexes = self._settle(table.indexes)
                foreign_keys = self._settle(table.foreign_keys)
                uniques = self._settle(table.uniques)
                checks = self._settle(table.checks)
                aside = self._settle(tuple(c for _, c in table.aside))
                settled = table
                if not (
                    _same(columns, table.columns)
                    and _same(indexes, table.indexes)
                    and _same(foreign_keys, table.foreign_keys)
                    and _same(uniques, table.uniques)
                    and _same(checks, table.checks)
                    and _same(aside, tuple(c for _, c in table.aside))
                ):
                    settled = replace(
                        table,
                        columns=columns,
                        indexes=indexes,
                        foreign_keys=foreign_keys,
                        uniques=uniques,
                        checks=checks,
                        aside=tuple(zip((at for at, _ in table.aside), aside, strict=True)),
                    )
                settled = self._interned.setdefault(_parts(settled), settled)
                self._settled.add(id(settled))
                if settled is not table:
                    self._works[table.name] = WorkTable(settled)
                table = settled
            tables.append(table)
        if any(a is not b for a, b in zip(tables, schema.tables, strict=True)):
            schema = self._built = Schema(tuple(tables), schema.archives)
        return schema

    def _settle(self, parts: tuple[_Part, ...]) -> tuple[_Part, ...]:
        """Each part, or the earlier one of its repr (a part settled before is found by its
        id: only new ones are printed)."""
        out = []
        for part in parts:
            if id(part) not in self._settled:
                part = cast(_Part, self._parts.setdefault((type(part), repr(part)), part))
                self._settled.add(id(part))
            out.append(part)
        return tuple(out)

    def resolve(self, op: OperationSpec) -> tuple[list[Step], list[Problem]]:
        steps, problems = op.resolve(self)
        if not problems:
            for step in steps:
                step.apply_in(self)
        return (steps if not problems else []), problems

    # The in-place updates steps apply through (``Step.apply_in``): the same result as
    # ``step.apply`` on the schema, without a copy of the table per step.

    def add_index(self, index: Index) -> None:
        work = self._works[index.table]
        work.indexes_by_name[index.name] = index
        if self._names is not None:
            self._names.add(index.name)
        self._changed(work)

    def remove_index(self, index: Index) -> None:
        work = self._works[index.table]
        work.indexes_by_name.pop(index.name, None)
        if self._names is not None:
            self._names.discard(index.name)
        self._changed(work)

    def put_column(self, table: str, column: Column) -> None:
        work = self._works[table]
        work.columns_by_name[column.name] = column
        self._changed(work)

    def add_check(self, check: CheckConstraint) -> None:
        work = self._works[check.table]
        work.checks = (*work.checks, check)
        if self._names is not None:
            self._names.add(check.name)
        self._changed(work)

    def add_table(self, table: Table) -> bool:
        """False when the table exists already (then apply the step the slow way)."""
        if table.name in self._works:
            return False
        work = self._works[table.name] = WorkTable(table)
        if self._names is not None:
            self._names |= table.relation_names()
        self._changed(work)
        return True

    def apply_slow(self, step: Step) -> None:
        """Any other step: through the immutable model, then back to working tables."""
        self._load(step.apply(self.schema))

    def _changed(self, work: WorkTable) -> None:
        work.built = None
        self._built = None

    def relation_names(self) -> set[str]:
        if self._names is None:
            self._names = self.schema.relation_names()
        return self._names

    def table_named(self, name: str) -> WorkTable | None:
        return self._works.get(name)

    # ------------------------------------------------------------------ helpers

    def table(self, name: str, path: Path, problems: list[Problem]) -> WorkTable | None:
        table = self.table_named(name)
        if table is None:
            known = ", ".join(self._works) or "none"
            problems.append((path, f"table {name!r} does not exist (tables: {known})"))
        return table

    def column(
        self, table: TableLike, name: str, path: Path, problems: list[Problem]
    ) -> Column | None:
        column = table.column(name)
        if column is None:
            known = ", ".join(c.name for c in table.columns)
            problems.append(
                (path, f"column {name!r} does not exist in table {table.name!r} (columns: {known})")
            )
        return column

    def table_column(
        self, table: str, column: str, problems: list[Problem]
    ) -> tuple[WorkTable, Column] | None:
        """The table and column an operation's ``table`` and ``column`` fields name, or None
        with the problem (at the field that names what is missing)."""
        work = self.table(table, ("table",), problems)
        if work is None:
            return None
        found = self.column(work, column, ("column",), problems)
        return None if found is None else (work, found)

    def check_enum(self, type_: SqlType, path: Path, problems: list[Problem]) -> None:
        """An enum type's name names one set of labels, in every column of the schema (and on
        PostgreSQL it must not be a table's or an index's name: types share their names)."""
        labels = {**self.change_start.enum_types(), **self.schema.enum_types()}.get(str(type_.name))
        if labels is not None and labels != type_.labels:
            problems.append(
                (
                    path,
                    f"enum type {type_.name} has the labels {', '.join(labels)} in the schema "
                    "(a type's labels do not change; name a new type)",
                )
            )
        elif type_.name in self.relation_names():
            problems.append((path, f"enum type name {type_.name!r} is a table's or index's"))

    def free_name(self, name: str, path: Path, problems: list[Problem]) -> None:
        if len(name) > MAX_NAME:
            problems.append((path, f"name {name!r} is longer than {MAX_NAME} characters"))
        elif name in self.relation_names():
            problems.append(
                (path, f"name {name!r} is already used by a table, index or key in the schema")
            )

    def index_columns(
        self, table: TableLike, columns: list[str], path: Path, problems: list[Problem]
    ) -> None:
        seen: set[str] = set()
        for i, col in enumerate(columns):
            if col in seen:
                problems.append(((*path, i), f"column {col!r} is listed twice"))
            seen.add(col)
            self.column(table, col, (*path, i), problems)

    def make_index(
        self,
        table: TableLike,
        name: str,
        columns: list[str],
        unique: bool,
        where: str | None,
        path: Path,
        problems: list[Problem],
        descending: list[str] | None = None,
        include: list[str] | None = None,
    ) -> Index:
        """The index, its predicate ``where`` parsed and type-checked against ``table`` by the
        expression grammar (a problem at ``path + ("where",)`` saying what it expected); a key
        of ``columns`` that is not a column name is an expression key (``lower(email)``),
        parsed and held to the shapes of ``indexexpr.key_unsupported`` (a problem at
        ``path + ("columns", i)``)."""
        keys, expressions = self.index_keys(table, columns, (*path, "columns"), problems)
        desc_keys = []
        for i, c in enumerate(descending or []):
            key = c if expr.IDENTIFIER.match(c) else _canonical_key(c)
            if key not in keys:
                problems.append(((*path, "descending", i), f"{c!r} is not one of the columns"))
            desc_keys.append(key)
        desc = tuple(k for k in keys if k in desc_keys)
        for i, c in enumerate(include or []):
            if c in keys:
                problems.append(((*path, "include", i), f"{c!r} is already a key column"))
            elif not expr.IDENTIFIER.match(c):
                problems.append(((*path, "include", i), f"{c!r} is not a column name"))
            else:
                self.column(table, c, (*path, "include", i), problems)
        used = {c for _, tree in expressions for c in expr.columns(tree)}
        key_types = tuple(
            sorted((c, col.type) for c in used if (col := table.column(c)) is not None)
        )
        index = Index(
            name,
            table.name,
            tuple(keys),
            unique,
            descending=desc,
            include=tuple(include or []),
            expressions=tuple(expressions),
            column_types=key_types,
        )
        if where is None:
            return index
        types = {c.name: expr.type_class(str(c.type)) for c in table.columns}
        try:
            tree = expr.parse(where)
            missing = [c for c in sorted(expr.columns(tree)) if table.column(c) is None]
            for column in missing:
                self.column(table, column, (*path, "where"), problems)
            if missing:
                return index
            expr.check(tree, "boolean", types, deterministic=True)
        except expr.ExprError as error:
            problems.append(
                ((*path, "where"), f"{error.message} (at offset {error.offset} of {where!r})")
            )
            return index
        sql_types = {c.name: c.type for c in table.columns}
        why = indexexpr.unsupported(tree, sql_types)
        if why:
            problems.append(((*path, "where"), f"{why} (got {where!r})"))
        used_types = dict(index.column_types) | {c: sql_types[c] for c in expr.columns(tree)}
        return replace(index, where=tree, column_types=tuple(sorted(used_types.items())))

    def index_keys(
        self, table: TableLike, columns: list[str], path: Path, problems: list[Problem]
    ) -> tuple[list[str], list[tuple[str, expr.Expr]]]:
        """The keys of an index (a column name, or the canonical text of an expression key)
        and the trees of its expression keys."""
        keys: list[str] = []
        expressions: list[tuple[str, expr.Expr]] = []
        for i, key in enumerate(columns):
            if expr.IDENTIFIER.match(key):
                if key in keys:
                    problems.append(((*path, i), f"column {key!r} is listed twice"))
                self.column(table, key, (*path, i), problems)
                keys.append(key)
                continue
            try:
                tree = expr.parse(key)
                missing = [c for c in sorted(expr.columns(tree)) if table.column(c) is None]
                for column in missing:
                    self.column(table, column, (*path, i), problems)
                if missing:
                    continue
                expr.infer(tree, {c.name: expr.type_class(str(c.type)) for c in table.columns})
            except expr.ExprError as error:
                problems.append(
                    ((*path, i), f"{error.message} (at offset {error.offset} of {key!r})")
                )
                continue
            why = indexexpr.key_unsupported(tree, {c.name: c.type for c in table.columns})
            if why:
                problems.append(((*path, i), f"{why} (got {key!r})"))
                continue
            text = expr.canonical(tree)
            if text in keys:
                problems.append(((*path, i), f"key {text!r} is listed twice"))
            keys.append(text)
            expressions.append((text, tree))
        return keys, expressions

    def make_column(
        self, table_name: str, c: spec.ColumnSpec, path: Path, problems: list[Problem]
    ) -> Column:
        type_ = parse_type(c.type)
        if c.default is not None:
            problem = default_problem(c.default, type_)
            if problem:
                problems.append(((*path, "default"), problem))
        if c.primary_key and c.unique:
            problems.append(((*path, "unique"), "a primary key column is already unique"))
        if type_.kind == "enum":
            self.check_enum(type_, (*path, "type"), problems)
        return Column(c.name, type_, c.is_nullable, c.primary_key, c.default)

    def make_fk(
        self,
        table: TableLike,
        column: Column,
        ref: spec.References,
        path: Path,
        problems: list[Problem],
    ) -> ForeignKey | None:
        parent: TableLike | None = table if ref.table == table.name else self.table_named(ref.table)
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
        name = ref.name or self.conventions.fk_name(table.name, column.name, ref.table)
        if len(name) > MAX_NAME:
            problems.append((path, f"derived foreign key name {name!r} is too long"))
        return ForeignKey(name, table.name, column.name, ref.table, ref.column, ref.on_delete)

    def tables(self) -> list[WorkTable]:
        return list(self._works.values())


def _canonical_key(text: str) -> str:
    """An expression key's canonical text (as ``Resolver.index_keys`` keeps it), or the text
    as given when it does not parse (then it matches no key)."""
    try:
        return expr.canonical(expr.parse(text))
    except expr.ExprError:
        return text
