"""``widen_key``: widen an integer key (``integer → bigint``, or from ``smallint``) together
with every foreign-key column that references it, as one operation.

A module of its own rather than a relaxed ``alter_column_type``: that operation converts one
column and refuses keys on purpose (a key's type is shared with the columns that reference
it, and PostgreSQL revalidates a foreign key under the ALTER's lock when either side changes
type). This one works out the whole set of columns that must change together (the key, the
columns referencing it, the columns referencing those, ...; a self-reference included) and
composes the steps other modules own:

1. the foreign keys among that set dropped (the step here, ``ReleaseForeignKeyStep``:
   ``drop_foreign_key``'s DDL without its lint finding, since the key comes back in the same
   change), then, table by table, the columns converted with ``alter_column_type``'s step
   (one ALTER TABLE per table on PostgreSQL, so one rewrite);
2. a serial key's sequence widened with it (``ALTER SEQUENCE ... AS bigint``; an identity's
   sequence follows the ALTER by itself), ``KeySequenceStep``;
3. each foreign key added back with ``add_foreign_key``'s step: NOT VALID in the change's
   transaction, then VALIDATE after the commit while reads and writes go on (SQLite rebuilds).

The steps are in this order, not key by key, so that the derived downgrade (the steps
reversed) has the same shape: all DDL in the change's one transaction on PostgreSQL, the
VALIDATEs after it. SQLite pays for it with up to three rebuilds of a referencing table
(drop the key, convert, add the key), each a copy under the database's write lock.

Risk: the conversions rewrite each table under ACCESS EXCLUSIVE on PostgreSQL (decided by
generator.risk, as for alter_column_type: lint SG102 names each table). The derived
downgrade narrows back: before any DDL its fit-check lists the rows whose value does not fit
(generator.checks, from the conversion), and ``KeySequenceStep`` lists a sequence that has
gone past the narrower type's maximum; nothing runs while either returns rows.

Refused at the operation's line: a member column that a partial index's predicate compares or
that an expression key uses (``coalesce(parent_id, 0)``): both are rendered, and read back
from the catalogue, by the columns' types, as ``alter_column_type`` refuses them (drop the
index first, widen, create it again).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator.coltypes import INTEGER_KINDS, INTEGER_RANGE, SqlType, parse_type
from generator.dialects import POSTGRESQL, SQLITE, quote_ident, sql_string
from generator.ops.add_foreign_key import AddForeignKeyStep
from generator.ops.alter_column_type import AlterColumnTypeStep, sliced_key, swapped_keys
from generator.ops.base import OperationSpec, Problem, Risk, RowCheck, Step
from generator.ops.drop_foreign_key import DropForeignKeyStep
from generator.plan import RECREATE_TABLE, Group
from generator.spec import Identifier, TypeName
from generator.state import Column, ForeignKey, Schema, indexes_typed_by

if TYPE_CHECKING:
    from generator.resolve import Resolver


class WidenKey(OperationSpec):
    op: Literal["widen_key"]
    table: Identifier
    column: Identifier
    from_: TypeName = Field(alias="from")
    to: TypeName
    online: bool = Field(
        default=True,
        description=(
            "PostgreSQL: each table converted online by shadow table (a new table of the new "
            "types filled by checked, resumable batches, swapped in by a short contract), the "
            "foreign keys kept all along; a table the swap cannot carry takes the blocking "
            "ALTER; false: the keys dropped, every table rewritten by ALTER TABLE, the keys "
            "added back (a maintenance window)"
        ),
    )

    position: ClassVar[int] = 250
    templates: ClassVar[tuple[str, ...]] = ("ops/widen_key.j2", "ops/key_sequence.j2")
    example: ClassVar[str] = "{op: widen_key, table: t, column: id, from: integer, to: bigint}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `column` (a primary key or a referenced column), `from`, `to` (integer "
        "types, wider)",
        "convert the key and every foreign-key column that references it (transitively) in "
        "one change; PostgreSQL, by default (`online`): each table converted online by shadow "
        "table, the keys kept all along (a table with a key to itself, or one the swap cannot "
        "carry, takes the blocking ALTER; see docs/online.md); `online: false`: the keys "
        "dropped, each table rewritten (SG102), the keys added back `NOT VALID` and validated "
        "apart; a serial's sequence widened (SQLite rebuilds)",
        "narrow them back the same way; refused before any DDL while a value (or the key's "
        "sequence) does not fit, the rows listed",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        found = r.table_column(self.table, self.column, problems)
        if found is None:
            return [], problems
        table, column = found
        old, new = parse_type(self.from_), parse_type(self.to)
        if column.type != old:
            problems.append(
                (("from",), f"column {self.table}.{self.column} is {column.type}, not {old}")
            )
            return [], problems
        kinds = INTEGER_KINDS
        if (
            old.kind not in kinds
            or new.kind not in kinds
            or kinds.index(new.kind) <= kinds.index(old.kind)
        ):
            problems.append(
                (
                    ("to",),
                    f"widen_key widens an integer key ({' → '.join(kinds)}): not {old} → {new}",
                )
            )
            return [], problems
        composite = [
            f.name
            for t in r.tables()
            for f in t.foreign_keys
            if f.composite
            and (
                (t.name == table.name and column.name in f.columns)
                or (f.ref_table == table.name and column.name in f.ref_columns)
            )
        ]
        if composite:
            problems.append(
                (
                    ("column",),
                    f"{self.table}.{self.column} is in composite foreign key "
                    f"{', '.join(composite)}: widen_key follows single-column keys only",
                )
            )
            return [], problems
        own = table.fk_on(column.name)
        if own is not None:
            problems.append(
                (
                    ("column",),
                    f"{self.table}.{self.column} references {own.ref_table}.{own.ref_column}: "
                    "widen that key, which widens this column with it",
                )
            )
            return [], problems
        # the columns that change together, breadth first from the key
        members: list[tuple[str, Column]] = [(table.name, column)]
        keys: list[ForeignKey] = []
        seen = {(table.name, column.name)}
        i = 0
        while i < len(members):
            parent, key = members[i]
            i += 1
            for t in r.tables():
                for fk in t.foreign_keys:
                    if fk.ref_table != parent or key.name not in fk.ref_columns:
                        continue
                    if fk.composite:
                        problems.append(
                            (
                                ("column",),
                                f"{parent}.{key.name} is referenced by composite foreign key "
                                f"{fk.name}: widen_key follows single-column keys only",
                            )
                        )
                        continue
                    keys.append(fk)
                    child = t.column(fk.column)
                    assert child is not None
                    if (t.name, child.name) in seen:
                        continue
                    seen.add((t.name, child.name))
                    if child.type != old:
                        problems.append(
                            (
                                ("column",),
                                f"{t.name}.{child.name} references {parent}.{key.name} but is "
                                f"{child.type}, not {old}",
                            )
                        )
                    members.append((t.name, child))
        if not column.primary_key and not keys:
            problems.append(
                (
                    ("column",),
                    f"{self.table}.{self.column} is neither a primary key nor referenced by a "
                    "foreign key: use alter_column_type",
                )
            )
        for name, member in members:
            work = r.table_named(name)
            assert work is not None
            partial, keyed = indexes_typed_by(work.indexes, member.name)
            if partial:
                problems.append(
                    (
                        ("column",),
                        f"the predicate of index {', '.join(partial)} names {name}.{member.name}: "
                        "drop the index first, then widen the key",
                    )
                )
            # an expression key is rendered (and read back from the catalogue) by its
            # columns' types, as alter_column_type refuses it
            if keyed:
                problems.append(
                    (
                        ("column",),
                        f"an expression key of index {', '.join(keyed)} uses "
                        f"{name}.{member.name}: drop the index first, widen the key, then "
                        "create the index again",
                    )
                )
        if problems:
            return [], problems
        steps: list[Step] = []
        order = list(dict.fromkeys(name for name, _ in reversed(members)))  # leaves first
        # every key released before any column changes, added back after all: the derived
        # downgrade (the steps reversed) has the same shape, so on PostgreSQL both run their
        # DDL in the change's one transaction (a VALIDATE between two ALTERs would commit
        # half of it)
        # Online (PostgreSQL): a table at a time by shadow table, the keys kept (the swap moves
        # the keys pointing at a table and copies its own): every member table has a primary
        # key for the batches to follow; the keys' release and restore are then SQLite's only
        online = self.online and all(
            (w := r.table_named(name)) is not None and bool(w.primary_key) for name in order
        )
        steps += [ReleaseForeignKeyStep(fk, online) for fk in keys]
        for name in order:
            steps += [_conversion(r, name, c, new, online) for t, c in members if t == name]
        steps += [
            KeySequenceStep(name, c, new) for name, c in members if c.identity and c.primary_key
        ]
        steps += [AddForeignKeyStep(fk, online) for fk in keys]
        return steps, problems


def _conversion(r: Resolver, table: str, column: Column, new: SqlType, online: bool) -> Step:
    """A member column's conversion: alter_column_type's step, online on PostgreSQL by shadow
    table only (``keyed``: a shadow column would lose the key), else the blocking ALTER (a
    table with a key to itself, which the swap cannot carry, is known here already)."""
    work = r.table_named(table)
    assert work is not None
    if not online or any(f.ref_table == table for f in work.foreign_keys):
        return AlterColumnTypeStep(table, column, new)
    pointing = swapped_keys(r, table)
    return AlterColumnTypeStep(
        table,
        column,
        new,
        True,
        work.primary_key,
        indexes=tuple(i for i in work.indexes if column.name in i.all_columns),
        sliced=sliced_key(work),
        pointing=pointing,
        keyed=True,
    )


@dataclass(frozen=True)
class ReleaseForeignKeyStep(Step):
    """A foreign key dropped while the columns on both of its sides change type; the same
    change adds it back (so no SG120: nothing is given up)."""

    fk: ForeignKey
    online: bool = False  # PostgreSQL keeps the key (the online conversions carry it)

    kind: ClassVar[str] = "release_foreign_key"
    template: ClassVar[str] = "ops/widen_key.j2"

    @property
    def table_name(self) -> str:
        return self.fk.table

    def _dropped(self) -> DropForeignKeyStep:
        return DropForeignKeyStep(self.fk)

    def apply(self, schema: Schema) -> Schema:
        return self._dropped().apply(schema)

    def runs_on(self, dialect: str) -> bool:
        return not (self.online and dialect == POSTGRESQL)

    def reverse(self) -> AddForeignKeyStep:
        return AddForeignKeyStep(self.fk, self.online)

    def group(self, dialect: str) -> Group | None:
        return RECREATE_TABLE if dialect == SQLITE else None

    def risk(self, dialect: str) -> Risk:
        return self._dropped().risk(dialect)

    def describe(self) -> str:
        f = self.fk
        return (
            f"drop foreign key `{f.name}` (`{f.table}.{f.column}` → `{f.ref_table}`) while its "
            "columns widen; added back below"
        )


def _maximum(t: SqlType) -> int:
    return INTEGER_RANGE[t.kind][1] - 1


@dataclass(frozen=True)
class KeySequenceStep(Step):
    """The generated key's sequence follows its column's type on PostgreSQL: a serial's is
    altered here, an identity's is altered by the column's ALTER. On the way to a narrower
    type, a sequence already past its maximum is listed before any DDL. SQLite's key is the
    rowid: nothing to do."""

    table_name: str
    column: Column  # as it is before the step
    to: SqlType

    kind: ClassVar[str] = "key_sequence"
    template: ClassVar[str] = "ops/key_sequence.j2"

    def apply(self, schema: Schema) -> Schema:
        return schema  # the column's type is the conversion's step

    def reverse(self) -> KeySequenceStep:
        return KeySequenceStep(
            self.table_name, replace(self.column, type=self.to), self.column.type
        )

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL and self.column.serial:
            return Risk(
                "SHARE ROW EXCLUSIVE on the sequence (brief)",
                False,
                "catalogue-only change of the sequence's type and maximum",
                blocks="nextval() on the sequence, briefly",
            )
        return Risk(
            "none",
            False,
            "nothing to do: "
            + (
                "the identity's sequence follows the column's ALTER"
                if dialect == POSTGRESQL
                else "SQLite's key is the rowid"
            ),
            blocks="nothing",
        )

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        table = before.table(self.table_name)
        if table is None or table.column(self.column.name) is None:
            return
        if INTEGER_KINDS.index(self.to.kind) >= INTEGER_KINDS.index(self.column.type.kind):
            return
        target = f"pg_get_serial_sequence({sql_string(quote_ident(self.table_name))}, "
        target += f"{sql_string(self.column.name)})::regclass"
        postgresql = (
            "SELECT s.sequencename, s.last_value FROM pg_sequences AS s\n"
            "WHERE format('%I.%I', s.schemaname, s.sequencename)::regclass = "
            f"{target}\n  AND s.last_value > {_maximum(self.to)}"
        )
        yield RowCheck(
            f"{self.table_name}.{self.column.name}.sequence",
            postgresql,
            "SELECT 1 WHERE 0",  # the rowid: no sequence
        )

    def describe(self) -> str:
        what = "serial sequence" if self.column.serial else "identity sequence"
        return f"`{self.table_name}.{self.column.name}`'s {what}: {self.column.type} → {self.to}"
