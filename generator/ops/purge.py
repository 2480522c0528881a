"""``purge``: destroy for good the archives an earlier change kept: the columns its
``drop_column`` set aside and the tables its ``drop_table`` renamed aside (names starting
``_dropped_<its number>_``). PostgreSQL drops them in the catalogue (``DROP COLUMN``, ``DROP
TABLE``: brief ACCESS EXCLUSIVE, the space is reclaimed later by VACUUM); SQLite rebuilds a
table to drop a column of it.

No derived downgrade: the data is gone. The downgrade of a change that purges refuses before
any of its steps runs (``runtime.irreversible``: the runner's "rolled back, nothing kept"
failure, exit code 4, naming the change and what it destroyed). Lint SG112 is an error until
acknowledged.

A column set aside by the change that now lives in a table a later change archived is
refused here: purging that later change destroys it with its table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from generator.dialects import POSTGRESQL, SQLITE
from generator.ops.base import Finding, OperationSpec, Problem, Risk, Step, catalogue_only_risk
from generator.ops.drop_column import archive_prefix, without_column
from generator.plan import RECREATE_TABLE, Group
from generator.spec import Identifier
from generator.state import Column, Schema, Table

if TYPE_CHECKING:
    from generator.load import Change
    from generator.resolve import Resolver


class Purge(OperationSpec):
    op: Literal["purge"]
    change: Identifier

    position: ClassVar[int] = 110
    templates: ClassVar[tuple[str, ...]] = (
        "ops/purge_column.j2",
        "ops/purge_table.j2",
        "ops/irreversible.j2",
    )
    example: ClassVar[str] = "{op: purge, change: the_id_of_an_earlier_change}"
    doc: ClassVar[tuple[str, str, str]] = (
        "`change` (the id of an earlier change with archives)",
        "destroy that change's archives (columns set aside by `drop_column`, tables by "
        "`drop_table`) for good; lint SG112",
        "none: a downgrade past it fails, naming the change, before any step runs",
    )

    def resolve(self, r: Resolver) -> tuple[list[Step], list[Problem]]:
        problems: list[Problem] = []
        number = r.change_numbers.get(self.change)
        if number is None:
            known = ", ".join(r.change_numbers) or "none"
            problems.append(
                (("change",), f"no earlier change has id {self.change!r} (ids: {known})")
            )
            return [], problems
        prefix = archive_prefix(number)
        schema = r.schema
        steps: list[Step] = []
        by = f"{r.change_number:04d}_{r.change_id}"
        for t in schema.archives:
            for _, c in t.aside:
                if c.name.startswith(prefix) and not t.name.startswith(prefix):
                    problems.append(
                        (
                            ("change",),
                            f"column {c.name} of change {self.change} is in {t.name}, "
                            "archived by a later change: purge that change (it destroys the "
                            "column with its table)",
                        )
                    )
        for t in schema.tables:
            steps += [
                PurgeColumnStep(t.name, c, self.change, by, p)
                for p, c in t.aside
                if c.name.startswith(prefix)
            ]
        steps += [
            PurgeTableStep(t, self.change, by) for t in schema.archives if t.name.startswith(prefix)
        ]
        if not steps and not problems:
            problems.append((("change",), f"change {self.change!r} has no archives left"))
        return steps, problems


@dataclass(frozen=True)
class PurgeColumnStep(Step):
    table_name: str
    column: Column  # the column set aside, under its archive name
    change: str  # the id of the change that set it aside
    by: str  # the change that purges it (its name)
    position: int  # its place in the table's physical column order

    kind: ClassVar[str] = "purge_column"
    template: ClassVar[str] = "ops/purge_column.j2"

    def apply(self, schema: Schema) -> Schema:
        return schema.put(without_column(schema.get(self.table_name), self.column.name))

    def reverse(self) -> Step:
        return IrreversibleStep(
            self.table_name,
            self.by,
            f"it destroyed column {self.table_name}.{self.column.name}, kept by change "
            f"{self.change}",
            self,
        )

    def group(self, dialect: str) -> Group | None:
        return RECREATE_TABLE if dialect == SQLITE else None

    def risk(self, dialect: str) -> Risk:
        return catalogue_only_risk(
            dialect,
            "catalogue-only DROP COLUMN (space reclaimed later)",
            "SQLite drops a column by rebuilding the table",
        )

    def findings(self, change: Change) -> Iterator[Finding]:
        yield Finding(
            "SG112",
            f"destroys {self.table_name}.{self.column.name}, the values change {self.change} "
            "kept: no downgrade can pass this change",
        )

    def describe(self) -> str:
        return (
            f"purge column `{self.table_name}.{self.column.name}` (kept by change "
            f"{self.change}): **its values are destroyed**"
        )


@dataclass(frozen=True)
class PurgeTableStep(Step):
    table: Table  # the archive
    change: str
    by: str

    kind: ClassVar[str] = "purge_table"
    template: ClassVar[str] = "ops/purge_table.j2"

    @property
    def table_name(self) -> str:
        return self.table.name

    def apply(self, schema: Schema) -> Schema:
        return Schema(schema.tables, tuple(t for t in schema.archives if t.name != self.table.name))

    def reverse(self) -> Step:
        return IrreversibleStep(
            self.table.name,
            self.by,
            f"it destroyed table {self.table.name}, kept by change {self.change}",
            self,
        )

    def risk(self, dialect: str) -> Risk:
        if dialect == POSTGRESQL:
            return Risk(
                "ACCESS EXCLUSIVE (brief)",
                False,
                "DROP TABLE of the archive (nobody uses it); tables it references are locked "
                "briefly to drop its foreign keys",
                blocks="writes to the tables it references, briefly",
            )
        return Risk("database write lock", False, "DROP TABLE of the archive", blocks="writes")

    def findings(self, change: Change) -> Iterator[Finding]:
        yield Finding(
            "SG112",
            f"destroys table {self.table.name}, the rows change {self.change} kept: no "
            "downgrade can pass this change",
        )

    def describe(self) -> str:
        return (
            f"purge table `{self.table.name}` (kept by change {self.change}): "
            "**its rows are destroyed**"
        )


@dataclass(frozen=True)
class IrreversibleStep(Step):
    """The derived downgrade of a step that cannot be undone: refuses before anything runs.
    Its state transform is the undone step's inverse (the state before it), so the plan and
    the checks of the downgrade stay well-defined; the database is never asked to do it."""

    table_name: str
    change: str  # the name of the change that cannot be undone
    why: str
    undoes: Step  # the step it stands for

    kind: ClassVar[str] = "refusal"
    refuses: ClassVar[bool] = True
    template: ClassVar[str] = "ops/irreversible.j2"

    def apply(self, schema: Schema) -> Schema:
        undone = self.undoes
        if isinstance(undone, PurgeColumnStep):
            t = schema.get(undone.table_name)
            p = undone.position
            aside = tuple((q + 1 if q >= p else q, c) for q, c in t.aside)
            return schema.put(replace(t, aside=(*aside, (p, undone.column))))
        if isinstance(undone, PurgeTableStep):
            return Schema(schema.tables, (*schema.archives, undone.table))
        return schema

    def reverse(self) -> Step:
        return self.undoes

    def risk(self, dialect: str) -> Risk:
        return Risk("none", False, "refuses: the change cannot be undone", blocks="nothing")

    @property
    def message(self) -> str:
        return (
            f"change {self.change} cannot be downgraded: {self.why}. Nothing was changed; "
            "the database stays at this change"
        )

    def describe(self) -> str:
        return f"cannot be undone: {self.why}"
