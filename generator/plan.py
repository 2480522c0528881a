"""Turn a change's steps into the units a dialect runs, tracking the table as it goes.

On SQLite, consecutive steps that must rebuild the same table share one batch-mode
recreation; each recreation carries the table as it is before it, so the migration never
reflects the live database to learn what it should copy. Which group a step joins is the
step's own answer (``Step.group``); this module only orders and merges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from generator import domains, enum_types
from generator.ops.base import Risk, Step
from generator.state import Schema, Table

POSTGRESQL = "postgresql"
SQLITE = "sqlite"


@dataclass(frozen=True)
class Group:
    """Steps that run together as one unit: one batch rebuild, one ALTER TABLE, one block
    outside the transaction."""

    kind: str
    template: str
    risk_of: Callable[[tuple[Step, ...], str], Risk]
    any_table: bool = False  # may merge steps of different tables
    transactional: bool = True  # False: commits part of the change on its own
    commits_each_step: bool = False  # each statement commits by itself (CONCURRENTLY)
    # PostgreSQL cannot change one column's type twice in one ALTER TABLE.
    one_type_change_per_column: bool = False


@dataclass(frozen=True)
class Unit:
    kind: str  # the group's kind, or the step's kind when it runs alone
    steps: tuple[Step, ...]
    table_before: Table | None  # the table before the unit (None when it does not exist)
    group: Group | None = None

    @property
    def transactional(self) -> bool:
        return self.group is None or self.group.transactional

    def risk(self, dialect: str) -> Risk:
        """The unit's risk: its step's own, or its group's, derived from its steps' risks."""
        if self.group is None:
            return self.steps[0].risk(dialect)
        return self.group.risk_of(self.steps, dialect)


def _recreate_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return Risk(
        "database write lock",
        True,
        "batch mode: copies every row into a new table; foreign-key enforcement off, "
        "checked with PRAGMA foreign_key_check",
        scans=True,
        blocks="writes",
    )


def _alter_table_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    risks = [s.risk(dialect) for s in steps]
    if any(r.rewrites for r in risks):
        return Risk(
            "ACCESS EXCLUSIVE",
            True,
            "rewrites the table and its indexes in one pass; reads and writes wait",
            scans=True,
            blocks="reads and writes",
        )
    scans = any(r.scans for r in risks)
    return Risk(
        "ACCESS EXCLUSIVE (brief)",
        False,
        "catalogue-only type change; reads and writes wait for the lock only"
        + ("; the new CHECK scans the table under it" if scans else ""),
        scans=scans,
        blocks="reads and writes",
    )


def _concurrent_risk(steps: tuple[Step, ...], dialect: str) -> Risk:
    return Risk(
        "SHARE UPDATE EXCLUSIVE",
        False,
        "CONCURRENTLY: reads and writes go on; builds scan the table twice",
        scans=True,
        blocks="nothing",
    )


# SQLite cannot alter a column or a constraint: Alembic's batch mode rebuilds the table.
RECREATE_TABLE = Group("recreate_table", "ops/recreate_table.j2", _recreate_risk)
# PostgreSQL: a run of column changes on one table in one ALTER TABLE (one rewrite at most).
ALTER_TABLE = Group(
    "alter_table", "ops/alter_table.j2", _alter_table_risk, one_type_change_per_column=True
)
# PostgreSQL: CREATE / DROP INDEX CONCURRENTLY, outside the transaction.
CONCURRENT_INDEXES = Group(
    "concurrent_indexes",
    "ops/concurrent_indexes.j2",
    _concurrent_risk,
    any_table=True,
    transactional=False,
    commits_each_step=True,
)
GROUPS = (RECREATE_TABLE, ALTER_TABLE, CONCURRENT_INDEXES)


def _alters_again(unit: Unit, step: Step) -> bool:
    change = step.type_change()
    if change is None:
        return False
    return any((c := s.type_change()) and c[0].name == change[0].name for s in unit.steps)


# (id(step), id(schema)) -> (step, schema: kept alive so that their ids are not reused; the
# schema after the step)
_APPLIED: dict[tuple[int, int], tuple[Step, Schema, Schema]] = {}


def applied(step: Step, schema: Schema) -> Schema:
    """``step.apply(schema)``, once per pair of objects. A change's steps are applied to the
    same states by its plan on each dialect and by its resume tolerances (resume._half_done):
    they share the states, and the very same table objects in them, which the caches of
    rendering (the table blocks, SQLite's ``copy_from`` source, the catalogue rows) find by
    identity instead of hashing or printing the table again. A long-lived process keeps it
    bounded (cleared at 16,384 entries)."""
    key = (id(step), id(schema))
    seen = _APPLIED.get(key)
    if seen is None or seen[0] is not step or seen[1] is not schema:
        if len(_APPLIED) >= 16384:
            _APPLIED.clear()
        seen = _APPLIED[key] = (step, schema, step.apply(schema))
    return seen[2]


def plan(steps: tuple[Step, ...], before: Schema, dialect: str) -> list[Unit]:
    units: list[Unit] = []
    schema = before
    states = [before]  # the schema before each step and after the last
    for step in steps:
        if not step.runs_on(dialect):
            schema = applied(step, schema)
            states.append(schema)
            continue
        table = schema.table(step.table_name)
        group = step.group(dialect)
        last = units[-1] if units else None
        if (
            group is not None
            and last is not None
            and last.group == group
            and (group.any_table or last.steps[0].table_name == step.table_name)
            and not (group.one_type_change_per_column and _alters_again(last, step))
        ):
            units[-1] = Unit(group.kind, (*last.steps, step), last.table_before, group)
        else:
            kind = group.kind if group else step.kind
            units.append(Unit(kind, (step,), table, group))
        schema = applied(step, schema)
        states.append(schema)
    if dialect == POSTGRESQL:  # its named enum types and domains: before the DDL, dropped after
        new_domains, old_domains = domains.changed(steps, states)
        created = [*enum_types.created(before, schema), *new_domains]
        dropped = [*enum_types.dropped(before, schema), *old_domains]
        units = [
            *(Unit(s.kind, (s,), None) for s in created),
            *units,
            *(Unit(s.kind, (s,), None) for s in dropped),
        ]
    return units
