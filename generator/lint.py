"""Lint rules for change specs: stable ids, a severity, why, and the safe alternative.

A finding points at the operation's place in its file. A spec acknowledges a finding with a
reason (``acknowledge: {SG102: "..."}`` on the operation, or on the change for all of its
operations); acknowledged findings do not block and are listed in the review summary.
``generate`` refuses a change with an unacknowledged error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from generator import coltypes, risk
from generator.coltypes import SqlType
from generator.load import Change
from generator.state import (
    AddCheckStep,
    AddColumnStep,
    AlterColumnTypeStep,
    CreateIndexStep,
    CreateTableStep,
    DropColumnStep,
    DropIndexStep,
    DropTableStep,
    Schema,
    Step,
)


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
            "create the table without the key, then add it NOT VALID and validate it apart",
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


def _rewrites(old: SqlType, new: SqlType) -> bool:
    # One source with the review: generator.risk, proven against a real server.
    return risk.postgresql_type_change(old, new).rewrites


def _fk_columns_without_index(schema: Schema) -> set[tuple[str, str]]:
    out = set()
    for t in schema.tables:
        # a partial index holds only some rows: it cannot serve the RESTRICT / CASCADE check
        leading = {i.columns[0] for i in t.indexes if not i.where}
        leading |= {u.columns[0] for u in t.uniques}
        if t.primary_key:
            leading.add(t.primary_key[0])
        out |= {(t.name, f.column) for f in t.foreign_keys if f.column not in leading}
    return out


def _step_findings(step: Step, change: Change) -> Iterator[tuple[str, str]]:
    match step:
        case CreateIndexStep(index=i) | DropIndexStep(index=i) if not step.concurrently:
            yield "SG101", f"index {i.name} on {i.table} runs without CONCURRENTLY"
        case AlterColumnTypeStep():
            old, new = step.column.type, step.to
            where = f"{step.table_name}.{step.column.name}"
            if _rewrites(old, new):
                yield "SG102", f"{where}: {old} -> {new} rewrites {step.table_name}"
            if coltypes.narrows(old, new):
                # the same test that gives the conversion its fit-check
                yield "SG103", f"{where}: {old} -> {new} {coltypes.narrowing_note(old, new)}"
            checked = {
                (s.check.table, s.check.column) for s in change.steps if isinstance(s, AddCheckStep)
            }
            if (
                old.kind == "decimal"
                and new.kind == "float"
                and (step.table_name, step.column.name) not in checked
            ):
                yield "SG104", f"{where}: {old} -> float without range_check"
        case CreateTableStep(table=t):
            for f in t.foreign_keys:
                if f.ref_table != t.name and change.before.table(f.ref_table) is not None:
                    yield "SG105", f"{t.name}.{f.column} references existing table {f.ref_table}"
        case AddColumnStep(column=c):
            if not c.nullable and c.default is None:
                yield "SG108", f"{step.table_name}.{c.name} is NOT NULL without a default"
            if c.name == change.conventions.soft_delete_column:
                table = change.after.table(step.table_name)
                if table is not None and not any(i.columns[0] == c.name for i in table.indexes):
                    yield "SG109", f"{step.table_name}.{c.name} has no index leading with it"
    for inverse in (step, step.reverse()):
        if isinstance(inverse, DropTableStep):
            side = "upgrade" if inverse is step else "downgrade"
            yield "SG107", f"the {side} drops table {inverse.table.name}"
        elif isinstance(inverse, DropColumnStep):
            side = "upgrade" if inverse is step else "downgrade"
            yield "SG107", f"the {side} drops column {inverse.table_name}.{inverse.column.name}"


def lint_change(change: Change) -> list[Finding]:
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
    missing = _fk_columns_without_index(change.after) - _fk_columns_without_index(change.before)
    for op_index, op in enumerate(change.spec.operations):
        if op.op == "drop_index":
            lost = {m for m in missing if m[0] == op.table}
            if lost:
                acks = {**change.spec.acknowledge, **op.acknowledge}
                line, column = change.positions.of_value(("operations", op_index))
                cols = ", ".join(sorted(c for _, c in lost))
                findings.append(
                    Finding(
                        RULES["SG106"],
                        change.display,
                        line,
                        column,
                        f"operations[{op_index}]",
                        f"after this change {op.table}.{cols} has no index leading with it",
                        acks.get("SG106"),
                    )
                )
                missing -= lost
    return sorted(set(findings), key=lambda f: (f.file, f.line, f.column, f.rule.id, f.message))


def lint(changes: list[Change]) -> list[Finding]:
    return [f for change in changes for f in lint_change(change)]
