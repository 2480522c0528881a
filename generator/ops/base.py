"""What every operation module provides: the spec base, the step base, and the typed facts a
step states about itself (its risk per dialect, its lint findings).

An operation is one module under ``generator/ops/``: its spec model (the YAML shape, with a
``Literal`` tag), its resolution against the schema, its steps with ``apply`` and ``reverse``,
their risk per dialect, their lint findings, their review line and the template(s) that render
them. The registry (``generator/ops/__init__.py``) finds the modules; nothing else names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from generator.coltypes import SqlType
from generator.errors import Path
from generator.spec import Acknowledgements, Spec

if TYPE_CHECKING:
    from generator.checks import Fit
    from generator.load import Change
    from generator.plan import Group
    from generator.resolve import Resolver
    from generator.state import Column, Index, Schema

Problem = tuple[Path, str]


@dataclass(frozen=True)
class Risk:
    """What a step (or a plan unit) does to a live database on one dialect, decided once.

    plan, lint (SG102), the review and ``schemagen status`` all read this object.
    """

    lock: str  # the strongest lock it takes, as PostgreSQL's "Explicit Locking" names it
    rewrites: bool  # every row rewritten (PostgreSQL) or copied into a new table (SQLite)
    why: str  # the review's note
    scans: bool = False  # reads every row (a CHECK validated, an index built)
    blocks: str = ""  # what waits while it runs: "reads and writes", "writes", "nothing"


def catalogue_only(why: str, blocks: str = "reads and writes, briefly") -> Risk:
    """PostgreSQL: a catalogue change under a brief ACCESS EXCLUSIVE lock (no row read)."""
    return Risk("ACCESS EXCLUSIVE (brief)", False, why, blocks=blocks)


def sqlite_rebuild(why: str) -> Risk:
    """SQLite: batch mode copies every row into a new table under the database write lock."""
    return Risk("database write lock", True, why, scans=True, blocks="writes")


def catalogue_only_risk(
    dialect: str, why: str, sqlite_why: str, blocks: str = "reads and writes, briefly"
) -> Risk:
    """Catalogue-only on PostgreSQL (``why``), a table rebuild on SQLite (``sqlite_why``)."""
    if dialect == "postgresql":
        return catalogue_only(why, blocks)
    return sqlite_rebuild(sqlite_why)


@dataclass(frozen=True)
class Finding:
    """A lint finding of one step: a rule of ``generator.lint.RULES`` and what tripped it."""

    rule: str
    message: str


@dataclass(frozen=True)
class RowCheck:
    """A query for the rows that would make a step fail (a NULL under a new NOT NULL, a row
    failing a new CHECK, a duplicate under a new unique key, an orphan under a new foreign
    key), per dialect. The migration runs it before any DDL (a ``fit-check`` section of the
    validation file) and refuses to start while it returns rows, listing them."""

    name: str
    postgresql: str
    sqlite: str

    def sql(self, dialect: str) -> str:
        return self.postgresql if dialect == "postgresql" else self.sqlite


class OperationSpec(Spec):
    """The base of every operation's spec model (``op: <tag>``, ``extra="forbid"``)."""

    acknowledge: Acknowledgements = Field(
        default={}, description="lint findings of this operation accepted, with the reason"
    )

    # Where the operation comes in the op list (error messages, JSON Schema, docs, `new`).
    position: ClassVar[int]
    # The templates the module's steps render with (the file test checks they are its own).
    templates: ClassVar[tuple[str, ...]]
    # One scaffold example for `schemagen new` (YAML, without the leading "- ").
    example: ClassVar[str]
    # The row of docs/authoring.md's operations table: fields, upgrade, derived downgrade.
    doc: ClassVar[tuple[str, str, str]]

    @classmethod
    def tag(cls) -> str:
        """The ``op:`` value (the ``Literal`` of the ``op`` field)."""
        annotation: Any = cls.model_fields["op"].annotation
        (value,) = annotation.__args__
        return str(value)

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        """The steps of this operation against the schema ``r`` holds, or the problems, each
        with its path inside the operation (the loader prefixes ``operations[i]``)."""
        raise NotImplementedError


