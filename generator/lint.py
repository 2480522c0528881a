"""Lint rules for change specs: stable ids, a severity, why, and the safe alternative.

A finding points at the operation's place in its file. A spec acknowledges a finding with a
reason (``acknowledge: {SG102: "..."}`` on the operation, or on the change for all of its
operations); acknowledged findings do not block and are listed in the review summary.
``generate`` refuses a change with an unacknowledged error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from generator import memo
from generator.load import Change
from generator.ops.base import Step


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str  # "error" blocks generate unless acknowledged; "warning" is reported
    why: str
    instead: str


RULES = {
    r.id: r
    for r in (
        Rule(
            "SG101",
            "index-not-concurrent",
            "error",
            "builds or drops an index inside a transaction on PostgreSQL, blocking writes",
            "leave `concurrently` at its default (true)",
        ),
        Rule(
            "SG102",
            "table-rewrite",
            "warning",
            "rewrites the table under ACCESS EXCLUSIVE on PostgreSQL (rebuilds it on SQLite)",
            "plan a window sized by the table, or add a new column and backfill in batches",
        ),
        Rule(
            "SG103",
            "lossy-type-change",
            "error",
            "the new type cannot hold every value of the old one: precision can be lost",
            "convert to a type that holds every value, or acknowledge with a reason (rows that "
            "do not fit are refused before any DDL, by the change's fit-check)",
        ),
        Rule(
            "SG104",
            "float-without-range-check",
            "warning",
            "a float column accepts NaN, infinities and values the decimal never allowed",
            "set `range_check: true` to keep the decimal's domain",
        ),
        Rule(
            "SG105",
            "fk-without-not-valid",
            "warning",
            "a new foreign key to an existing table locks that table (SHARE ROW EXCLUSIVE) "
            "while it is validated",
            "create the table without the key, then add it with `add_foreign_key` in a later "
            "change (NOT VALID, validated apart)",
        ),
        Rule(
            "SG106",
            "drop-last-fk-index",
            "error",
            "leaves a foreign-key column without an index that leads with it: every delete "
            "of a parent row scans this table",
            "keep (or first create) an index whose leading column is the foreign key",
        ),
        Rule(
            "SG107",
            "drops-data",
            "warning",
            "drops a table or column (in its upgrade or in its derived downgrade): its data "
            "is lost",
            "keep the data elsewhere first, or acknowledge with the reason it may go",
        ),
        Rule(
            "SG108",
            "not-null-without-default",
            "error",
            "adds a NOT NULL column without a default: existing rows have no value",
            "give it a default, or add it nullable and backfill",
        ),
        Rule(
            "SG109",
            "soft-delete-without-index",
            "warning",
            "a soft-delete column without an index makes purge and restore queries scan",
            "create an index that leads with it in the same change",
        ),
        Rule(
            "SG110",
            "rename-breaks-running-code",
            "warning",
            "renames a column or table: application code still running with the old name "
            "fails from "
            "the moment the rename commits",
            "deploy code that no longer uses the old name first (or reads both), then "
            "acknowledge with that reason",
        ),
        Rule(
            "SG111",
            "drop-without-data",
            "error",
            "drops a column or table with `keep_data: false`: its data is gone for good, and "
            "the derived downgrade brings it back empty",
            "leave `keep_data` at its default (true: the values stay aside until `purge`), or "
            "acknowledge with the reason they may go",
        ),
        Rule(
            "SG112",
            "purge-destroys-archives",
            "error",
            "destroys what an earlier drop_column / drop_table kept: the data is gone, and no "
            "downgrade can pass this change (it fails, naming the change)",
            "purge only once the earlier change is known good and will not be undone; "
            "acknowledge with that reason",
        ),
        Rule(
            "SG113",
            "raw-sql",
            "warning",
            "raw SQL: the tool cannot know what it locks, scans or changes (it declares no "
            "schema effect; the post-checks refuse a change to the modelled schema)",
            "prefer an operation; else review the SQL and its `down`, give it `checks`, and "
            "acknowledge with the reason",
        ),
        Rule(
            "SG120",
            "constraint-dropped",
            "warning",
            "drops a constraint (a CHECK, a unique key, a foreign key, a NOT NULL): rows written "
            "after it may break it, and the derived downgrade, which adds it back, is refused "
            "(the rows listed) until they are fixed",
            "keep the constraint if the way back matters, or acknowledge with the reason it may go",
        ),
    )
}


@dataclass(frozen=True)
class Finding:
    rule: Rule
    file: str
    line: int
    column: int
    path: str
    message: str
    acknowledged: str | None = None

    def __str__(self) -> str:
        state = f" (acknowledged: {self.acknowledged})" if self.acknowledged else ""
        return (
            f"{self.file}:{self.line}:{self.column}: {self.path}: {self.rule.id} "
            f"{self.rule.name} [{self.rule.severity}]: {self.message}{state}\n"
            f"    why: {self.rule.why}\n    instead: {self.rule.instead}"
        )

    @property
    def blocks(self) -> bool:
        return self.rule.severity == "error" and self.acknowledged is None


def _step_findings(step: Step, change: Change) -> Iterator[tuple[str, str]]:
    """The step's own findings (its module decides them), and SG107 for what its upgrade or
    its derived downgrade destroys."""
    for finding in step.findings(change):
        yield finding.rule, finding.message
    for side, inverse in (("upgrade", step), ("downgrade", step.reverse())):
        what = inverse.drops()
        if what is not None:
            yield "SG107", f"the {side} drops {what}"


def lint_change(change: Change) -> list[Finding]:
    """The change's findings, sorted. Found once per change object (loading lints each
    change, its review lists the findings again); the caller must not change the list."""
    return memo.by_identity(_FOUND, change, _lint_change)


# id(change) -> (the change, kept alive so that its id is not reused; its findings)
_FOUND: dict[int, tuple[Change, list[Finding]]] = {}


def _lint_change(change: Change) -> list[Finding]:
    findings = []
    for step, op_index in zip(change.steps, change.origins, strict=True):
        op = change.spec.operations[op_index]
        acks = {**change.spec.acknowledge, **op.acknowledge}
        path = ("operations", op_index)
        line, column = change.positions.of_value(path)
        for rule_id, message in _step_findings(step, change):
            if rule_id == "SG107" and change.number == 0:
                continue  # the baseline declares what exists; its downgrade is a reset
            findings.append(
                Finding(
                    RULES[rule_id],
                    change.display,
                    line,
                    column,
                    f"operations[{op_index}]",
                    message,
                    acks.get(rule_id),
                )
            )
    return sorted(set(findings), key=lambda f: (f.file, f.line, f.column, f.rule.id, f.message))


def lint(changes: list[Change]) -> list[Finding]:
    return [f for change in changes for f in lint_change(change)]
