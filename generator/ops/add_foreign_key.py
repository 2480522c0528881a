"""``add_foreign_key``: a foreign key on existing columns; its inverse is
``drop_foreign_key``'s step. Several ``columns`` make a composite key, paired in order with
``references.columns``, which must be the referenced table's primary key or one of its unique
constraints (in that order).

PostgreSQL: ``ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID`` (a catalogue change: ACCESS
EXCLUSIVE on the table briefly, the statement also drops a leftover of a killed run; SHARE ROW
EXCLUSIVE on the referenced table), committed, then ``VALIDATE CONSTRAINT`` in its own
transaction (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one: reads and
writes go on while it scans). SQLite rebuilds the table with the key (batch mode, foreign keys
off during the copy, then PRAGMA foreign_key_check). Before any DDL the migration lists the
orphans (rows whose key columns are all non-NULL and match no parent row: MATCH SIMPLE)
and does not start while there are any.
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

KeyColumns = Annotated[
    list[Identifier],
    Field(
        min_length=1,
        description="the key's columns (several: a composite key, paired in order with the "
        "referenced columns of a primary key or unique constraint)",
    ),
]


class Target(Spec):
    table: Identifier
    columns: KeyColumns


class TableForeignKey(Spec):
    """A foreign key of a new table (``create_table``'s ``foreign_keys``), composite or not:
    the shape of ``add_foreign_key`` without its ``op`` and ``table``."""

    name: Identifier
    columns: KeyColumns
    references: Target
    on_delete: FkAction = "no_action"


class AddForeignKey(OperationSpec):
    op: Literal["add_foreign_key"]
    table: Identifier
    name: Identifier
    columns: KeyColumns
    references: Target
    on_delete: FkAction = "no_action"

    position: ClassVar[int] = 240
    templates: ClassVar[tuple[str, ...]] = ("ops/add_foreign_key.j2",)
    example: ClassVar[str] = (
        "op: add_foreign_key\ntable: t\nname: fk_t_p\ncolumns: [p_id]\n"
        "references: {table: p, columns: [id]}\non_delete: cascade"
    )
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `name`, `columns`, `references: {table, columns}`, `on_delete` (several "
        "columns: a composite key referencing a primary key or unique constraint)",
        "PostgreSQL: `NOT VALID`, then `VALIDATE` in its own transaction; SQLite rebuilds the "
        "table (foreign-key safe); orphans (MATCH SIMPLE: every key column non-NULL, no parent) "
        "listed before any DDL",
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
    r: Resolver, table: TableLike, op: AddForeignKey | TableForeignKey, problems: list[Problem]
) -> ForeignKey | None:
    if len(op.columns) != len(op.references.columns):
        problems.append(
            (
                ("references", "columns"),
                f"{len(op.columns)} column(s) cannot reference {len(op.references.columns)}: "
                "a key's columns pair with the referenced columns in order",
            )
        )
        return None
    for path, cols in (
        (("columns",), op.columns),
        (("references", "columns"), op.references.columns),
    ):
        for i, c in enumerate(cols):
            if c in cols[:i]:
                problems.append(((*path, i), f"column {c!r} is listed twice"))
    columns = [r.column(table, c, ("columns", i), problems) for i, c in enumerate(op.columns)]
    parent = table if op.references.table == table.name else r.table_named(op.references.table)
    if parent is None:
        r.table(op.references.table, ("references", "table"), problems)
        return None
    targets = [
        r.column(parent, c, ("references", "columns", i), problems)
        for i, c in enumerate(op.references.columns)
    ]
    if problems:
        return None
    refs = tuple(op.references.columns)
    if not parent.is_unique_key(refs) and len(refs) == 1:
        problems.append(
            (
                ("references", "columns", 0),
                f"{parent.name}.{refs[0]} is neither a primary key nor unique, so it cannot be "
                "referenced",
            )
        )
    elif not parent.is_unique_key(refs):
        problems.append(
            (
                ("references", "columns"),
                f"{parent.name}.({', '.join(refs)}) is neither the primary key nor a unique "
                "constraint (columns in this order), so it cannot be referenced",
            )
        )
    for i, (column, target) in enumerate(zip(columns, targets, strict=True)):
        assert column is not None and target is not None
        if target.type != column.type:
            problems.append(
                (
                    ("columns", i),
                    f"column type {column.type} does not match the referenced "
                    f"{parent.name}.{target.name} ({target.type})",
                )
            )
    taken = [f.name for f in table.foreign_keys if f.columns == tuple(op.columns)]
    if taken:
        problems.append(
            (("columns",), f"{table.name}.({', '.join(op.columns)}) already has a foreign key")
        )
    if op.on_delete == "set_null" and not all(c is not None and c.nullable for c in columns):
        problems.append((("on_delete",), "ON DELETE set_null needs a nullable column (each)"))
    if dialects.FK_ACTION_SQL[op.on_delete] == "SET DEFAULT" and any(
        c is not None and c.default is None for c in columns
    ):
        problems.append((("on_delete",), "ON DELETE set_default needs a default on each column"))
    if len(op.name) > MAX_NAME - 5:  # room for a swap's temporary name
        problems.append((("name",), f"name {op.name!r} is too long"))
    elif op.name in constraint_names(table):
        problems.append((("name",), f"{table.name} already has a constraint {op.name!r}"))
    pairs = tuple(zip(op.columns, refs, strict=True))
    return ForeignKey(
        op.name, table.name, pairs[0][0], parent.name, pairs[0][1], op.on_delete, pairs[1:]
    )


def orphans(fk: ForeignKey, table: Table) -> RowCheck:
    """The rows whose key has no parent: every column of the key non-NULL (MATCH SIMPLE: a
    row with a NULL in any of them is not checked) and no referenced row equal on all."""
    q = dialects.quote_ident
    shown = [*(k for k in table.primary_key if k not in fk.columns), *fk.columns]
    pairs = list(zip(fk.columns, fk.ref_columns, strict=True))
    sql = (
        f"SELECT {', '.join('c.' + q(k) for k in shown)} FROM {q(fk.table)} AS c\n"
        f"WHERE {' AND '.join(f'c.{q(c)} IS NOT NULL' for c, _ in pairs)} AND NOT EXISTS (\n"
        f"    SELECT 1 FROM {q(fk.ref_table)} AS p WHERE "
        f"{' AND '.join(f'p.{q(r)} = c.{q(c)}' for c, r in pairs)}\n"
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
    # PostgreSQL keeps the key: the operation around this step carries it (nothing to run)
    kept: bool = False

    kind: ClassVar[str] = "add_foreign_key"
    template: ClassVar[str] = "ops/add_foreign_key.j2"

    @property
    def table_name(self) -> str:
        return self.fk.table

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.fk.table)
        return schema.put(replace(t, foreign_keys=(*t.foreign_keys, self.fk)))

    def runs_on(self, dialect: str) -> bool:
        return not (self.kept and dialect == POSTGRESQL)

    def reverse(self) -> DropForeignKeyStep:
        from generator.ops.drop_foreign_key import DropForeignKeyStep

        return DropForeignKeyStep(self.fk, self.kept)

    def group(self, dialect: str) -> Group:
        return VALIDATED_FOREIGN_KEYS if dialect == POSTGRESQL else RECREATE_TABLE

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return _validated_risk((self,), dialect)
        return sqlite_rebuild("SQLite cannot add a foreign key: the table is rebuilt")

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        table, parent = before.table(self.fk.table), before.table(self.fk.ref_table)
        if table is not None and self.fk in table.foreign_keys:
            return  # the key holds already (widen_key adds back the key it dropped)
        if (
            table is not None
            and parent is not None
            and all(table.column(c) for c in self.fk.columns)
            and all(parent.column(c) for c in self.fk.ref_columns)
        ):
            yield orphans(self.fk, table)

    def interrupted(self, dialect: str) -> Iterator[tuple[str, checks.Row]]:
        if dialect == POSTGRESQL:
            yield f"{self.fk.table}.foreign_keys", checks.fk_row(self.fk, dialect, validated=False)

    def describe(self) -> str:
        return f"add foreign key {describe_fk(self.fk)}"


def describe_fk(f: ForeignKey) -> str:
    """A key as the review shows it: `t.c` → `p.id`, or `t.(a, b)` → `p.(x, y)`."""
    if f.composite:
        mine, theirs = f"({', '.join(f.columns)})", f"({', '.join(f.ref_columns)})"
    else:
        mine, theirs = f.column, f.ref_column
    return f"`{f.name}`: `{f.table}.{mine}` → `{f.ref_table}.{theirs}` ON DELETE {f.on_delete}"
