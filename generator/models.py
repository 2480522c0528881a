"""`schemagen check`: the application's models (``metadata`` in the configuration) against the
schema the specs build at head.

The specs' head is built for real: a scratch database (a temporary SQLite file, or the
``--url`` given) is upgraded to head by the generated migrations, and Alembic's autogenerate
comparison (types included) lists what differs between it and the models.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from generator import migrate, version_table
from generator.config import Project, is_foreign, load_metadata
from generator.ops.add_column import AddColumn
from generator.ops.alter_column_type import AlterColumnType
from generator.ops.create_index import CreateIndex
from generator.ops.create_table import CreateTable
from generator.ops.drop_index import DropIndex
from generator.ops.swap_fk_action import SwapFkAction

T = TypeVar("T")


def _context(conn: Connection, foreign_tables: tuple[str, ...]) -> MigrationContext:
    """Alembic's comparison, types included, blind to the version table and to another
    owner's tables (``foreign_tables``)."""

    def include_object(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
        return not (type_ == "table" and name is not None and is_foreign(name, foreign_tables))

    return MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "version_table": version_table.get(),
            "include_object": include_object,
        },
    )


def _differences(conn: Connection, metadata: Any, foreign_tables: tuple[str, ...]) -> list[str]:
    context = _context(conn, foreign_tables)
    script = produce_migrations(context, metadata)
    if script.upgrade_ops is None or script.upgrade_ops.is_empty():
        return []
    code = render_python_code(script.upgrade_ops, render_as_batch=False)
    return [line for line in code.splitlines() if line.strip() and not line.startswith("#")]


def _at_head(
    project: Project, scratch_url: str | None, compare: Callable[[Connection, Any], T]
) -> T:
    """``compare(connection, metadata)`` on a scratch database upgraded to the specs' head.
    ConfigError when no metadata is configured or importable."""
    metadata = load_metadata(project)
    if metadata is None:
        from generator.config import ConfigError

        raise ConfigError(
            f'no models to compare with: set metadata = "package.module:attribute" in '
            f"{project.config_file or project.root / 'schemagen.toml'}"
        )
    quiet = logging.getLogger("schemagen")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = sa.make_url(scratch_url or f"sqlite:///{Path(tmp) / 'head.db'}")
            migrate.upgrade(project.output_dir, url, "head")
            return migrate.with_connection(url, lambda c: compare(c, metadata))
    finally:
        quiet.setLevel(level)


def differences(project: Project, scratch_url: str | None = None) -> list[str]:
    """The operations that would make the specs' head match the models (Alembic's rendering);
    empty when they agree. ConfigError when no metadata is configured or importable."""
    return _at_head(project, scratch_url, lambda c, m: _differences(c, m, project.foreign_tables))


# ---------------------------------------------------------------- autogenerate

ACTIONS = {
    None: "no_action",
    "NO ACTION": "no_action",
    "CASCADE": "cascade",
    "RESTRICT": "restrict",
    "SET NULL": "set_null",
    "SET DEFAULT": "set_default",
}


def spec_type(t: Any) -> str | None:
    """The vocabulary's name of a SQLAlchemy type, or None."""
    if isinstance(t, sa.types.TypeDecorator):
        t = t.impl if isinstance(t.impl, sa.types.TypeEngine) else t.impl_instance
    checks: list[tuple[type[Any], Any]] = [
        (sa.BigInteger, "bigint"),
        (sa.Integer, "integer"),
        (sa.Boolean, "boolean"),
        (sa.Text, "text"),
        (sa.String, lambda x: f"varchar({x.length})" if x.length else "text"),
        (sa.Float, "float"),
        (sa.Numeric, lambda x: f"decimal({x.precision},{x.scale})" if x.precision else None),
        (sa.DateTime, lambda x: "timestamptz" if x.timezone else None),
    ]
    for cls, name in checks:
        if isinstance(t, cls):
            return name(t) if callable(name) else str(name)
    return None


def _default(column: sa.Column[Any]) -> tuple[Any, bool]:
    default = column.server_default
    if default is None or isinstance(default, sa.Identity):
        return None, True
    text = str(getattr(default, "arg", "")).strip()
    if isinstance(getattr(default, "arg", None), str):
        return text, True
    lowered = text.lower().strip("'")
    if lowered in ("now()", "current_timestamp", "transaction_timestamp()"):
        return "now", True
    if lowered in ("true", "false", "1", "0") and isinstance(column.type, sa.Boolean):
        return lowered in ("true", "1"), True
    try:
        return (int(lowered) if lowered.lstrip("-").isdigit() else float(lowered)), True
    except ValueError:
        return (text.strip("'"), True) if text.startswith("'") else (None, False)


def _column(column: sa.Column[Any], notes: list[str], table: str) -> dict[str, Any] | None:
    kind = spec_type(column.type)
    if kind is None:
        notes.append(f"{table}.{column.name}: type {column.type!r} is not in the vocabulary")
        return None
    out: dict[str, Any] = {"name": column.name, "type": kind}
    if column.primary_key:
        out["primary_key"] = True
    else:
        out["nullable"] = bool(column.nullable)
    value, understood = _default(column)
    if not understood:
        notes.append(f"{table}.{column.name}: default {column.server_default!r} left out")
    elif value is not None:
        out["default"] = value
    fks = list(column.foreign_keys)
    if len(fks) == 1:
        fk = fks[0]
        ref: dict[str, Any] = {"table": fk.column.table.name, "column": fk.column.name}
        action = ACTIONS.get(fk.ondelete.upper() if fk.ondelete else None)
        if action and action != "no_action":
            ref["on_delete"] = action
        out["references"] = ref
    return out


