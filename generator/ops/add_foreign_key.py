"""``add_foreign_key``: a foreign key on an existing column; its inverse is
``drop_foreign_key``'s step. One column per key (the schema state's keys are single-column):
``columns`` and ``references.columns`` are lists of one.

PostgreSQL: ``ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID`` (a catalogue change: ACCESS
EXCLUSIVE on the table briefly, the statement also drops a leftover of a killed run; SHARE ROW
EXCLUSIVE on the referenced table), committed, then ``VALIDATE CONSTRAINT`` in its own
transaction (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one: reads and
writes go on while it scans). SQLite rebuilds the table with the key (batch mode, foreign keys
off during the copy, then PRAGMA foreign_key_check). Before any DDL the migration lists the
orphans (rows whose value has no parent) and does not start while there are any.
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
from generator.resolve import MAX_NAME
from generator.spec import FkAction, Identifier, Spec
from generator.state import ForeignKey, Schema, Table

if TYPE_CHECKING:
    from generator.ops.drop_foreign_key import DropForeignKeyStep
    from generator.resolve import Resolver, TableLike

OneColumn = Annotated[
    list[Identifier],
    Field(min_length=1, description="the key's column (one: composite keys are not supported)"),
]


class Target(Spec):
    table: Identifier
    columns: OneColumn


class AddForeignKey(OperationSpec):
    op: Literal["add_foreign_key"]
    table: Identifier
    name: Identifier
    columns: OneColumn
    references: Target
    on_delete: FkAction = "no_action"

    position: ClassVar[int] = 240
    templates: ClassVar[tuple[str, ...]] = ("ops/add_foreign_key.j2",)
    example: ClassVar[str] = (
        "op: add_foreign_key\ntable: t\nname: fk_t_p\ncolumns: [p_id]\n"
        "references: {table: p, columns: [id]}\non_delete: cascade"
    )
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`, `columns`, `references: {table, columns}`, `on_delete` (one column)",
        "PostgreSQL: `NOT VALID`, then `VALIDATE` in its own transaction; SQLite rebuilds the "
        "table (foreign-key safe); orphans listed before any DDL",
        "drop the key",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        table = r.table(self.table, ("table",), problems)
        if table is None:
            return [], problems
        fk = make_foreign_key(r, table, self, problems)
        return ([AddForeignKeyStep(fk)] if fk else []), problems


def constraint_names(table: TableLike) -> set[str]:
    t = table.table() if not isinstance(table, Table) else table
    return {
        *(f.name for f in t.foreign_keys),
        *(c.name for c in t.checks),
        *(u.name for u in t.uniques),
        t.pk_name,
    }


def make_foreign_key(
    r: Resolver, table: TableLike, op: AddForeignKey, problems: list[Problem]
) -> ForeignKey | None:
    for path, cols in (
        (("columns",), op.columns),
        (("references", "columns"), op.references.columns),
    ):
        if len(cols) != 1:
            problems.append((path, "a foreign key of several columns is not supported yet"))
    if problems:
        return None
    column = r.column(table, op.columns[0], ("columns", 0), problems)
    parent = table if op.references.table == table.name else r.table_named(op.references.table)
    if parent is None:
        r.table(op.references.table, ("references", "table"), problems)
        return None
    ref = op.references.columns[0]
    target = r.column(parent, ref, ("references", "columns", 0), problems)
    if column is None or target is None:
        return None
    if not parent.is_unique_key((ref,)):
        problems.append(
            (
                ("references", "columns", 0),
                f"{parent.name}.{ref} is neither a primary key nor unique, so it cannot be "
                "referenced",
            )
        )
    if target.type != column.type:
        problems.append(
            (
                ("columns", 0),
                f"column type {column.type} does not match the referenced {parent.name}.{ref} "
                f"({target.type})",
            )
        )
    if table.fk_on(column.name) is not None:
        problems.append((("columns", 0), f"{table.name}.{column.name} already has a foreign key"))
    if op.on_delete == "set_null" and not column.nullable:
        problems.append((("on_delete",), "ON DELETE set_null needs a nullable column"))
    if dialects.FK_ACTION_SQL[op.on_delete] == "SET DEFAULT" and column.default is None:
        problems.append((("on_delete",), "ON DELETE set_default needs a column default"))
    if len(op.name) > MAX_NAME - 5:  # room for a swap's temporary name
        problems.append((("name",), f"name {op.name!r} is too long"))
    elif op.name in constraint_names(table):
        problems.append((("name",), f"{table.name} already has a constraint {op.name!r}"))
    return ForeignKey(op.name, table.name, column.name, parent.name, ref, op.on_delete)


def orphans(fk: ForeignKey, table: Table) -> RowCheck:
    q = dialects.quote_ident
    shown = [*(k for k in table.primary_key if k != fk.column), fk.column]
    sql = (
        f"SELECT {', '.join('c.' + q(k) for k in shown)} FROM {q(fk.table)} AS c\n"
        f"WHERE c.{q(fk.column)} IS NOT NULL AND NOT EXISTS (\n"
        f"    SELECT 1 FROM {q(fk.ref_table)} AS p WHERE p.{q(fk.ref_column)} = c.{q(fk.column)}\n"
        ")"
    )
    return RowCheck(f"{fk.table}.{fk.name}.orphans", sql, sql)


def _validated_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return Risk(
        "ACCESS EXCLUSIVE (brief) on the table, SHARE ROW EXCLUSIVE on the referenced one "
        "(the NOT VALID key), then SHARE UPDATE EXCLUSIVE to validate",
        False,
        "added NOT VALID (catalogue only), validated after commit while reads and writes go on",
        scans=True,
        blocks="reads and writes, briefly",
    )


# PostgreSQL: the keys added NOT VALID in the change's transaction, each validated apart.
VALIDATED_FOREIGN_KEYS = Group(
    "validated_foreign_keys",
    "ops/add_foreign_key.j2",
    _validated_risk,
    any_table=True,
    transactional=False,
)


@dataclass(frozen=True)
class AddForeignKeyStep(Step):
    fk: ForeignKey

    kind: ClassVar[str] = "add_foreign_key"
    template: ClassVar[str] = "ops/add_foreign_key.j2"

    @property
    def table_name(self) -> str:
        return self.fk.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.fk.table)
        return schema.put(replace(t, foreign_keys=(*t.foreign_keys, self.fk)))

    def reverse(self) -> DropForeignKeyStep:
        from generator.ops.drop_foreign_key import DropForeignKeyStep

        return DropForeignKeyStep(self.fk)

    def group(self, dialect: str) -> Group:
        return VALIDATED_FOREIGN_KEYS if dialect == POSTGRESQL else RECREATE_TABLE

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return _validated_risk((self,), dialect)
        return sqlite_rebuild("SQLite cannot add a foreign key: the table is rebuilt")

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        table, parent = before.table(self.fk.table), before.table(self.fk.ref_table)
        if (
            table is not None
            and parent is not None
            and table.column(self.fk.column)
            and parent.column(self.fk.ref_column)
        ):
            yield orphans(self.fk, table)

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        if dialect == POSTGRESQL:
            yield f"{self.fk.table}.foreign_keys", checks.fk_row(self.fk, dialect, validated=False)

    def describe(self) -> str:
        f = self.fk
        return (
            f"add foreign key `{f.name}`: `{f.table}.{f.column}` → `{f.ref_table}.{f.ref_column}` "
            f"ON DELETE {f.on_delete}"
        )