class Step:
    """One typed change of the schema. Subclasses are frozen dataclasses."""

    kind: ClassVar[str]  # the name of a plan unit of this step alone
    template: ClassVar[str]  # the template of that unit (macros per dialect, batch(), ...)
    # A derived downgrade that cannot be done (purge, irreversible sql): it refuses, and a
    # change's downgrade with such a step is only its refusals (Change.inverse_steps).
    refuses: ClassVar[bool] = False

    if TYPE_CHECKING:  # a field of some steps, a property of others

        @property
        def table_name(self) -> str: ...

    def apply(self, schema: Schema) -> Schema:
        raise NotImplementedError

    def apply_in(self, r: Resolver) -> None:
        """``apply`` on the resolver's working tables; by default through the immutable
        model (a step may override it with an in-place update that costs O(1))."""
        r.apply_slow(self)

    def reverse(self) -> Step:
        raise NotImplementedError

    def risk(self, dialect: str) -> Risk:
        raise NotImplementedError

    def group(self, dialect: str) -> Group | None:
        """The plan group this step joins with its neighbours on ``dialect`` (None: a unit
        of its own)."""
        return None

    def renders_domain(self, name: str, created: bool) -> bool:
        """PostgreSQL: whether the step's own DDL creates (``created``) or drops the domain
        ``name`` (state.Domain); generator.domains renders the others."""
        return False

    def runs_on(self, dialect: str) -> bool:
        """Whether the step has DDL on ``dialect`` (False: a state change only, no plan unit;
        a range check held by its column's domain on PostgreSQL, state.Domain)."""
        return True

    def findings(self, change: Change) -> Iterator[Finding]:
        return iter(())

    def drops(self) -> str | None:
        """What data this step destroys ("table t", "column t.c"), for lint SG107."""
        return None

    def type_change(self) -> tuple[Column, SqlType] | None:
        """(the column before, its new type) when the step converts a column's values."""
        return None

    def fits(self) -> Iterator[Fit]:
        """Rows that would make this step fail, listed before any DDL (fit-checks)."""
        return iter(())

    def checked_in_batches(self, dialect: str) -> bool:
        """True when the step converts values online, checking fit and drift per batch
        (generator/online.py): no snapshot, drift or fit check of the whole table for it."""
        return False

    def interrupted(self, dialect: str) -> Iterator[tuple[str, tuple[str | int | None, ...]]]:
        """Catalogue rows (check name, row) this step can leave when killed part-way in a
        unit that commits on its own (an INVALID index, a key not yet validated); a check name
        prefixed ``checks.MAY_BE_MISSING``: a row of the starting state that may be gone."""
        return iter(())

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        """The offending-row queries to run before any DDL of the change (``before`` is the
        schema the change starts from: a step on what the change creates has none)."""
        return iter(())

    def describe(self) -> str:
        """The review's line for this step."""
        raise NotImplementedError


class TypeStep(Step):
    """A step on a named type of PostgreSQL's catalogue (an enum type, a range check's
    domain): no table, no state change (the schema's types follow from its columns), no lock
    on any table; ``why`` is its risk's reason."""

    why: ClassVar[str]

    @property
    def table_name(self) -> str:
        return ""  # a type, no table

    def apply(self, schema: Schema) -> Schema:
        return schema

    def risk(self, dialect: str) -> Risk:
        return Risk("none on tables", False, self.why, blocks="nothing")


class ConstraintDropStep(Step):
    """A step that drops a constraint of one table (a unique key, a foreign key): a catalogue
    change on PostgreSQL, a rebuild in SQLite's batch mode, and lint SG120 (its derived
    downgrade adds it back and is refused while rows break it)."""

    what: ClassVar[str]  # "unique", "foreign key": the constraint's kind, for SG120
    why_postgresql: ClassVar[str]
    why_sqlite: ClassVar[str]

    @property
    def constraint(self) -> Any:
        """The dropped constraint (it has ``name`` and ``table``)."""
        raise NotImplementedError

    @property
    def table_name(self) -> str:
        return str(self.constraint.table)

    def group(self, dialect: str) -> Group | None:
        from generator.plan import RECREATE_TABLE

        return RECREATE_TABLE if dialect == "sqlite" else None

    def risk(self, dialect: str) -> Risk:
        return catalogue_only_risk(dialect, self.why_postgresql, self.why_sqlite)

    def findings(self, change: Change) -> Iterator[Finding]:
        c = self.constraint
        yield Finding("SG120", f"drops {self.what} {c.name} on {c.table}")


class IndexStep(Step):
    """A step that builds or drops one index: on PostgreSQL CONCURRENTLY by default (a block
    outside the transaction, shared with its neighbours), lint SG101 without it."""

    index: Index
    concurrently: bool

    @property
    def table_name(self) -> str:
        return self.index.table

    def group(self, dialect: str) -> Group | None:
        from generator.plan import CONCURRENT_INDEXES

        return CONCURRENT_INDEXES if dialect == "postgresql" and self.concurrently else None

    def findings(self, change: Change) -> Iterator[Finding]:
        if not self.concurrently:
            i = self.index
            yield Finding("SG101", f"index {i.name} on {i.table} runs without CONCURRENTLY")


class ColumnChangeStep(Step):
    """A step that changes one column of one table in place (its default, its type, its
    nullability): the subclass says what the column becomes (``new_column``)."""

    table_name: str
    column: Column  # as it is before the step

    @property
    def new_column(self) -> Column:
        raise NotImplementedError

    def apply(self, schema: Schema) -> Schema:
        t = schema.get(self.table_name)
        cols = tuple(self.new_column if c.name == self.column.name else c for c in t.columns)
        return schema.put(replace(t, columns=cols))

    def apply_in(self, r: Resolver) -> None:
        r.put_column(self.table_name, self.new_column)
