"""What a reviewer reads first: the before/after of every table a change touches."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from generator import memo
from generator.ops.alter_column_type import ONLINE_TYPE_CHANGE
from generator.ops.base import Step
from generator.plan import CONCURRENT_INDEXES, Unit, plan
from generator.state import Schema, Table

if TYPE_CHECKING:
    from generator.load import Change


@dataclass
class TableDiff:
    table: str
    status: str  # "created", "dropped" or "changed"
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (what, before, after)


def _index(t: Table) -> dict[str, str]:
    return {
        i.name: f"({', '.join(c + (' DESC' if c in i.descending else '') for c in i.columns)})"
        + (" unique" if i.unique else "")
        + (f" INCLUDE ({', '.join(i.include)}) on PostgreSQL" if i.include else "")
        + (f" WHERE {i.where_text}" if i.where else "")
        for i in t.indexes
    }


def _facets(t: Table | None) -> dict[str, str]:
    """Every reviewable fact of a table, keyed by what it is about. The caller must not
    change the dict: a table's are computed once (a table is the state after one change and
    before the next, the very same object), looked up by identity (the entry keeps the table,
    so its id is not reused)."""
    if t is None:
        return {}
    return memo.by_identity(_FACETS, t, _table_facets)


_FACETS: dict[int, tuple[Table, dict[str, str]]] = {}


def _table_facets(t: Table) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in t.columns:
        serial = f" serial (sequence `{c.serial}` on PostgreSQL)" if c.serial else ""
        out[f"column `{c.name}`"] = f"{c.type}{'' if c.nullable else ' NOT NULL'}{serial}"
    for name, cols in _index(t).items():
        out[f"index `{name}`"] = cols
    for f in t.foreign_keys:
        if f.composite:
            out[f"foreign key `{f.name}`"] = (
                f"({', '.join(f.columns)}) → {f.ref_table}.({', '.join(f.ref_columns)}) "
                f"ON DELETE {f.on_delete}"
            )
        else:
            out[f"foreign key `{f.name}`"] = (
                f"→ {f.ref_table}.{f.ref_column} ON DELETE {f.on_delete}"
            )
    for ck in t.checks:
        out[f"check `{ck.name}`"] = ck.sql
    return out


def _default_rows(old: Table, new: Table) -> list[tuple[str, str, str]]:
    """Defaults changed on a column that stays (set_default): shown only when they differ."""
    rows = []
    for c in new.columns:
        was = old.column(c.name)
        if was is not None and (was.default, type(was.default)) != (c.default, type(c.default)):
            show = ["—" if d is None else repr(d) for d in (was.default, c.default)]
            rows.append((f"default of `{c.name}`", show[0], show[1]))
    return rows


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
        if old is not None and new is not None:
            rows += _default_rows(old, new)
        if old is not None and new is not None and len(old.indexes) != len(new.indexes):
            rows.append(("index count", str(len(old.indexes)), str(len(new.indexes))))
        diffs.append(TableDiff(name, status, rows))
    return diffs


def describe(step: Step) -> str:
    """One line a reviewer reads for a step (the step's own)."""
    return step.describe()


def risk_line(units_by_dialect: dict[str, list[Unit]]) -> str:
    """One line on what a change's upgrade costs a live database, per dialect."""
    parts = []
    for dialect, units in units_by_dialect.items():
        name = "PostgreSQL" if dialect == "postgresql" else "SQLite"
        rewrites = sorted(
            {s.table_name for u in units if u.risk(dialect).rewrites for s in u.steps}
        )
        online = sorted(
            {s.table_name for u in units if u.group is ONLINE_TYPE_CHANGE for s in u.steps}
        )
        if rewrites:
            verb = "rewrites" if dialect == "postgresql" else "rebuilds"
            parts.append(f"{name} {verb} {', '.join(rewrites)}")
        elif online:
            parts.append(
                f"{name}: online type change of {', '.join(online)} (expand, backfill, "
                "prepare, contract), no rewrite under a lock"
            )
        elif any(u.group is CONCURRENT_INDEXES for u in units):
            parts.append(f"{name}: online (CONCURRENTLY), no rewrite")
        else:
            parts.append(f"{name}: no rewrite")
    return "; ".join(parts)


def _upgrade_units(change: Change) -> dict[str, list[Unit]]:
    return {d: plan(change.steps, change.before, d) for d in ("postgresql", "sqlite")}


def change_risk(change: Change) -> str:
    """:func:`risk_line` of a change's upgrade (``schemagen status`` shows it per change)."""
    return risk_line(_upgrade_units(change))


def change_risks(change: Change) -> dict[str, list[dict[str, object]]]:
    """Every unit of a change's upgrade with its Risk, per dialect, as data (``status --json``)."""
    return {
        dialect: [
            {
                "unit": u.kind,
                "tables": sorted({s.table_name for s in u.steps if s.table_name}),
                **dataclasses.asdict(u.risk(dialect)),
            }
            for u in units
        ]
        for dialect, units in _upgrade_units(change).items()
    }
