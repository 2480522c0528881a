"""PostgreSQL's range-check domains (state.Domain) as steps of their own, where no type change
of the change renders them: a change creates each domain its target schema's columns use and
its starting schema's do not, before its DDL, and drops each domain no column uses any more,
after it (``generator.plan`` adds their units), as it does for enum types
(generator/enum_types.py). So a domain goes with the last column of its type however that
column goes (``drop_table``, ``drop_column`` with ``keep_data: false``, ``purge`` of an archive,
``drop_check``), and a derived downgrade that brings such a column back creates it first.

A domain that the change's ``alter_column_type`` step creates or drops (the step where it first
appears, or last disappears, converts a column to it or from it) is left to that step: its
template creates the domain just before its ALTER TABLE (the online path: without its CHECK for
the ADD COLUMN, docs/online.md) and drops it just after.

No operation of the spec makes these steps (the registry in generator/ops/ does not list them):
they follow from the columns' types. SQLite has no domains: a range check is a table CHECK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from generator.ops.base import Step, TypeStep
from generator.state import Domain, Schema


@dataclass(frozen=True)
class CreateDomain(TypeStep):
    kind: ClassVar[str] = "create_domain"
    template: ClassVar[str] = "ops/create_domain.j2"
    why: ClassVar[str] = "a new domain with its CHECK NOT VALID: catalogue entries, no table locked"

    domain: Domain

    def reverse(self) -> Step:
        return DropDomain(self.domain)

    def describe(self) -> str:
        return f"create domain {self.domain.name} ({Domain.base}, {self.domain.check_sql})"


@dataclass(frozen=True)
class DropDomain(TypeStep):
    kind: ClassVar[str] = "drop_domain"
    template: ClassVar[str] = "ops/drop_domain.j2"
    why: ClassVar[str] = (
        "no column uses the domain any more: a catalogue entry dropped, no table locked"
    )

    domain: Domain

    def reverse(self) -> Step:
        return CreateDomain(self.domain)

    def describe(self) -> str:
        return f"drop domain {self.domain.name}"


STEPS: tuple[type[Step], ...] = (CreateDomain, DropDomain)


def changed(
    steps: tuple[Step, ...], states: list[Schema]
) -> tuple[list[CreateDomain], list[DropDomain]]:
    """The domains the change's end state uses and its start does not (created), and those
    its start uses and its end state does not (dropped), but for the ones the step where they
    first appear (or last disappear) renders itself (a type change). ``states``: the schema
    before each step and after the last."""
    had, has = states[0].domains(), states[-1].domains()
    created, dropped = [], []
    for name, domain in has.items():
        if name in had:
            continue
        first = next(i for i, s in enumerate(states) if name in s.domains())
        if not steps[first - 1].renders_domain(name, created=True):
            created.append(CreateDomain(domain))
    for name, domain in had.items():
        if name in has:
            continue
        last = max(i for i, s in enumerate(states) if name in s.domains())
        if not steps[last].renders_domain(name, created=False):
            dropped.append(DropDomain(domain))
    return created, dropped
