"""Turn a change's steps into the units a dialect runs, tracking the table as it goes.

On SQLite, consecutive steps that must rebuild the same table share one batch-mode
recreation; each recreation carries the table as it is before it, so the migration never
reflects the live database to learn what it should copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator import dialects
from generator.state import (
    AddColumnStep,
    AlterColumnTypeStep,
    CreateIndexStep,
    DropIndexStep,
    Schema,
    Step,
    Table,
)


@dataclass(frozen=True)
class Unit:
    kind: str  # a step kind, or "recreate_table" for a SQLite batch group
    steps: tuple[Step, ...]
    table_before: Table | None  # the table before the unit (None when it does not exist)


def _recreates(step: Step, dialect: str) -> bool:
    column = step.column if isinstance(step, AddColumnStep) else None
    return dialects.needs_recreate(step.kind, dialect, column)


def _group_kind(step: Step, dialect: str) -> str | None:
    """Steps of this kind on one table are merged with their neighbours into one unit:
    one batch recreation on SQLite, one ALTER TABLE (one table rewrite) on PostgreSQL."""
    if _recreates(step, dialect):
        return "recreate_table"
    if step.kind in ("alter_column_type", "add_check", "drop_check"):
        return "alter_table"
    if (
        dialect == dialects.POSTGRESQL
        and isinstance(step, CreateIndexStep | DropIndexStep)
        and step.concurrently
    ):
        return "concurrent_indexes"
    if dialect == dialects.POSTGRESQL and step.kind == "swap_fk_action":
        return "swap_fk_actions"
    return None


# Groups that may span tables, and the units that commit part of a change on their own.
_ANY_TABLE = {"concurrent_indexes", "swap_fk_actions"}
NON_TRANSACTIONAL = _ANY_TABLE


def _alters_again(unit: Unit, step: Step) -> bool:
    """PostgreSQL cannot change one column's type twice in one ALTER TABLE."""
    return isinstance(step, AlterColumnTypeStep) and any(
        isinstance(s, AlterColumnTypeStep) and s.column.name == step.column.name for s in unit.steps
    )


def plan(steps: tuple[Step, ...], before: Schema, dialect: str) -> list[Unit]:
    units: list[Unit] = []
    schema = before
    for step in steps:
        table = schema.table(step.table_name)
        group = _group_kind(step, dialect)
        last = units[-1] if units else None
        if (
            group is not None
            and last is not None
            and last.kind == group
            and (group in _ANY_TABLE or last.steps[0].table_name == step.table_name)
            and not (group == "alter_table" and _alters_again(last, step))
        ):
            units[-1] = Unit(group, (*last.steps, step), last.table_before)
        else:
            units.append(Unit(group or step.kind, (step,), table))
        schema = step.apply(schema)
    return units