def _index(index: sa.Index) -> dict[str, Any]:
    out: dict[str, Any] = {"name": index.name, "columns": [c.name for c in index.columns]}
    if index.unique:
        out["unique"] = True
    for key in ("postgresql_where", "sqlite_where"):
        where = index.dialect_options[key.split("_")[0]].get("where")
        if where is not None:
            out["where"] = str(where).replace('"', "").strip("()")
            break
    return out


def _operations(diffs: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    ops: list[dict[str, Any]] = []
    notes: list[str] = []
    removed_columns: dict[str, list[sa.Column[Any]]] = {}
    removed_fks: dict[tuple[str, str], Any] = {}
    renamed: set[tuple[str, str]] = set()
    flat: list[Any] = []
    for diff in diffs:
        flat.extend(diff if isinstance(diff, list) else [diff])
    for diff in flat:
        kind = diff[0]
        if kind == "remove_column":
            removed_columns.setdefault(diff[2], []).append(diff[3])
        elif kind == "remove_fk":
            fk = diff[1]
            if len(fk.column_keys) == 1:
                removed_fks[(fk.parent.name, fk.column_keys[0])] = fk
    # additions first, so that a removal can be known as the other half of a rename
    flat.sort(key=lambda d: d[0] == "remove_column")
    for diff in flat:
        kind = diff[0]
        if kind == "add_table":
            table = diff[1]
            columns = [c for c in (_column(col, notes, table.name) for col in table.columns) if c]
            for uq in table.constraints:
                if isinstance(uq, sa.UniqueConstraint) and len(uq.columns) == 1:
                    name = next(iter(uq.columns)).name
                    for c in columns:
                        if c["name"] == name:
                            c["unique"] = True
            for col in table.columns:
                if col.unique:
                    for c in columns:
                        if c["name"] == col.name:
                            c["unique"] = True
            op: dict[str, Any] = {"op": CreateTable.tag(), "name": table.name, "columns": columns}
            indexes = [_index(i) for i in sorted(table.indexes, key=lambda i: str(i.name))]
            if indexes:
                op["indexes"] = indexes
            ops.append(op)
        elif kind == "add_column":
            table, column = diff[2], diff[3]
            removed = [
                c
                for c in removed_columns.get(table, [])
                if spec_type(c.type) == spec_type(column.type)
            ]
            if removed:
                renamed.add((table, removed[0].name))
                notes.append(
                    f"{table}: was {removed[0].name} renamed to {column.name}? A spec cannot "
                    "rename a column yet; this adds it (and drops nothing)"
                )
            spec = _column(column, notes, table)
            if spec is not None:
                ops.append({"op": AddColumn.tag(), "table": table, "column": spec})
        elif kind == "add_index":
            index = diff[1]
            ops.append({"op": CreateIndex.tag(), "table": index.table.name, **_index(index)})
        elif kind == "remove_index":
            index = diff[1]
            ops.append({"op": DropIndex.tag(), "table": index.table.name, "name": index.name})
        elif kind == "modify_type":
            table, column, old, new = diff[2], diff[3], diff[5], diff[6]
            before, after = spec_type(old), spec_type(new)
            if before and after:
                ops.append(
                    {
                        "op": AlterColumnType.tag(),
                        "table": table,
                        "column": column,
                        "from": before,
                        "to": after,
                    }
                )
            else:
                notes.append(f"{table}.{column}: type {old!r} -> {new!r} not in the vocabulary")
        elif kind == "add_fk":
            fk = diff[1]
            key = (fk.parent.name, fk.column_keys[0]) if len(fk.column_keys) == 1 else None
            old = removed_fks.get(key) if key else None
            if old is not None and key is not None:
                was = ACTIONS.get(old.ondelete.upper() if old.ondelete else None, "no_action")
                to = ACTIONS.get(fk.ondelete.upper() if fk.ondelete else None, "no_action")
                ops.append(
                    {
                        "op": SwapFkAction.tag(),
                        "table": key[0],
                        "column": key[1],
                        "from": was,
                        "to": to,
                    }
                )
            else:
                notes.append(f"{fk.parent.name}: a new foreign key {fk.name} (not expressible)")
        elif kind == "remove_column":
            if (diff[2], diff[3].name) not in renamed:
                notes.append(
                    f"{diff[2]}.{diff[3].name} is in the schema but not in the models: a spec "
                    "cannot drop a column yet"
                )
        elif kind == "remove_fk":
            continue
        else:
            where = next((str(d) for d in diff[1:4] if isinstance(d, str) and d), "")
            notes.append(f"{kind} {where}".strip() + ": not expressible in a spec yet")
    return ops, notes


def autogenerate(
    project: Project, scratch_url: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The spec operations that would bring the specs' head to the models, and notes on what
    could not be written as one (renames as questions)."""
    from alembic.autogenerate import compare_metadata

    def compare(conn: Connection, metadata: Any) -> list[Any]:
        context = _context(conn, project.foreign_tables)
        return list(compare_metadata(context, metadata))

    diffs = _at_head(project, scratch_url, compare)
    operations, notes = _operations(diffs)
    return [_plain(op) for op in operations], notes


def _plain(value: Any) -> Any:
    """Plain str, list and dict (SQLAlchemy's names are str subclasses YAML cannot dump)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
