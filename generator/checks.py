"""What the validation SQL expects to find: catalogue rows derived from a schema state."""

from __future__ import annotations

from dataclasses import dataclass

from generator import dialects
from generator.state import Schema, Table

Row = tuple[str | int | None, ...]


@dataclass(frozen=True)
class TableExpectation:
    table: str
    columns: list[Row]  # (name, catalogue type, 'YES'/'NO' nullable, catalogue default)
    primary_key: list[Row]  # (constraint name, columns) on PostgreSQL; (columns,) on SQLite
    indexes: list[Row]  # (name, columns, unique YES/NO[, valid YES/NO on PostgreSQL])
    uniques: list[Row]  # (name, columns) on PostgreSQL; (columns,) on SQLite
    foreign_keys: list[Row]  # (name, column, ref table, ref column, action) / no name on SQLite
    checks: list[Row]  # (name, validated YES/NO) on PostgreSQL; (name,) on SQLite
    # SQLite cannot list a table's CHECK constraints: it looks for these names in its DDL.
    check_candidates: list[str]


def _yes(flag: bool) -> str:
    return "YES" if flag else "NO"


def _csv(columns: tuple[str, ...]) -> str:
    return ",".join(columns)


def expect_table(table: Table, dialect: str, candidates: set[str]) -> TableExpectation:
    pg = dialect == dialects.POSTGRESQL
    columns: list[Row] = [
        (
            c.name,
            dialects.catalog_type(c, dialect),
            "YES" if c.nullable else "NO",
            dialects.catalog_default(c, dialect),
        )
        for c in table.columns
    ]
    pk: list[Row] = []
    if table.primary_key:
        cols = _csv(table.primary_key)
        pk = [(table.pk_name, cols)] if pg else [(cols,)]
    indexes: list[Row] = [
        (i.name, _csv(i.columns), _yes(i.unique), "YES")
        if pg
        else (i.name, _csv(i.columns), _yes(i.unique))
        for i in table.indexes
    ]
    uniques: list[Row] = [
        (u.name, _csv(u.columns)) if pg else (_csv(u.columns),) for u in table.uniques
    ]
    fks: list[Row] = []
    for f in table.foreign_keys:
        action = dialects.FK_ACTION_SQL[f.on_delete]
        row: Row = (f.column, f.ref_table, f.ref_column, action)
        fks.append((f.name, *row, "YES") if pg else row)
    checks: list[Row] = [(c.name, "YES") if pg else (c.name,) for c in table.checks]
    return TableExpectation(
        table.name,
        columns,
        sorted(pk, key=str),
        sorted(indexes, key=str),
        sorted(uniques, key=str),
        sorted(fks, key=str),
        sorted(checks, key=str),
        sorted(candidates | {c.name for c in table.checks}),
    )


def expect_schema(schema: Schema, dialect: str, other: Schema) -> list[TableExpectation]:
    """Expectations for ``schema``; ``other`` is the state on the far side of the change, whose
    CHECK names must be looked for (and found absent) too."""
    out = []
    for t in sorted(schema.tables, key=lambda t: t.name):
        twin = other.table(t.name)
        candidates = {c.name for c in twin.checks} if twin else set()
        out.append(expect_table(t, dialect, candidates))
    return out
