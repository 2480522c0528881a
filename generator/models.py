"""`schemagen check`: the application's models (``metadata`` in the configuration) against the
schema the specs build at head.

The specs' head is built for real: a scratch database (a temporary SQLite file, or the
``--url`` given) is upgraded to head by the generated migrations, and Alembic's autogenerate
comparison (types included) lists what differs between it and the models.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from generator import dialects, migrate, version_table
from generator.coltypes import parse_type
from generator.config import Project, is_foreign, load_metadata
from generator.conventions import DEFAULT, Conventions
from generator.dialects import type_check
from generator.ops.add_check import AddCheck
from generator.ops.add_column import AddColumn
from generator.ops.add_foreign_key import AddForeignKey
from generator.ops.add_unique import AddUnique
from generator.ops.alter_column_type import AlterColumnType
from generator.ops.create_index import CreateIndex
from generator.ops.create_table import CreateTable
from generator.ops.drop_check import DropCheck
from generator.ops.drop_column import DropColumn
from generator.ops.drop_foreign_key import DropForeignKey
from generator.ops.drop_index import DropIndex
from generator.ops.drop_table import DropTable
from generator.ops.drop_unique import DropUnique
from generator.ops.set_default import SetDefault
from generator.ops.set_nullable import SetNullable
from generator.ops.swap_fk_action import SwapFkAction

T = TypeVar("T")


ARCHIVED = re.compile(r"_dropped_\d{4}_")  # a dropped column or table kept aside


def _context(conn: Connection, foreign_tables: tuple[str, ...]) -> MigrationContext:
    """Alembic's comparison, types included, blind to the version
    table, to another owner's tables (``foreign_tables``) and to what drops kept aside."""

    def include_object(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
        if name is not None and type_ in ("table", "column") and ARCHIVED.match(name):
            return False
        return not (type_ == "table" and name is not None and is_foreign(name, foreign_tables))

    return MigrationContext.configure(
        conn,
        opts={
            "compare_type": types_differ,
            "version_table": version_table.get(),
            "include_object": include_object,
        },
    )


def _default_diffs(
    conn: Connection, metadata: Any, foreign_tables: tuple[str, ...]
) -> list[tuple[Any, ...]]:
    """Columns whose database default and model default mean different values, shaped as
    Alembic's ``modify_default`` (its own comparison compares text, and fails on identity
    columns with a comparison function): ``now()`` and ``CURRENT_TIMESTAMP`` are one; a
    serial's ``nextval`` and an identity are no default."""
    from generator import introspect

    insp = sa.inspect(conn)
    present = set(insp.get_table_names())
    out: list[tuple[Any, ...]] = []
    for table in metadata.sorted_tables:
        if table.name not in present or is_foreign(table.name, foreign_tables):
            continue
        reflected = {c["name"]: c for c in insp.get_columns(table.name)}
        for column in table.columns:
            found = reflected.get(column.name)
            kind = spec_type(column.type)
            model, understood = _default(column)
            if found is None or kind is None or not understood:
                continue
            text = found.get("default")
            if text is not None and str(text).startswith("nextval("):
                continue
            database, understood = introspect.default_value(kind.split("(")[0], text)
            if understood and (database, type(database)) != (model, type(model)):
                existing = {"existing_type": column.type}
                out.append(
                    (
                        "modify_default",
                        None,
                        table.name,
                        column.name,
                        existing,
                        text,
                        column.server_default,
                    )
                )
    return out


def _named_columns(ck: sa.CheckConstraint, table: sa.Table) -> set[str]:
    """The table's columns a CHECK's text names (quoted or not)."""
    text = str(ck.sqltext)
    return {c.name for c in table.columns if re.search(rf'(?<![\w"])"?{c.name}"?(?![\w"])', text)}


def _check_diffs(
    conn: Connection, metadata: Any, foreign_tables: tuple[str, ...]
) -> list[tuple[str, str, Any]]:
    """Named CHECK constraints the models and the database do not share, by name (Alembic's
    comparison leaves checks out): ("add_named_check", table, {name, expression}) and
    ("remove_named_check", table, name), on tables both have."""
    insp = sa.inspect(conn)
    present = set(insp.get_table_names())
    out: list[tuple[str, str, Any]] = []
    for table in metadata.sorted_tables:
        if table.name not in present or is_foreign(table.name, foreign_tables):
            continue
        ours: dict[str, sa.CheckConstraint] = {
            ck.name: ck
            for ck in table.constraints
            if isinstance(ck, sa.CheckConstraint) and isinstance(ck.name, str)
        }
        typed = {  # SQLite's CHECK of a uuid, json or enum column: part of its type
            check[0]
            for column in table.columns
            if (kind := spec_type(column.type))
            and (check := type_check(column.name, parse_type(kind), conn.dialect.name))
        }
        theirs = {
            str(c["name"])
            for c in insp.get_check_constraints(table.name)
            if c.get("name") and c["name"] not in typed
        }
        # PostgreSQL: a one-column check of the models held by the column's domain (a range
        # check's, state.Domain: the domain's CHECK is the table's, not listed with it)
        domained = {
            str(c["name"])
            for c in insp.get_columns(table.name)
            if isinstance(c["type"], postgresql.DOMAIN) and c["type"].check is not None
        }
        theirs |= {
            name
            for name, ck in ours.items()
            if (cols := {c.name for c in ck.columns} or _named_columns(ck, table)) <= domained
            and len(cols) == 1
        }
        for name in sorted(set(ours) - theirs):
            out.append(
                (
                    "add_named_check",
                    table.name,
                    {"name": name, "expression": _expression(str(ours[name].sqltext))},
                )
            )
        for name in sorted(theirs - set(ours)):
            out.append(("remove_named_check", table.name, name))
    return out


def _differences(conn: Connection, metadata: Any, foreign_tables: tuple[str, ...]) -> list[str]:
    context = _context(conn, foreign_tables)
    script = produce_migrations(context, metadata)
    lines: list[str] = []
    if script.upgrade_ops is not None and not script.upgrade_ops.is_empty():
        code = render_python_code(script.upgrade_ops, render_as_batch=False)
        lines = [line for line in code.splitlines() if line.strip() and not line.startswith("#")]
    for diff in _default_diffs(conn, metadata, foreign_tables):
        new = _default_of(diff[6], diff[4]["existing_type"])[0]
        lines.append(
            f"default of {diff[2]}.{diff[3]}: {diff[5]} in the schema, {new!r} in the models"
        )
    for kind, table, what in _check_diffs(conn, metadata, foreign_tables):
        if kind == "add_named_check":
            lines.append(f"add check {what['name']} on {table}: {what['expression']}")
        else:
            lines.append(f"drop check {what} on {table}")
    return lines


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

ACTIONS = dialects.FK_ACTION_OF_SQL


def spec_type(t: Any) -> str | None:
    """The vocabulary's name of a SQLAlchemy type, or None."""
    if isinstance(t, sa.types.TypeDecorator):
        t = t.impl if isinstance(t.impl, sa.types.TypeEngine) else t.impl_instance
    checks: list[tuple[type[Any], Any]] = [
        (sa.Enum, _enum_type),  # before String, which it is
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


def _enum_type(t: sa.Enum) -> str | None:
    from generator.coltypes import TypeError_

    if not t.name or not t.enums:
        return None
    try:
        return str(parse_type(f"enum({t.name}: {', '.join(t.enums)})"))
    except TypeError_:
        return None


def types_differ(
    context: Any, inspected_column: Any, metadata_column: Any, inspected: Any, metadata: Any
) -> bool | None:
    """An enum compared by what the spec says: on PostgreSQL its type's name and labels, on
    SQLite its text column's ``<column>_is_<type>`` CHECK; a PostgreSQL domain (a range
    check's, state.Domain) by its base type. None: Alembic's own comparison."""
    if isinstance(inspected, postgresql.DOMAIN):
        return spec_type(inspected.data_type) != spec_type(metadata)
    if (
        not isinstance(metadata, sa.Enum)
        and not isinstance(inspected, sa.Enum)
        and (context.dialect.name != "sqlite" or not isinstance(inspected, sa.Text))
    ):
        return None
    model = spec_type(metadata)
    if context.dialect.name == "sqlite":
        from generator.introspect import _sqlite_enums

        table = getattr(inspected_column, "table", None)
        checks: list[tuple[str | None, str]] = [
            (str(c.name), str(c.sqltext))
            for c in getattr(table, "constraints", ())
            if isinstance(c, sa.CheckConstraint) and c.name
        ]
        name = str(inspected_column.name)
        database = _sqlite_enums([(name, "TEXT", True, None, False)], checks).get(name)
        if database is None and not isinstance(metadata, sa.Enum):
            return None  # a text column both sides
        return database != model
    return spec_type(inspected) != model


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


def _fk_target(fk: sa.ForeignKeyConstraint) -> tuple[str, str, str, str] | None:
    """(table, column, referred table, referred column) of a single-column foreign key."""
    if len(fk.column_keys) != 1 or len(fk.elements) != 1:
        return None
    element = fk.elements[0]
    return (fk.parent.name, fk.column_keys[0], element.column.table.name, element.column.name)


# The order operations are written in: what goes away before what it stood in the way of
# (indexes, keys and checks before the columns and tables they are on), additions in between.
ORDER = tuple(
    op.tag()
    for op in (
        DropIndex,
        DropForeignKey,
        DropUnique,
        DropCheck,
        CreateTable,
        AddColumn,
        AlterColumnType,
        SetDefault,
        SetNullable,
        AddUnique,
        AddCheck,
        AddForeignKey,
        SwapFkAction,
        CreateIndex,
        DropColumn,
        DropTable,
    )
)


def _operations(
    diffs: list[Any], conventions: Conventions = DEFAULT
) -> tuple[list[dict[str, Any]], list[str]]:
    ops: list[dict[str, Any]] = []
    notes: list[str] = []
    removed_columns: dict[str, list[sa.Column[Any]]] = {}
    removed_fks: dict[tuple[str, str], Any] = {}
    added_fks: set[tuple[str, str]] = set()
    renamed: set[tuple[str, str]] = set()
    flat: list[Any] = []
    for diff in diffs:
        flat.extend(diff if isinstance(diff, list) else [diff])
    for diff in flat:
        kind = diff[0]
        if kind == "remove_column":
            removed_columns.setdefault(diff[2], []).append(diff[3])
        elif kind in ("remove_fk", "add_fk"):
            target = _fk_target(diff[1])
            if target is not None and kind == "remove_fk":
                removed_fks[target[:2]] = diff[1]
            elif target is not None:
                added_fks.add(target[:2])
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
            checks = [_check(ck, notes) for ck in table.constraints]
            if any(checks):
                op["checks"] = [c for c in checks if c]
            indexes = [_index(i) for i in sorted(table.indexes, key=lambda i: str(i.name))]
            if indexes:
                op["indexes"] = indexes
            ops.append(op)
        elif kind == "remove_table":
            ops.append({"op": DropTable.tag(), "table": diff[1].name})
            notes.append(
                f"{diff[1].name} is in the schema but not in the models: dropped with its rows "
                "kept aside (keep_data: false drops them)"
            )
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
        elif kind == "remove_column":
            if (diff[2], diff[3].name) not in renamed:
                ops.append({"op": DropColumn.tag(), "table": diff[2], "column": diff[3].name})
                notes.append(
                    f"{diff[2]}.{diff[3].name} is in the schema but not in the models: dropped "
                    "with its values kept aside (keep_data: false drops them)"
                )
        elif kind == "add_index":
            index = diff[1]
            ops.append({"op": CreateIndex.tag(), "table": index.table.name, **_index(index)})
        elif kind == "remove_index":
            index = diff[1]
            ops.append({"op": DropIndex.tag(), "table": index.table.name, "name": index.name})
        elif kind in ("add_constraint", "remove_constraint"):
            _constraint(diff, ops, notes)
        elif kind == "add_named_check" or kind == "remove_named_check":
            if kind == "add_named_check":
                ops.append({"op": AddCheck.tag(), "table": diff[1], **diff[2]})
            else:
                ops.append({"op": DropCheck.tag(), "table": diff[1], "name": diff[2]})
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
        elif kind == "modify_nullable":
            table, column, new = diff[2], diff[3], diff[6]
            ops.append(
                {"op": SetNullable.tag(), "table": table, "column": column, "nullable": bool(new)}
            )
            if not new:
                notes.append(
                    f"{table}.{column} becomes NOT NULL: add `fill: <value>` to the "
                    "set_nullable if rows may hold NULL (the pre-checks refuse them otherwise)"
                )
        elif kind == "modify_default":
            table, column, existing, new = diff[2], diff[3], diff[4], diff[6]
            value, understood = _default_of(new, existing.get("existing_type"))
            if understood:
                ops.append(
                    {"op": SetDefault.tag(), "table": table, "column": column, "default": value}
                )
            else:
                notes.append(f"{table}.{column}: default {new!r} is not expressible")
        elif kind == "add_fk":
            fk = diff[1]
            target = _fk_target(fk)
            old = removed_fks.get(target[:2]) if target else None
            if old is not None and target is not None:
                was = ACTIONS.get(old.ondelete.upper() if old.ondelete else None, "no_action")
                to = ACTIONS.get(fk.ondelete.upper() if fk.ondelete else None, "no_action")
                ops.append(
                    {
                        "op": SwapFkAction.tag(),
                        "table": target[0],
                        "column": target[1],
                        "from": was,
                        "to": to,
                    }
                )
            elif target is not None:
                table, column, ref_table, ref_column = target
                ops.append(
                    {
                        "op": AddForeignKey.tag(),
                        "table": table,
                        "name": fk.name or conventions.fk_name(table, column, ref_table),
                        "columns": [column],
                        "references": {"table": ref_table, "columns": [ref_column]},
                        "on_delete": ACTIONS.get(
                            fk.ondelete.upper() if fk.ondelete else None, "no_action"
                        ),
                    }
                )
            else:
                notes.append(f"{fk.parent.name}: a new foreign key {fk.name} (not expressible)")
        elif kind == "remove_fk":
            fk = diff[1]
            target = _fk_target(fk)
            if target is not None and target[:2] in added_fks:
                continue  # the other half of an action swap
            if fk.name:
                ops.append({"op": DropForeignKey.tag(), "table": fk.parent.name, "name": fk.name})
            else:
                notes.append(f"{fk.parent.name}: an unnamed foreign key to drop (name it)")
        else:
            where = next((str(d) for d in diff[1:4] if isinstance(d, str) and d), "")
            notes.append(f"{kind} {where}".strip() + ": not expressible in a spec yet")
    ops.sort(key=lambda o: ORDER.index(o["op"]) if o["op"] in ORDER else len(ORDER))
    return ops, notes


def _check(ck: Any, notes: list[str]) -> dict[str, Any] | None:
    """A model's named CHECK constraint as the spec's ``{name, expression}``."""
    if not isinstance(ck, sa.CheckConstraint):
        return None
    if not isinstance(ck.name, str) or not ck.name:
        notes.append(f"{ck.table.name}: an unnamed CHECK ({ck.sqltext}) left out: name it")
        return None
    return {"name": ck.name, "expression": _expression(str(ck.sqltext))}


def _expression(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text.replace('"', "")


def _constraint(diff: Any, ops: list[dict[str, Any]], notes: list[str]) -> None:
    kind, constraint = diff[0], diff[1]
    table = constraint.table.name
    if not isinstance(constraint, sa.UniqueConstraint):
        notes.append(f"{table}: {kind} {constraint!r}: not expressible in a spec yet")
    elif not constraint.name:
        notes.append(f"{table}: an unnamed unique constraint ({kind}): name it")
    elif kind == "add_constraint":
        columns = [c.name for c in constraint.columns]
        ops.append(
            {"op": AddUnique.tag(), "table": table, "name": constraint.name, "columns": columns}
        )
    else:
        ops.append({"op": DropUnique.tag(), "table": table, "name": constraint.name})


def _default_of(default: Any, type_: Any) -> tuple[Any, bool]:
    """The spec's default of a server default (None: none), and whether it is understood."""
    column = sa.Column("x", type_ if type_ is not None else sa.Text(), server_default=default)
    return _default(column)


def autogenerate(
    project: Project, scratch_url: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The spec operations that would bring the specs' head to the models, and notes on what
    could not be written as one (renames as questions)."""
    from alembic.autogenerate import compare_metadata

    def compare(conn: Connection, metadata: Any) -> list[Any]:
        context = _context(conn, project.foreign_tables)
        diffs = list(compare_metadata(context, metadata))
        foreign = project.foreign_tables
        return (
            diffs + _default_diffs(conn, metadata, foreign) + _check_diffs(conn, metadata, foreign)
        )

    diffs = _at_head(project, scratch_url, compare)
    operations, notes = _operations(diffs, project.conventions)
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
