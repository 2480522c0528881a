"""Turn a change's steps into the units a dialect runs, tracking the table as it goes.

On SQLite, consecutive steps that must rebuild the same table share one batch-mode
recreation; each recreation carries the table as it is before it, so the migration never
reflects the live database to learn what it should copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator import dialects
from generator.state import AddColumnStep, Schema, Step, Table


@dataclass(frozen=True)
class Unit:
    kind: str  # a step kind, or "recreate_table" for a SQLite batch group
    steps: tuple[Step, ...]
    table_before: Table | None  # the table before the unit (None when it does not exist)


def _recreates(step: Step, dialect: str) -> bool:
    column = step.column if isinstance(step, AddColumnStep) else None
    return dialects.needs_recreate(step.kind, dialect, column)


def plan(steps: tuple[Step, ...], before: Schema, dialect: str) -> list[Unit]:
    units: list[Unit] = []
    schema = before
    for step in steps:
        table = schema.table(step.table_name)
        if _recreates(step, dialect):
            last = units[-1] if units else None
            if (
                last is not None
                and last.kind == "recreate_table"
                and (last.steps[0].table_name == step.table_name)
            ):
                units[-1] = Unit(last.kind, (*last.steps, step), last.table_before)
            else:
                units.append(Unit("recreate_table", (step,), table))
        else:
            units.append(Unit(step.kind, (step,), table))
        schema = step.apply(schema)
    return units
