"""PostgreSQL's named enum types, as steps of their own: a change creates each type its target
schema's columns use and its starting schema's do not, before its DDL, and drops each type no
column uses any more, after it (``generator.plan`` adds their units). Each is a plan unit with
its Risk like every other step, so the plan prints its lock line through ``runtime.unit`` and
the review lists it. SQLite has no named types: an enum is a CHECK on its column.

No operation of the spec makes these steps (the registry in generator/ops/ does not list them):
they follow from the columns' types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from generator.ops.base import Step, TypeStep
from generator.state import Schema


@dataclass(frozen=True)
class CreateEnumType(TypeStep):
    kind: ClassVar[str] = "create_enum_type"
    template: ClassVar[str] = "ops/create_enum_type.j2"
    why: ClassVar[str] = "a new enum type: a catalogue entry, no table locked"

    name: str
    labels: tuple[str, ...]

    def reverse(self) -> Step:
        return DropEnumType(self.name)

    def describe(self) -> str:
        return f"create enum type {self.name} ({', '.join(self.labels)})"


@dataclass(frozen=True)
class DropEnumType(TypeStep):
    kind: ClassVar[str] = "drop_enum_type"
    template: ClassVar[str] = "ops/drop_enum_type.j2"
    why: ClassVar[str] = (
        "no column uses the enum type any more: a catalogue entry dropped, no table locked"
    )

    name: str

    def reverse(self) -> Step:
        raise NotImplementedError("a change's inverse creates its types from its columns")

    def describe(self) -> str:
        return f"drop enum type {self.name}"


STEPS: tuple[type[Step], ...] = (CreateEnumType, DropEnumType)


def created(start: Schema, target: Schema) -> list[CreateEnumType]:
    """The types ``target``'s columns use and ``start``'s do not, by name."""
    had = start.enum_types()
    return [CreateEnumType(n, labels) for n, labels in target.enum_types().items() if n not in had]


def dropped(start: Schema, target: Schema) -> list[DropEnumType]:
    """The types ``start``'s columns use and ``target``'s do not, by name."""
    has = target.enum_types()
    return [DropEnumType(n) for n in start.enum_types() if n not in has]
