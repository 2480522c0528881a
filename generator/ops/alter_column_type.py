"""``alter_column_type``: convert a column's values to another type of its family; with
``range_check`` (decimal to float) also a CHECK keeping the decimal's range, added with the
``add_check`` operation's step inside the table's ALTER TABLE (the ``drop_check`` step undoes
it).

What a conversion costs is decided by generator.risk (the type facts, kept central and proven
on a real server); what narrows, by generator.coltypes; the SQL of both, by generator.dialects.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from generator import checks, coltypes, dialects, risk
from generator.coltypes import SqlType, conversion_problem, parse_type
from generator.dialects import POSTGRESQL, SQLITE
from generator.ops.add_check import AddCheckStep, failing_rows
from generator.ops.base import Finding, OperationSpec, Problem, Risk, RowCheck, Step
from generator.plan import ALTER_TABLE, RECREATE_TABLE, Group
from generator.resolve import default_problem
from generator.spec import Identifier, TypeName
from generator.state import (
    CheckConstraint,
    Column,
    Domain,
    ForeignKey,
    Index,
    Schema,
    Table,
    indexes_typed_by,
)

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver, WorkTable


class AlterColumnType(OperationSpec):
    op: Literal["alter_column_type"]
    table: Identifier
    column: Identifier
    from_: TypeName = Field(alias="from")
    to: TypeName
    range_check: bool = Field(
        default=False,
        description=(
            "decimal to float only: add CHECK ck_<table>_<column>_range keeping values finite "
            "and inside the range the decimal allowed (SQLite: a table CHECK; PostgreSQL: the "
            "column's type, a domain per bound set, float_within_1e<digits> by the naming "
            "convention range_domain, its CHECK added NOT VALID and proved by the migration)"
        ),
    )
    online: bool = Field(
        default=True,
        description=(
            "PostgreSQL, a conversion that rewrites the table: expand (a shadow table, or "
            "shadow columns, and a trigger), "
            "backfill in keyset batches, contract, without blocking reads and writes (an empty "
            "table takes the blocking ALTER, decided at run time); false: the blocking ALTER "
            "TABLE (a maintenance window)"
        ),
    )

    position: ClassVar[int] = 40
    templates: ClassVar[tuple[str, ...]] = ("ops/alter_column_type.j2",)
    example: ClassVar[str] = (
        "{op: alter_column_type, table: t, column: c, from: integer, to: bigint}"
    )
    doc: ClassVar[tuple[str, str, str]] = (
        "`table`, `column`, `from`, `to`, `range_check` (default false), `online` (default true)",
        "convert (numeric ↔ numeric, string ↔ string); with `range_check` on a decimal → float "
        "conversion, add `CHECK ck_<table>_<column>_range` keeping values finite and inside the "
        "decimal's range (PostgreSQL: the column's type, domain `float_within_1e<digits>`, see "
        "docs/online.md); on PostgreSQL a conversion that rewrites a non-empty table runs online "
        "(a shadow table, or shadow columns where the table cannot be swapped; a trigger, "
        "resumable checked batches, a short contract; see "
        "docs/online.md) unless `online: false`",
        "drop the check (PostgreSQL: the domain, once no column uses it); convert back to "
        "`from` (online alike); a conversion that narrows (see "
        "[Conversions](#conversions)) is refused while a row does not fit (online: per batch, "
        "before the contract)",
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
        elif problem := conversion_problem(old, new):
            problems.append((("to",), problem))
        elif new.kind == "enum":
            r.check_enum(new, ("to",), problems)
            if column.default is not None and column.default not in new.labels:
                problems.append(
                    (("to",), f"the column's default {column.default!r} is not one of its labels")
                )
        if column.primary_key:
            problems.append(
                (
                    ("column",),
                    "cannot change the type of a primary key column (widen_key widens an "
                    "integer key with the columns that reference it)",
                )
            )
        own = table.fks_using(column.name)
        referencing = [
            f
            for t in r.tables()
            for f in t.foreign_keys
            if f.ref_table == table.name and column.name in f.ref_columns
        ]
        if own or referencing:
            problems.append(
                (
                    ("column",),
                    "cannot change the type of a column in a foreign key (widen_key widens an "
                    "integer key with the columns that reference it)",
                )
            )
        partial, keyed = indexes_typed_by(table.indexes, column.name)
        if partial:
            # a comparison in its predicate is rendered (and read back from the catalogue) by
            # the column's type
            problems.append(
                (
                    ("column",),
                    f"the predicate of index {', '.join(partial)} names the column: drop the "
                    "index first, then change the type",
                )
            )
        if keyed:
            # an expression key is rendered (and read back from the catalogue) by the type
            problems.append(
                (
                    ("column",),
                    f"an expression key of index {', '.join(keyed)} uses the column: drop the "
                    "index first, then change the type",
                )
            )
        if column.default is not None and (problem := default_problem(column.default, new)):
            problems.append((("to",), f"the column's default no longer fits: {problem}"))
        # Online for the column's first conversion in the change only (a second one of the
        # same column, or one of a column the change added, is the blocking ALTER: one
        # online unit per column and change keeps a resumed run unambiguous).
        start = r.change_start.table(self.table)
        first = start is not None and (c := start.column(self.column)) is not None and c.type == old
        online = (
            self.online
            and first
            and bool(table.primary_key)
            and risk.type_change(old, new, POSTGRESQL).rewrites
        )
        range_checks: list[CheckConstraint] = []
        domain: Domain | None = None
        if self.range_check:
            if old.kind != "decimal" or new.kind != "float":
                problems.append(
                    (("range_check",), "range_check applies to a decimal to float conversion")
                )
            else:
                assert old.precision is not None and old.scale is not None
                name = r.conventions.range_check_name(self.table, self.column)
                r.free_name(name, ("range_check",), problems)
                digits = old.precision - old.scale
                domain = range_domain(r.conventions.range_domain_name(digits), 10**digits)
                check = CheckConstraint.range(name, self.table, self.column, 10**digits, domain)
                range_checks.append(check)
        # A column leaving its domain (a range check's, state.Domain) loses the check with it
        # (SQLite: the table CHECK; PostgreSQL: the domain, dropped once no column uses it).
        left = tuple(
            c
            for c in table.checks
            if column.domain is not None
            and c.domain == column.domain
            and c.columns == {column.name}
            and domain != column.domain
        )
        # One step: on PostgreSQL the range check is the new column's domain (its type), on
        # SQLite a table CHECK of the rebuild; online, both go on the shadow column.
        indexes = tuple(i for i in table.indexes if column.name in i.all_columns)
        pointing = swapped_keys(r, table.name)
        step = AlterColumnTypeStep(
            self.table,
            column,
            new,
            online and not problems,
            table.primary_key if online else (),
            tuple(range_checks),
            left,
            "upgrade",
            indexes if online else (),
            domain,
            online and sliced_key(table),
            pointing if online else (),
        )
        return [step], problems


def swapped_keys(r: Resolver, table: str) -> tuple[ForeignKey, ...]:
    """The foreign keys a swap of ``table`` for its shadow table adds again NOT VALID in its
    contract and validates after (generator/online_table.py): the table's own, and those of
    other tables pointing at it (a key to itself stops the swap)."""
    return tuple(
        f for t in r.tables() for f in t.foreign_keys if (f.ref_table == table) != (t.name == table)
    )


def range_domain(name: str, bound: int) -> Domain:
    """The domain of a range check (state.Domain), its CHECK named ``<domain>_check``."""
    return Domain(name, f"{name}_check", bound)


def _alter_group(dialect: str) -> Group:
    """PostgreSQL alters the column in the table's ALTER TABLE; SQLite rebuilds the table."""
    return RECREATE_TABLE if dialect == SQLITE else ALTER_TABLE


