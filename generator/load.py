"""Load every spec under ``changes/``, validate it, and apply it to the schema in order.

All problems of a run are collected and raised together as :class:`SpecErrors`; a caller
that gets a list of changes back knows every spec is valid against the state before it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from generator import changespec, spec
from generator.conventions import DEFAULT, Conventions
from generator.errors import Path, SpecError, SpecErrors, format_path
from generator.ops.base import Step
from generator.resolve import Resolver
from generator.specfiles import (
    FILE_RE,
    MAX_SPEC_BYTES,
    NON_ASCII_NUMBER,
    display_name,
    spec_files,
    text_digest,
)
from generator.state import Schema
from generator.yamlpos import Positions, load


@dataclass(frozen=True)
class Change:
    """A validated change: its spec, the steps it resolves to, and the schema around it."""

    number: int
    spec: changespec.ChangeSpec
    file: FsPath
    display: str  # the file as errors and generated headers name it
    steps: tuple[Step, ...]
    before: Schema
    after: Schema
    origins: tuple[int, ...] = ()  # the index of the operation each step comes from
    positions: Positions = field(default_factory=Positions, compare=False, repr=False)
    conventions: Conventions = field(default=DEFAULT, compare=False, repr=False)
    # The digest of the spec's text (specfiles.text_digest): what the cache keys it on.
    source_digest: str = field(default="", compare=False, repr=False)

    # Derived once per change (it is frozen): rendering asks for these for every file.
    @functools.cached_property
    def revision(self) -> str:
        return f"{self.number:04d}"

    @property
    def down_revision(self) -> str | None:
        if self.number == 0:
            return self.spec.after  # the revision of an existing history it continues
        return f"{self.number - 1:04d}"

    @functools.cached_property
    def name(self) -> str:
        return f"{self.revision}_{self.spec.id}"

    @functools.cached_property
    def inverse_steps(self) -> tuple[Step, ...]:
        """The derived downgrade; for a change that cannot be undone, only its refusals (so
        nothing of it runs, not even a step that commits on its own). Once per change: the
        plans, the data checks and the resume tolerances of the downgrade all start from
        these very steps."""
        steps = tuple(step.reverse() for step in reversed(self.steps))
        return tuple(s for s in steps if s.refuses) or steps


def _walk(data: Any, loc: tuple[Any, ...]) -> Path:
    """Map a pydantic error location onto the YAML path, dropping union tag segments."""
    out: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and node.get("op") == part:
            continue  # the discriminator's tag, not a field
        else:
            out.append(part)
            node = None
    return tuple(out)


def _pydantic_errors(
    exc: ValidationError, data: Any, positions: Positions, display: str
) -> list[SpecError]:
    errors = []
    for err in exc.errors(include_url=False):
        path = _walk(data, err["loc"])
        kind = err["type"]
        ctx = err.get("ctx") or {}
        value = err.get("input")
        where = positions.of_value(path)
        shown_path = path
        if kind == "missing":
            message = "required field is missing"
            where = positions.of_value(path[:-1])
        elif kind == "extra_forbidden":
            message = f"unknown field {path[-1]!r}"
            where = positions.of_key(path)
        elif kind == "union_tag_invalid":
            message = (
                f"unknown op {ctx.get('tag')!r} (expected one of {', '.join(changespec.OP_NAMES)})"
            )
            shown_path = (*path, "op")
            where = positions.of_value(shown_path)
        elif kind == "union_tag_not_found":
            message = f"required field 'op' is missing (one of {', '.join(changespec.OP_NAMES)})"
        elif kind == "string_pattern_mismatch" and ctx.get("pattern") == spec.WHERE_PATTERN:
            message = f"invalid predicate {value!r} (expected {spec.WHERE_HELP})"
        elif kind == "string_pattern_mismatch":
            message = f"invalid identifier {value!r} (expected {spec.IDENTIFIER_HELP})"
        elif kind == "literal_error":
            message = f"{value!r} is not allowed (expected {ctx.get('expected')})"
        elif kind == "value_error":
            message = str(ctx.get("error", err["msg"]))
        elif kind == "too_short":
            message = "must not be empty"
        else:
            message = (
                f"{err['msg'].rstrip('.')} (got {value!r})" if value is not None else err["msg"]
            )
        line, col = where
        errors.append(SpecError(display, line, col, format_path(shown_path), message))
    return errors


def load_changes(
    changes_dir: FsPath,
    display_base: FsPath | None = None,
    lint: bool = True,
    conventions: Conventions = DEFAULT,
) -> list[Change]:
    """Every change in order, validated and applied; raises SpecErrors listing all problems.

    With ``lint``, an unacknowledged lint error (generator.lint) is one of those problems.
    ``conventions`` name the constraints and the soft-delete column (the project's config).
    """
    from generator.lint import lint_change  # lint reads Change: imported late

    errors: list[SpecError] = []
    if not changes_dir.is_dir():
        where = display_name(changes_dir, display_base)
        raise SpecErrors([SpecError(where, 1, 1, "", "no such directory of change specs")])
    files = spec_files(changes_dir)
    if not files:
        errors.append(SpecError(display_name(changes_dir, display_base), 1, 1, "", "no specs"))
    expected_number = 0
    changes: list[Change] = []
    resolver = Resolver(Schema(), conventions)
    first_with: dict[int, str] = {}
    for file in files:
        display = display_name(file, display_base)
        m = FILE_RE.match(file.name)
        if not m:
            odd = NON_ASCII_NUMBER.match(file.name)
            message = (
                f"change number {odd['num']!r} must be written with ASCII digits 0-9"
                if odd
                else "file name must be NNNN_<id>.yaml (e.g. 0001_add_x.yaml)"
            )
            errors.append(SpecError(display, 1, 1, "", message))
            continue
        number = int(m["num"])
        if number in first_with:
            errors.append(
                SpecError(
                    display,
                    1,
                    1,
                    "",
                    f"duplicate change number {number:04d} (also {first_with[number]})",
                )
            )
            continue
        first_with[number] = display
        if number != expected_number:
            errors.append(
                SpecError(
                    display,
                    1,
                    1,
                    "",
                    f"change number {number:04d} out of sequence (expected {expected_number:04d})",
                )
            )
        expected_number = number + 1
        try:
            size = file.stat().st_size
            if size > MAX_SPEC_BYTES:
                errors.append(
                    SpecError(
                        display,
                        1,
                        1,
                        "",
                        f"the file is {size:,} bytes, over the limit of {MAX_SPEC_BYTES:,} "
                        "(split the change)",
                    )
                )
                continue
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(SpecError(display, 1, 1, "", f"cannot read file: {exc}"))
            continue
        data, positions, yaml_errors = load(text, display)
        errors.extend(yaml_errors)
        if yaml_errors:
            continue
        if not isinstance(data, dict):
            errors.append(SpecError(display, 1, 1, "", "a change file must be a mapping"))
            continue
        try:
            change_spec = changespec.ChangeSpec.model_validate(data)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(exc, data, positions, display))
            continue
        if change_spec.id != m["id"]:
            line, col = positions.of_value(("id",))
            errors.append(
                SpecError(
                    display,
                    line,
                    col,
                    "id",
                    f"id {change_spec.id!r} does not match the file name (expected {m['id']!r})",
                )
            )
        before = resolver.change_start = resolver.schema
        resolver.change_number, resolver.change_id = number, change_spec.id
        steps: list[Step] = []
        origins: list[int] = []
        for i, op in enumerate(change_spec.operations):
            op_steps, problems = resolver.resolve(op)
            steps.extend(op_steps)
            origins.extend([i] * len(op_steps))
            for rel, message in problems:
                path: Path = ("operations", i, *rel)
                line, col = positions.of_value(path)
                errors.append(SpecError(display, line, col, format_path(path), message))
        resolver.change_numbers.setdefault(change_spec.id, number)
        if change_spec.after is not None:
            if number != 0:
                line, col = positions.of_value(("after",))
                errors.append(
                    SpecError(
                        display,
                        line,
                        col,
                        "after",
                        "only the baseline (change 0000) can continue an existing history",
                    )
                )
            # The history before it built the declared tables: the baseline runs no DDL,
            # and its checks before and after are the declared schema.
            before, steps, origins = resolver.schema, [], []
        change = Change(
            number,
            change_spec,
            file,
            display,
            tuple(steps),
            before,
            resolver.settled_schema(),
            tuple(origins),
            positions,
            conventions,
            text_digest(text),
        )
        changes.append(change)
        if lint and len(steps) == len(origins) and not any(e.file == display for e in errors):
            for finding in lint_change(change):
                if finding.blocks:
                    errors.append(
                        SpecError(
                            display,
                            finding.line,
                            finding.column,
                            finding.path,
                            f"{finding.rule.id} {finding.rule.name}: {finding.message} "
                            f"({finding.rule.instead}; or acknowledge it with a reason)",
                        )
                    )
    if errors:
        raise SpecErrors(errors)
    return changes
