"""What a reviewer reads first: the before/after of every table a change touches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from generator import dialects
from generator.state import (
    AddCheckStep,
    AddColumnStep,
    AlterColumnTypeStep,
    CreateIndexStep,
    CreateTableStep,
    DropCheckStep,
    DropColumnStep,
    DropIndexStep,
    DropTableStep,
    Schema,
    SetFkActionStep,
    Step,
    Table,
)


@dataclass
class TableDiff:
    table: str
    status: str  # "created", "dropped" or "changed"
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (what, before, after)


def _index(t: Table) -> dict[str, str]:
    return {
        i.name: f"({', '.join(i.columns)}){' unique' if i.unique else ''}"
        + (f" WHERE {i.where}" if i.where else "")
        for i in t.indexes
    }


def _facets(t: Table | None) -> dict[str, str]:
    """Every reviewable fact of a table, keyed by what it is about."""
    if t is None:
        return {}
    out: dict[str, str] = {}
    for c in t.columns:
        out[f"column `{c.name}`"] = f"{c.type}{'' if c.nullable else ' NOT NULL'}"
    for name, cols in _index(t).items():
        out[f"index `{name}`"] = cols
    for f in t.foreign_keys:
        out[f"foreign key `{f.name}`"] = f"→ {f.ref_table}.{f.ref_column} ON DELETE {f.on_delete}"
    for ck in t.checks:
        out[f"check `{ck.name}`"] = ck.sql
    return out


def diff_tables(before: Schema, after: Schema, touched: set[str]) -> list[TableDiff]:
    diffs = []
    for name in sorted(touched):
        old, new = before.table(name), after.table(name)
        status = "created" if old is None else "dropped" if new is None else "changed"
        a, b = _facets(old), _facets(new)
        rows = [
            (key, a.get(key, "—"), b.get(key, "—"))
            for key in sorted(set(a) | set(b), key=lambda k: (k.split()[0], k))
            if a.get(key) != b.get(key)
        ]
        if old is not None and new is not None and len(old.indexes) != len(new.indexes):
            rows.append(("index count", str(len(old.indexes)), str(len(new.indexes))))
        diffs.append(TableDiff(name, status, rows))
    return diffs


def describe(step: Step) -> str:
    """One line a reviewer reads for a step."""
    match step:
        case CreateTableStep(table=t):
            return f"create table `{t.name}`"
        case DropTableStep(table=t):
            return f"drop table `{t.name}` (**its rows are deleted**)"
        case CreateIndexStep(index=i):
            return f"create index `{i.name}` on `{i.table}` ({', '.join(i.columns)})"
        case DropIndexStep(index=i):
            return f"drop index `{i.name}` on `{i.table}`"
        case AlterColumnTypeStep():
            return f"`{step.table_name}.{step.column.name}`: {step.column.type} → {step.to}"
        case AddColumnStep(column=c):
            return f"add column `{step.table_name}.{c.name}` {c.type}"
        case DropColumnStep(column=c):
            return f"drop column `{step.table_name}.{c.name}` (**its values are lost**)"
        case SetFkActionStep(fk=f):
            return f"`{f.name}`: ON DELETE {f.on_delete} → {step.to}"
        case AddCheckStep(check=ck):
            return f"add check `{ck.name}` on `{ck.table}`"
        case DropCheckStep(check=ck):
            return f"drop check `{ck.name}` on `{ck.table}`"
    raise TypeError(step)


def risk_line(units_by_dialect: dict[str, list[Any]]) -> str:
    """One line on what a change's upgrade costs a live database, per dialect."""
    parts = []
    for dialect, units in units_by_dialect.items():
        name = "PostgreSQL" if dialect == "postgresql" else "SQLite"
        rewrites = sorted(
            {s.table_name for u in units if dialects.unit_risk(u, dialect)[1] for s in u.steps}
        )
        if rewrites:
            verb = "rewrites" if dialect == "postgresql" else "rebuilds"
            parts.append(f"{name} {verb} {', '.join(rewrites)}")
        elif any(u.kind == "concurrent_indexes" for u in units):
            parts.append(f"{name}: online (CONCURRENTLY), no rewrite")
        else:
            parts.append(f"{name}: no rewrite")
    return "; ".join(parts)