def _online_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return steps[0].risk(dialect)


# PostgreSQL: the online type changes of one table (generator/online.py runs the phases).
ONLINE_TYPE_CHANGE = Group(
    "online_type_change", "ops/alter_column_type.j2", _online_risk, transactional=False
)


def sliced_key(table: Table | WorkTable) -> bool:
    """Whether an online backfill of the table runs in slices of its key range at once
    (generator/online.py): its primary key is one integer column."""
    if len(table.primary_key) != 1:
        return False
    key = table.column(table.primary_key[0])
    return key is not None and key.type.kind in coltypes.INTEGER_KINDS


def online_locks(sliced: bool | None = None) -> tuple[tuple[str, str], ...]:
    """The phases of an online type change and the lock each takes (plan, review, status):
    ``sliced`` whether the table's backfill runs in slices (None: not known, status)."""
    batches = "keyset batches, each its own transaction"
    if sliced is not False:
        batches += (
            f"; {'on a single integer key, ' if sliced is None else ''}in slices of the key "
            "range at once, each on its own connection (runner setting --backfill-workers)"
        )
    lines = (
        "expand: SHARE ROW EXCLUSIVE by shadow table (brief, readers go on: a new table of the "
        "new types, a trigger copying each write into it; lock_timeout, retried), ACCESS "
        "EXCLUSIVE by shadow columns (brief, catalogue only; a range check's domain loses its "
        "CHECK for the ADD COLUMN and gets it back NOT VALID in the same transaction); the "
        "runner's --online-method (auto: the table unless a view, trigger, policy, "
        "publication ... is in the way)",
        f"backfill: ROW EXCLUSIVE per batch ({batches}; shadow table: FOR KEY SHARE on the "
        "rows copied)",
        "prepare: SHARE UPDATE EXCLUSIVE (indexes CONCURRENTLY, VALIDATE)",
        "contract: ACCESS EXCLUSIVE (brief, catalogue only; lock_timeout, retried; shadow "
        "table: also on the tables whose foreign keys point at it, validated again after)",
    )
    return tuple((phase, lock) for phase, lock in (line.split(": ", 1) for line in lines))


