"""``rename_table``: rename a table in place. The foreign keys of other tables follow it (the
state renames their ``ref_table``; both databases do the same by themselves). Its keys and
indexes keep their names, unless ``rename_dependents: true``: then every constraint whose
name is the project's naming convention for the old table (``generator/conventions.py``:
primary key, unique keys, range checks, its own foreign keys and the foreign keys of other
tables that reference it) takes the convention's name for the new table, and every index
whose name holds the old table's name as a ``_``-separated part has that part replaced
(indexes are named by the author, so this is the only rule that can follow them). Renames
the step decides are listed in it, so the derived downgrade restores each name exactly.

PostgreSQL: catalogue-only; the table, its constraints (``ALTER TABLE ... RENAME
CONSTRAINT``) and indexes (``ALTER INDEX ... RENAME``) are renamed under a brief ACCESS
EXCLUSIVE. SQLite: ``ALTER TABLE ... RENAME TO`` (no rebuild) rewrites the references in other
tables' DDL. SQLite keeps a constraint's name only in its table's CREATE TABLE, so a table
whose constraints are renamed (``rename_dependents``) is rebuilt from its definition after the
step (its risk says so); an index SQLite cannot rename is dropped and built again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from generator.dialects import POSTGRESQL
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step
from generator.resolve import MAX_NAME
from generator.spec import Identifier
from generator.state import Index, Schema, Table

if TYPE_CHECKING:
    from generator.conventions import Conventions
    from generator.load import Change
    from generator.resolve import Resolver

# The kinds of dependent name a rename can change, as the template renders each.
PRIMARY_KEY, UNIQUE, CHECK, FOREIGN_KEY, INDEX = "pk", "uq", "ck", "fk", "ix"


@dataclass(frozen=True)
class Rename:
    """One dependent renamed with the table: ``kind`` (above), on table ``table`` (its name
    after the table rename), ``old`` → ``new``."""

    kind: str
    table: str
    old: str
    new: str
    # False: a range check held on PostgreSQL by its column's domain (state.Domain), no
    # table constraint there to rename
    on_pg_table: bool = True

    def reverse(self, old_table: str, new_table: str) -> Rename:
        table = old_table if self.table == new_table else self.table
        return Rename(self.kind, table, self.new, self.old, self.on_pg_table)


class RenameTable(OperationSpec):
    op: Literal["rename_table"]
    table: Identifier
    to: Identifier
    rename_dependents: bool = False

    position: ClassVar[int] = 80
    templates: ClassVar[tuple[str, ...]] = ("ops/rename_table.j2",)
    example: ClassVar[str] = "{op: rename_table, table: t, to: u}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `to`, `rename_dependents` (default false)",
        "rename the table (catalogue only); foreign keys of other tables follow it; keys and "
        "indexes keep their names unless `rename_dependents` (then the naming convention's "
        "names, and the old table name replaced in index names); lint SG110",
        "rename it (and each renamed dependent) back",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        work = r.table(self.table, ("table",), problems)
        if work is None:
            return [], problems
        if self.to == self.table:
            problems.append((("to",), f"table {self.table!r} is already named so"))
            return [], problems
        r.free_name(self.to, ("to",), problems)
        renames: tuple[Rename, ...] = ()
        if self.rename_dependents:
            table = work.table()
            renames = dependent_renames(r.schema, table, self.to, r.conventions)
            taken = r.relation_names() - table.relation_names()
            new_names = [n.new for n in renames if n.kind != FOREIGN_KEY]
            for name in new_names:
                if len(name) > MAX_NAME:
                    problems.append(
                        (("rename_dependents",), f"name {name!r} is longer than {MAX_NAME}")
                    )
                elif name in taken or name == self.to or new_names.count(name) > 1:
                    problems.append(
                        (
                            ("rename_dependents",),
                            f"name {name!r} is already used by a table, index or key",
                        )
                    )
        step = RenameTableStep(self.table, self.to, renames)
        return [with_sqlite_rebuilds(step, r.schema)], problems


def with_sqlite_rebuilds(step: RenameTableStep, before: Schema) -> RenameTableStep:
    """``step`` with the tables SQLite rebuilds to rename constraints in their DDL (a
    constraint's name lives only in its table's CREATE TABLE there), as they are before and
    after the step."""
    after = step.apply(before)
    names = sorted({n.table for n in step.renames if n.kind != INDEX})
    return replace(
        step,
        sqlite_before=tuple(before.get(step.table_name if n == step.to else n) for n in names),
        sqlite_after=tuple(after.get(n) for n in names),
    )


def _index_name(name: str, old: str, new: str) -> str:
    return re.sub(rf"(?<![^_]){re.escape(old)}(?![^_])", new, name)


def dependent_renames(
    schema: Schema, table: Table, to: str, conventions: Conventions
) -> tuple[Rename, ...]:
    """The names that follow the table to ``to`` with ``rename_dependents``."""
    old = table.name
    out: list[Rename] = []

    def follow(kind: str, on: str, name: str, was: str, now: str, pg: bool = True) -> None:
        if name == was and was != now:
            out.append(Rename(kind, on, was, now, pg))

    if table.primary_key:
        follow(PRIMARY_KEY, to, table.pk_name, conventions.pk_name(old), conventions.pk_name(to))
    for u in table.uniques:
        if len(u.columns) == 1:
            c = u.columns[0]
            follow(UNIQUE, to, u.name, conventions.uq_name(old, c), conventions.uq_name(to, c))
    for ck in table.checks:
        if len(ck.columns) != 1:
            continue  # only a one-column check has a conventional name (the range check's)
        (column,) = ck.columns
        was, now = (
            conventions.range_check_name(old, column),
            conventions.range_check_name(to, column),
        )
        follow(CHECK, to, ck.name, was, now, ck.on_table("postgresql"))
    for t in schema.tables:
        for f in t.foreign_keys:
            if f.table != old and f.ref_table != old:
                continue
            on = to if f.table == old else f.table
            ref_was = f.ref_table
            ref_now = to if f.ref_table == old else f.ref_table
            was = conventions.fk_name(f.table, f.column, ref_was)
            now = conventions.fk_name(on, f.column, ref_now)
            follow(FOREIGN_KEY, on, f.name, was, now)
    for i in table.indexes:
        new = _index_name(i.name, old, to)
        if new != i.name:
            out.append(Rename(INDEX, to, i.name, new))
    return tuple(out)


def _renamed_table(t: Table, old: str, new: str, names: dict[tuple[str, str], str]) -> Table:
    """``t`` with table ``old`` called ``new`` wherever it is named, and the dependents in
    ``names`` ((kind, old name) → new name) renamed."""

    def name(kind: str, current: str) -> str:
        return names.get((kind, current), current)

    fks = tuple(
        replace(
            f,
            name=name(FOREIGN_KEY, f.name),
            table=new if f.table == old else f.table,
            ref_table=new if f.ref_table == old else f.ref_table,
        )
        for f in t.foreign_keys
    )
    if t.name != old:
        return replace(t, foreign_keys=fks) if fks != t.foreign_keys else t
    return replace(
        t,
        name=new,
        indexes=tuple(
            sorted(
                (replace(i, name=name(INDEX, i.name), table=new) for i in t.indexes),
                key=lambda i: i.name,
            )
        ),
        foreign_keys=fks,
        uniques=tuple(replace(u, name=name(UNIQUE, u.name), table=new) for u in t.uniques),
        checks=tuple(replace(c, name=name(CHECK, c.name), table=new) for c in t.checks),
        pk_constraint=name(PRIMARY_KEY, t.pk_name) if t.primary_key else t.pk_constraint,
    )


@dataclass(frozen=True)
class RenameTableStep(Step):
    table_name: str  # the table's name before the step
    to: str
    renames: tuple[Rename, ...] = ()
    # SQLite: the tables rebuilt to rename constraints, before and after the step.
    sqlite_before: tuple[Table, ...] = ()
    sqlite_after: tuple[Table, ...] = ()

    kind: ClassVar[str] = "rename_table"
    template: ClassVar[str] = "ops/rename_table.j2"

    def apply(self, schema: Schema) -> Schema:
        names = {(n.kind, n.old): n.new for n in self.renames}
        return schema.map(lambda t: _renamed_table(t, self.table_name, self.to, names))

    def reverse(self) -> RenameTableStep:
        return RenameTableStep(
            self.to,
            self.table_name,
            tuple(n.reverse(self.table_name, self.to) for n in self.renames),
            self.sqlite_after,
            self.sqlite_before,
        )

    @property
    def index_renames(self) -> tuple[Rename, ...]:
        return tuple(n for n in self.renames if n.kind == INDEX)

    @property
    def sqlite_index_renames(self) -> tuple[Rename, ...]:
        """The index renames SQLite does by themselves (a rebuilt table has its new names)."""
        rebuilt = {t.name for t in self.sqlite_after}
        return tuple(n for n in self.index_renames if n.table not in rebuilt)

    @property
    def constraint_renames(self) -> tuple[Rename, ...]:
        return tuple(n for n in self.renames if n.kind != INDEX)

    @property
    def pg_constraint_renames(self) -> tuple[Rename, ...]:
        """The constraints PostgreSQL renames in its catalogue (a domain's CHECK is not the
        table's)."""
        return tuple(n for n in self.constraint_renames if n.on_pg_table)

    def renamed_index(self, before: Table, n: Rename) -> Index:
        """Index ``n.old`` of ``before`` (the table before the step), as the step leaves it."""
        index = before.index(n.old)
        assert index is not None
        return replace(index, name=n.new, table=self.to)

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "catalogue-only rename; held briefly, no rewrite"
                + (
                    "; referencing tables locked briefly to rename their keys"
                    if any(n.table != self.to for n in self.renames)
                    else ""
                ),
                blocks="reads and writes, briefly",
            )
        if self.sqlite_after:
            return Risk(
                "database write lock",
                True,
                "ALTER TABLE RENAME TO, then a rebuild of "
                + ", ".join(t.name for t in self.sqlite_after)
                + " to rename constraints (SQLite keeps their names only in the table's DDL)",
                scans=True,
                blocks="writes",
            )
        if self.index_renames:
            return Risk(
                "database write lock",
                False,
                "ALTER TABLE RENAME TO: no rebuild; SQLite cannot rename an index, so each "
                "renamed index is dropped and built again",
                scans=True,
                blocks="writes",
            )
        return Risk(
            "database write lock", False, "ALTER TABLE RENAME TO: no rebuild", blocks="writes"
        )

    def findings(self, change: Change) -> Iterator[Finding]:
        yield Finding(
            "SG110",
            f"table {self.table_name} is renamed to {self.to}: running code that still uses "
            f"{self.table_name} fails from the moment the rename commits",
        )

    def describe(self) -> str:
        line = f"rename table `{self.table_name}` → `{self.to}`"
        if self.renames:
            line += " with " + ", ".join(f"`{n.old}` → `{n.new}`" for n in self.renames)
        return line
