"""``create_table``: a table with its columns, keys and indexes (the baseline uses only this);
its inverse is the schema-only ``DropTableStep`` of ``drop_table`` (generator/ops/drop_table.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, StrictStr

from generator.dialects import POSTGRESQL
from generator.errors import Path
from generator.ops.add_check import EXPRESSION_HELP, make_check
from generator.ops.add_foreign_key import TableForeignKey, make_foreign_key
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step
from generator.resolve import MAX_NAME
from generator.spec import ColumnSpec, Identifier, IndexSpec, Spec
from generator.state import Column, Schema, Table, UniqueConstraint

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class CheckSpec(Spec):
    """A CHECK constraint of a new table: ``expression`` in the grammar add_check takes."""

    name: Identifier
    expression: StrictStr = Field(description=EXPRESSION_HELP)


class CreateTable(OperationSpec):
    """Create a table with its columns, keys, checks and indexes (the baseline uses only
    this)."""

    op: Literal["create_table"]
    name: Identifier
    columns: Annotated[list[ColumnSpec], Field(min_length=1)]
    primary_key_name: Identifier | None = Field(
        default=None,
        description="the primary key constraint's name as the database has it; defaults to the "
        "naming convention's",
    )
    checks: list[CheckSpec] = []  # noqa: RUF012 (a pydantic field: copied per instance)
    indexes: list[IndexSpec] = []  # noqa: RUF012 (a pydantic field: copied per instance)
    foreign_keys: list[TableForeignKey] = Field(
        default_factory=list,
        description="foreign keys of several columns (composite), or of one with a name and "
        "action given apart from the column: `{name, columns, references: {table, columns}, "
        "on_delete}`",
    )

    position: ClassVar[int] = 10
    templates: ClassVar[tuple[str, ...]] = ("ops/create_table.j2",)
    example: ClassVar[str] = (
        "op: create_table\nname: t\ncolumns: [{name: id, type: bigint, primary_key: true}]"
    )
    doc: ClassVar[tuple[str, str, str]] = (
        "`name`, `columns` (list of column), `primary_key_name`, `checks` (list of "
        "`{name, expression}`), `indexes` (list of "
        "`{name, columns, unique, where, descending, include}`), `foreign_keys` (list of "
        "`{name, columns, references: {table, columns}, on_delete}`: composite keys)",
        "create table, keys, checks and indexes",
        "drop the table",
    )

    def _identities(self, columns: list[Column], problems: list[Problem]) -> list[Column]:
        """Identity as declared; by default only on a single-column integer primary key (a
        composite key's columns are values of other rows, never generated)."""
        keys = [c for c in columns if c.primary_key]
        out = []
        for i, (c, declared) in enumerate(zip(columns, self.columns, strict=True)):
            integer = c.type.kind in ("integer", "bigint")
            if declared.serial:
                sequence = f"{self.name}_{c.name}_seq"
                if not integer or len(keys) > 1:
                    problems.append(
                        (
                            ("columns", i, "serial"),
                            "serial needs an integer or bigint single-column primary key",
                        )
                    )
                elif len(sequence) > MAX_NAME:
                    problems.append(
                        (("columns", i, "serial"), f"sequence name {sequence!r} is too long")
                    )
                out.append(replace(c, identity=True, serial=sequence))
                continue
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

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        if r.table_named(self.name) is not None:
            problems.append((("name",), f"table {self.name!r} already exists"))
        else:
            r.free_name(self.name, ("name",), problems)
        columns: list[Column] = []
        seen: set[str] = set()
        for i, c in enumerate(self.columns):
            if c.name in seen:
                problems.append((("columns", i, "name"), f"column {c.name!r} is declared twice"))
            seen.add(c.name)
            columns.append(r.make_column(self.name, c, ("columns", i), problems))
        columns = self._identities(columns, problems)
        for i, made in enumerate(columns):
            if made.type.kind == "enum" and made.type.name == self.name:
                problems.append(
                    (("columns", i, "type"), f"enum type name {self.name!r} is a table's")
                )
        if self.name in r.schema.enum_types():
            problems.append((("name",), f"{self.name!r} is the name of an enum type"))
        pk = self.primary_key_name or r.conventions.pk_name(self.name)
        table = Table(self.name, tuple(columns), pk_constraint=pk)
        names: set[str] = set()
        if self.primary_key_name and not table.primary_key:
            problems.append((("primary_key_name",), "the table has no primary key column"))
        if table.primary_key:
            if len(pk) > MAX_NAME:
                problems.append((("name",), f"derived primary key name {pk!r} is too long"))
            elif pk in r.relation_names():  # e.g. kept by the archive of a dropped table
                problems.append(
                    (
                        ("name",),
                        f"derived primary key name {pk!r} is already used by an index or key",
                    )
                )
            names.add(table.pk_name)
        uniques = []
        for i, c in enumerate(self.columns):
            if c.unique:
                name = c.unique_name or r.conventions.uq_name(self.name, c.name)
                _claim(names, name, ("columns", i, "unique_name"), problems)
                r.free_name(name, ("columns", i, "unique"), problems)
                uniques.append(UniqueConstraint(name, self.name, (c.name,)))
        table = Table(self.name, tuple(columns), uniques=tuple(uniques), pk_constraint=pk)
        fks = []
        for i, (c, col) in enumerate(zip(self.columns, columns, strict=True)):
            if c.references is not None:
                fk = r.make_fk(table, col, c.references, ("columns", i, "references"), problems)
                if fk is not None:
                    _claim(names, fk.name, ("columns", i, "references"), problems)
                    fks.append(fk)
        for i, spec_fk in enumerate(self.foreign_keys):
            local: list[Problem] = []
            with_keys = replace(table, foreign_keys=tuple(fks))
            fk_made = make_foreign_key(r, with_keys, spec_fk, local)
            problems += [(("foreign_keys", i, *path), message) for path, message in local]
            if fk_made is None:
                continue
            _claim(names, fk_made.name, ("foreign_keys", i, "name"), problems)
            fks.append(fk_made)
        checks = []
        for i, ck in enumerate(self.checks):
            at: Path = ("checks", i)
            if _claim(names, ck.name, (*at, "name"), problems):
                r.free_name(ck.name, (*at, "name"), problems)
            check = make_check(table, ck.name, ck.expression, (*at, "expression"), problems)
            if check is not None:
                checks.append(check)
        indexes = []
        for i, ix in enumerate(self.indexes):
            path: Path = ("indexes", i)
            if _claim(names, ix.name, (*path, "name"), problems):
                r.free_name(ix.name, (*path, "name"), problems)
            indexes.append(
                r.make_index(
                    table,
                    ix.name,
                    ix.columns,
                    ix.unique,
                    ix.where,
                    path,
                    problems,
                    ix.descending,
                    ix.include,
                )
            )
        table = Table(
            self.name,
            tuple(columns),
            indexes=tuple(sorted(indexes, key=lambda x: x.name)),
            foreign_keys=tuple(fks),
            uniques=tuple(uniques),
            checks=tuple(checks),
            pk_constraint=pk,
        )
        return [CreateTableStep(table)], problems


@dataclass(frozen=True)
class CreateTableStep(Step):
    table: Table

    kind: ClassVar[str] = "create_table"
    template: ClassVar[str] = "ops/create_table.j2"

    @property
    def table_name(self) -> str:
        return self.table.name

    def apply(self, schema: Schema) -> Schema:
        return schema.put(self.table)

    def apply_in(self, r: Resolver) -> None:
        if not r.add_table(self.table):
            r.apply_slow(self)

    def reverse(self) -> Step:
        from generator.ops.drop_table import DropTableStep

        return DropTableStep(self.table)

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "SHARE ROW EXCLUSIVE on referenced tables",
                False,
                "new, empty table",
                blocks="writes to referenced tables, briefly",
            )
        return Risk("database write lock", False, "new, empty table", blocks="writes")

    def findings(self, change: Change) -> Iterator[Finding]:
        t = self.table
        for f in t.foreign_keys:
            if f.ref_table != t.name and change.before.table(f.ref_table) is not None:
                yield Finding(
                    "SG105", f"{t.name}.{f.column} references existing table {f.ref_table}"
                )

    def describe(self) -> str:
        return f"create table `{self.table.name}`"


def _claim(names: set[str], name: str, at: Path, problems: list[Problem]) -> bool:
    """Take ``name`` for one of the table's constraints and indexes; False (and a problem at
    ``at``) when the table has used it already."""
    if name in names:
        problems.append((at, f"name {name!r} is used twice in this table"))
        return False
    names.add(name)
    return True