def shadow_name(direction: str, name: str) -> str:
    """A shadow column's (or index's, trigger's) name: ``sg_up__<name>`` / ``sg_down__<name>``
    (hashed when over PostgreSQL's 63 bytes)."""
    full = f"sg_{'up' if direction == 'upgrade' else 'down'}__{name}"
    if len(full.encode()) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full.encode()[:54].decode(errors='ignore')}_{digest}"


@dataclass(frozen=True)
class AlterColumnTypeStep(Step):
    table_name: str
    column: Column  # as it is before the step
    to: SqlType
    # PostgreSQL online path (expand, backfill, prepare, contract); SQLite rebuilds as ever
    online: bool = False
    key: tuple[str, ...] = ()  # the primary key the batches follow (online)
    added: tuple[CheckConstraint, ...] = ()  # range checks added with it (online)
    dropped: tuple[CheckConstraint, ...] = ()  # and dropped before it (its reverse)
    direction: str = "upgrade"
    indexes: tuple[Index, ...] = ()  # the table's indexes naming the column (online)
    domain: Domain | None = None  # PostgreSQL: the new column's domain (its range check)
    sliced: bool = False  # online: the key is one integer column (backfilled in slices)
    # online by shadow table: the keys its contract adds again NOT VALID (swapped_keys)
    pointing: tuple[ForeignKey, ...] = ()
    # online: a key column or one referencing a key (widen_key): by shadow table only (a
    # shadow column would lose the keys), else the blocking ALTER
    keyed: bool = False

    kind: ClassVar[str] = "alter_column_type"
    template: ClassVar[str] = "ops/alter_column_type.j2"

    @functools.cached_property  # once per step: one object, found again by its identity
    def new_column(self) -> Column:
        return replace(self.column, type=self.to, domain=self.domain)

    @property
    def shadow(self) -> str:
        return shadow_name(self.direction, self.column.name)

    def shadow_checks(self) -> tuple[CheckConstraint, ...]:
        """The added checks as they go on the shadow column (same rendering, renamed column)."""
        return tuple(c.renamed(self.column.name, self.shadow) for c in self.added)

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        cols = tuple(self.new_column if c.name == self.column.name else c for c in t.columns)
        gone = {c.name for c in self.dropped}
        kept = tuple(c for c in t.checks if c.name not in gone)
        return schema.put(replace(t, columns=cols, checks=(*kept, *self.added)))

    def apply_in(self, r: Resolver) -> None:
        if self.dropped:  # the checks it drops (a domain's range check) from every index
            r.apply_slow(self)
            return
        r.put_column(self.table_name, self.new_column)
        for check in self.added:
            r.add_check(check)

    def reverse(self) -> AlterColumnTypeStep:
        return AlterColumnTypeStep(
            self.table_name,
            self.new_column,
            self.column.type,
            self.online,
            self.key,
            self.dropped,
            self.added,
            "downgrade" if self.direction == "upgrade" else "upgrade",
            self.indexes,
            self.column.domain,
            self.sliced,
            self.pointing,
            self.keyed,
        )

    def group(self, dialect: str) -> Group:
        if self.online and dialect == POSTGRESQL:
            return ONLINE_TYPE_CHANGE
        return _alter_group(dialect)

    def checked_in_batches(self, dialect: str) -> bool:
        return self.online and dialect == POSTGRESQL

    def interrupted(self, dialect: str) -> Iterator[tuple[str, tuple[str | int | None, ...]]]:
        """An online change killed before its contract: by shadow columns, the shadow column,
        its checks (not yet validated or validated), its NOT NULL helper and its indexes
        (built or not); by shadow table, the new table."""
        if not self.online or dialect != POSTGRESQL:
            return
        t = self.table_name
        # by shadow table (generator/online_table.py): the new table, until its contract;
        # after it, until they are validated again, its own keys and those pointing at it
        yield "tables", (shadow_name(self.direction, t),)
        for fk in self.pointing:
            yield f"{fk.table}.foreign_keys", checks.fk_row(fk, dialect, validated=False)
            yield f"{checks.MAY_BE_MISSING}{fk.table}.foreign_keys", checks.fk_row(fk, dialect)
        if self.keyed:  # never by shadow columns
            return
        shadow = replace(self.new_column, name=self.shadow, nullable=True, default=None)
        yield (
            f"{t}.columns",
            (
                self.shadow,
                dialects.catalog_type(shadow, dialect),
                "YES",
                None,
            ),
        )
        names = [c.name for c in self.added if c.on_table(dialect)]
        if self.domain is not None:
            names.append(self.domain.constraint)
        if not self.column.nullable:
            names.append(notnull_name(self.shadow))
        for name in names:
            for valid in ("NO", "YES"):
                yield f"{t}.check_constraints", (name, valid)
        for index in self.indexes:
            twin = replace(
                index.renamed(self.column.name, self.shadow),
                name=shadow_name(self.direction, index.name),
            )
            for ok in (False, True):
                yield f"{t}.indexes", checks.index_row(twin, dialect, ok)

    def shadow_indexes(self, steps: tuple[Step, ...], table: Table) -> list[tuple[Index, Index]]:
        """(index, its twin on the shadow columns) for each index naming a column converted
        by ``steps`` (the unit's), listed once, at the unit's first step (self)."""
        if steps[0] is not self:
            return []
        shadows = {s.column.name: s.shadow for s in steps if isinstance(s, AlterColumnTypeStep)}
        out = []
        for index in table.indexes:
            named = [c for c in index.all_columns if c in shadows]
            if not named:
                continue
            twin = index
            for c in named:
                twin = twin.renamed(c, shadows[c])
            out.append((index, replace(twin, name=shadow_name(self.direction, index.name))))
        return out

    def misfit_sql(self) -> str | None:
        """The rows of a batch the conversion could not keep (the fit-check's condition)."""
        return dialects.misfit_sql(self.column.type, self.to, self.column.name, POSTGRESQL)

    @property
    def check_kinds(self) -> tuple[str, str]:
        """The kinds of the steps whose template macros render the added and the dropped
        checks (the blocking path's clauses, SQLite's rebuild)."""
        from generator.ops.drop_check import DropCheckStep

        return AddCheckStep.kind, DropCheckStep.kind

    @property
    def fit_name(self) -> str:
        """As checks.Fit names the blocking path's fit-check: fits_<new type>."""
        kind = str(self.to).replace("(", "_").replace(",", "_").replace(")", "")
        return f"fits_{kind}"

    @property
    def tolerance(self) -> str | None:
        """Drift allowed between an old value and its shadow (None: not compared)."""
        if self.column.type.family != "numeric" or self.to.family != "numeric":
            return None
        from generator.checks import tolerance_of

        return tolerance_of((self.column.type, self.to))

    def type_change(self) -> tuple[Column, SqlType]:
        return self.column, self.to

    def renders_domain(self, name: str, created: bool) -> bool:
        """Its template creates the new column's domain before the ALTER TABLE (online: the
        expand) and drops the old column's after it (online: the contract)."""
        gained, lost = self.domain, self.column.domain
        if created:
            return gained is not None and gained.name == name and gained != lost
        return lost is not None and lost.name == name and lost != gained

    @property
    def domain_only(self) -> bool:
        """The type stays; only its range check's domain goes or comes (drop_check's)."""
        return self.column.type == self.to and self.column.domain != self.domain

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        """A column going (back) to a range check's domain from a type whose values may be
        out of its range (a float, a wider decimal: the downgrade of a conversion away from
        it, of drop_check): the rows out of the range, before any DDL. From a decimal that
        holds only values inside the range (0003's decimal(12,4)), none: no scan."""
        table = before.table(self.table_name)
        if self.domain is None or self.domain == self.column.domain or table is None:
            return
        old = self.column.type
        if (
            old.kind == "decimal"
            and old.precision is not None
            and old.scale is not None
            and 10 ** (old.precision - old.scale) <= self.domain.bound
        ):
            return
        for check in self.added:
            if table.column(self.column.name) is not None:
                yield failing_rows(check, table)

    def risk(self, dialect: str) -> Risk:
        if self.domain_only and dialect == POSTGRESQL:
            if self.domain is None:
                return Risk(
                    "ACCESS EXCLUSIVE (brief)",
                    False,
                    "catalogue only: a domain to its base type is binary coercible, no row read",
                    blocks="reads and writes",
                )
            return Risk(
                "ACCESS EXCLUSIVE",
                True,
                "PostgreSQL rewrites the table to convert a column to a domain with a CHECK, "
                "every row checked; reads and writes wait",
                scans=True,
                blocks="reads and writes",
            )
        if self.online and dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief, catalogue only: expand and contract)",
                False,
                "online: "
                + "; ".join(f"{phase}: {lock}" for phase, lock in online_locks(self.sliced))
                + "; no row is read under the ACCESS EXCLUSIVE locks",
                scans=True,
                blocks="reads and writes, for the catalogue changes only",
            )
        decided = risk.type_change(self.column.type, self.to, dialect)
        return Risk(
            decided.lock,
            decided.rewrites,
            decided.why,
            scans=decided.rewrites,
            blocks="reads and writes" if dialect == POSTGRESQL else "writes",
        )

    def findings(self, change: Change) -> Iterator[Finding]:
        old, new = self.column.type, self.to
        where = f"{self.table_name}.{self.column.name}"
        if self.domain_only and self.domain is None:  # drop_check of a range check
            for check in self.dropped:
                yield Finding("SG120", f"drops check {check.name} on {self.table_name}")
            return
        if self.risk(POSTGRESQL).rewrites:  # online: no rewrite under ACCESS EXCLUSIVE
            yield Finding("SG102", f"{where}: {old} -> {new} rewrites {self.table_name}")
        if coltypes.narrows(old, new):
            # the same test that gives the conversion its fit-check
            note = coltypes.narrowing_note(old, new)
            yield Finding("SG103", f"{where}: {old} -> {new} {note}")
        range_check = change.conventions.range_check_name(self.table_name, self.column.name)
        final = change.after.table(self.table_name)
        checked = final is not None and any(c.name == range_check for c in final.checks)
        if old.kind == "decimal" and new.kind == "float" and not checked:
            yield Finding("SG104", f"{where}: {old} -> float without range_check")

    def describe(self) -> str:
        if self.domain_only:
            where = f"`{self.table_name}.{self.column.name}`"
            if self.domain is None:
                assert self.column.domain is not None
                checks = ", ".join(f"`{c.name}`" for c in self.dropped)
                return (
                    f"drop check {checks} on `{self.table_name}` (PostgreSQL: {where} from "
                    f"domain `{self.column.domain.name}` to {self.column.domain.base})"
                )
            checks = ", ".join(f"`{c.name}`" for c in self.added)
            return (
                f"add check {checks} on `{self.table_name}` (PostgreSQL: {where} converted "
                f"to domain `{self.domain.name}`)"
            )
        text = f"`{self.table_name}.{self.column.name}`: {self.column.type} → {self.to}"
        if self.added:
            text += "; " + ", ".join(f"add check `{c.name}`" for c in self.added)
        if self.domain is not None:
            text += (
                f" (PostgreSQL: the column's type, domain `{self.domain.name}`, its CHECK "
                f"`{self.domain.constraint}` NOT VALID, the rows proved by the conversion)"
            )
        if self.dropped:
            text += "; " + ", ".join(f"drop check `{c.name}`" for c in self.dropped)
        return text + (" (online)" if self.online else "")


def notnull_name(shadow: str) -> str:
    """The CHECK (shadow IS NOT NULL) that lets the contract SET NOT NULL without a scan."""
    return f"{shadow}_nn" if len(shadow) <= 60 else shadow_name("upgrade", f"nn_{shadow}")
