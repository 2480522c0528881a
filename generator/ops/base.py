"""What every operation module provides: the spec base, the step base, and the typed facts a
step states about itself (its risk per dialect, its lint findings).

An operation is one module under ``generator/ops/``: its spec model (the YAML shape, with a
``Literal`` tag), its resolution against the schema, its steps with ``apply`` and ``reverse``,
their risk per dialect, their lint findings, their review line and the template(s) that render
them. The registry (``generator/ops/__init__.py``) finds the modules; nothing else names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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
    from generator.state import Column, Schema

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
        unit that commits on its own (an INVALID index, a key not yet validated)."""
        return iter(())

    def prechecks(self, before: Schema) -> Iterator[RowCheck]:
        """The offending-row queries to run before any DDL of the change (``before`` is the
        schema the change starts from: a step on what the change creates has none)."""
        return iter(())

    def describe(self) -> str:
        """The review's line for this step."""
        raise NotImplementedError
