"""The operation registry: every module of this package but ``base`` is one operation.

Discovered with pkgutil, so adding an operation is adding a module (docs/contributing.md);
nothing here names one. From the modules it derives the op names, the discriminated union of
their spec models (generator.changespec), the step classes and the templates they render with.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from generator.ops.base import OperationSpec, Step

if TYPE_CHECKING:
    from generator.plan import Group


@dataclass(frozen=True)
class Operation:
    """One operation module, as the registry found it."""

    module: ModuleType
    spec: type[OperationSpec]
    steps: tuple[type[Step], ...]  # the step classes the module defines
    groups: tuple[Group, ...]  # plan groups of its own (e.g. swap_fk_actions)

    @property
    def tag(self) -> str:
        return self.spec.tag()

    @property
    def templates(self) -> tuple[str, ...]:
        return self.spec.templates


@functools.cache
def registry() -> tuple[Operation, ...]:
    """Every operation, in ``position`` order. Discovered on first use, not at import: the
    modules import the central pieces (plan, resolve, checks) that import ``ops.base``."""
    from generator.plan import Group

    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        mine = [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if c.__module__ == module.__name__
        ]
        specs = [c for c in mine if issubclass(c, OperationSpec)]
        if len(specs) != 1:
            raise RuntimeError(f"{module.__name__} must define exactly one OperationSpec")
        steps = tuple(c for c in mine if issubclass(c, Step))
        groups = tuple(g for g in vars(module).values() if isinstance(g, Group))
        found.append(Operation(module, specs[0], steps, groups))
    return tuple(sorted(found, key=lambda o: (o.spec.position, o.tag)))


def op_names() -> tuple[str, ...]:
    return tuple(o.tag for o in registry())


def specs() -> tuple[type[OperationSpec], ...]:
    return tuple(o.spec for o in registry())


def steps() -> dict[str, type[Step]]:
    """Every step class by its kind."""
    return {s.kind: s for o in registry() for s in o.steps}


def unit_templates() -> dict[str, str]:
    """The template of each kind of plan unit: every step's own, and every group's."""
    from generator import domains, enum_types
    from generator.plan import GROUPS

    groups = (*GROUPS, *(g for o in registry() for g in o.groups))
    return {
        **{kind: step.template for kind, step in steps().items()},
        **{step.kind: step.template for step in (*enum_types.STEPS, *domains.STEPS)},
        **{g.kind: g.template for g in groups},
    }


def by_tag(tag: str) -> Operation:
    return next(o for o in registry() if o.tag == tag)


DOCS_BEGIN = (
    "<!-- operations: generated from generator/ops/ by `python -m generator.ops`; do not edit -->"
)
DOCS_END = "<!-- end of operations -->"


def docs_table() -> str:
    """The operations table of docs/authoring.md, one row per registered operation."""
    rows = [
        "| op | fields | upgrade | derived downgrade |",
        "|----|--------|---------|-------------------|",
        *(f"| `{o.tag}` | {' | '.join(o.spec.doc)} |" for o in registry()),
    ]
    return "\n".join(rows) + "\n"


def with_docs_table(text: str) -> str:
    """``text`` (docs/authoring.md) with the table between its markers rendered again."""
    head, begin, rest = text.partition(DOCS_BEGIN + "\n")
    _, end, tail = rest.partition(DOCS_END)
    if not begin or not end:
        raise ValueError(f"docs/authoring.md has no {DOCS_BEGIN!r} ... {DOCS_END!r} markers")
    return head + begin + docs_table() + end + tail
