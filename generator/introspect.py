"""``schemagen inspect``: the baseline spec of a live database (PostgreSQL or SQLite).

Every table becomes a ``create_table`` of the current spec format: columns with their types
mapped to the vocabulary, nullability, defaults normalised (``now()`` and friends are
``now``), primary keys (identity or not), single-column uniques and foreign keys with their
ON DELETE action, serial columns (PostgreSQL), CHECK constraints whose expression is of the
expression grammar (generator/expr.py), indexes with their predicates. What the spec cannot say
(a type outside the vocabulary, a CHECK outside the grammar, a multi-column unique or foreign
key, an expression index) is a problem naming ``table.column``; nothing is written then.

The convention the database's own constraint names follow is inferred (PostgreSQL's
defaults, the tool's defaults, ...), the one most names follow; a name that does not follow it
is written into the spec (``primary_key_name``, ``unique_name``, ``references.name``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection

from generator import dialects, expr, version_table
from generator import spec as spec_module
from generator.coltypes import VOCABULARY, parse_type
from generator.config import is_foreign
from generator.conventions import Conventions
from generator.ops.create_table import CreateTable

# Name templates tried for each kind, the project's own first.
CANDIDATES = {
    "primary_key": ["pk_{table}", "{table}_pkey", "{table}_pk", "pk_{table}_id"],
    "foreign_key": [
        "fk_{table}_{column}_{referred_table}",
        "{table}_{column}_fkey",
        "fk_{table}_{column}",
        "{table}_{column}_fk",
        "fk_{table}_{referred_table}",
    ],
    "unique": ["uq_{table}_{column}", "{table}_{column}_key", "{table}_{column}_uq", "uq_{column}"],
}
NOW_DEFAULTS = {
    "now()",
    "current_timestamp",
    "transaction_timestamp()",
    "(current_timestamp)",
    "datetime('now')",
    "(datetime('now'))",
}
PG_TYPES = {
    "integer": "integer",
    "bigint": "bigint",
    "double precision": "float",
    "text": "text",
    "boolean": "boolean",
    "timestamp with time zone": "timestamptz",
}
SQLITE_TYPES = {
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "FLOAT": "float",
    "TEXT": "text",
    "BOOLEAN": "boolean",
    "DATETIME": "timestamptz",
}
ACTIONS = dialects.FK_ACTION_OF_SQL


class InspectError(Exception):
    """What the spec cannot say about this database; every problem, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Inspected:
    tables: list[dict[str, Any]]
    # The convention the database's constraint names follow, per kind that has names.
    naming: dict[str, str] = field(default_factory=dict)

    def spec(self, change_id: str, after: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": change_id}
        if after:
            out["after"] = after
        out["description"] = (
            "The existing schema, as `schemagen inspect` read it from the database.\n"
        )
        out["operations"] = [{"op": CreateTable.tag(), **t} for t in self.tables]
        return out


def _type(dialect: str, text: str, enums: dict[str, str] | None = None) -> str | None:
    """The vocabulary's name of a catalogue type; ``enums``: the spec's ``enum(...)`` of the
    PostgreSQL enum types, and on SQLite of the columns a ``<column>_is_<type> IN`` CHECK
    holds, by the catalogue's type name or column name (see :func:`_enums`)."""
    if enums and text in enums:
        return enums[text]
    if dialect == "postgresql":
        if text in PG_TYPES:
            return PG_TYPES[text]
        m = re.fullmatch(r"numeric\((\d+),(\d+)\)", text)
        if m:
            return f"decimal({m[1]},{m[2]})"
        m = re.fullmatch(r"character varying\((\d+)\)", text)
        return f"varchar({m[1]})" if m else None
    compact = text.upper().replace(" ", "")
    if compact in SQLITE_TYPES:
        return SQLITE_TYPES[compact]
    m = re.fullmatch(r"NUMERIC\((\d+),(\d+)\)", compact)
    if m:
        return f"decimal({m[1]},{m[2]})"
    m = re.fullmatch(r"VARCHAR\((\d+)\)", compact)
    return f"varchar({m[1]})" if m else None


def default_value(kind: str, text: str | None) -> tuple[Any, bool]:
    """(the spec's default, understood); None for no default."""
    if text is None:
        return None, True
    value = text.strip()
    if kind == "timestamptz":
        return "now", value.lower().replace(" ", "") in NOW_DEFAULTS
    if kind == "boolean":
        found = {"true": True, "1": True, "false": False, "0": False}.get(value.lower())
        return found, found is not None
    m = re.fullmatch(r"'((?:[^']|'')*)'(?:::[a-z_ ]+)?", value)
    if m:
        literal = m[1].replace("''", "'")
        if kind in ("varchar", "text", "enum"):
            return literal, True
        value = literal
    if kind in ("integer", "bigint") and re.fullmatch(r"-?\d+", value):
        return int(value), True
    if kind in ("decimal", "float") and re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value):
        number = float(value)
        return (int(number) if number.is_integer() and "." not in value else number), True
    return None, False


def _predicate(text: str) -> str:
    """``(deleted_at IS NOT NULL)`` / ``"x" is null`` -> the spec's ``x IS NULL`` form."""
    return re.sub(r"\s+", " ", text.replace('"', "").replace("(", "").replace(")", "")).strip()


def _columns(conn: Connection, table: str) -> list[tuple[str, str, bool, str | None, bool]]:
    """(name, catalogue type, nullable, default expression, identity) in column order."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
                "pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '' "
                "FROM pg_attribute AS a LEFT JOIN pg_attrdef AS d "
                "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum"
            ),
            {"t": f'"{table}"'},
        )
        return [(r[0], r[1], bool(r[2]), r[3], bool(r[4])) for r in rows]
    rows = conn.exec_driver_sql(
        'SELECT name, type, NOT "notnull", dflt_value FROM pragma_table_info(?) ORDER BY cid',
        (table,),
    )
    return [(r[0], r[1], bool(r[2]), r[3], False) for r in rows]


def _predicates(conn: Connection, table: str) -> dict[str, str]:
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index AS i "
                "JOIN pg_class AS c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = to_regclass(:t) AND i.indpred IS NOT NULL"
            ),
            {"t": f'"{table}"'},
        )
        return {r[0]: _predicate(r[1]) for r in rows}
    out = {}
    for name, sql in conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL",
        (table,),
    ):
        at = sql.upper().find(" WHERE ")
        if at >= 0:
            out[name] = _predicate(sql[at + 7 :])
    return out


def _pg_enums(conn: Connection) -> dict[str, str]:
    """PostgreSQL: the enum types of the current schema as the spec writes them, by name."""
    rows = conn.execute(
        sa.text(
            "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type AS t "
            "JOIN pg_namespace AS n ON n.oid = t.typnamespace "
            "JOIN pg_enum AS e ON e.enumtypid = t.oid "
            "WHERE n.nspname = current_schema() GROUP BY t.typname"
        )
    )
    return {str(r[0]): f"enum({r[0]}: {', '.join(r[1])})" for r in rows}


def _sqlite_enums(
    columns: list[tuple[str, str, bool, str | None, bool]], checks: list[tuple[str | None, str]]
) -> dict[str, str]:
    """SQLite: the text columns held to a list of labels by the CHECK an enum column has
    (``<column>_is_<type>``: ``"column" IN ('a', 'b')``), as the spec writes their type, by
    the column's name. A CHECK of another form is left to the checks."""
    out: dict[str, str] = {}
    for column, catalogue, *_ in columns:
        if catalogue.upper() != "TEXT":
            continue
        for name, sql in checks:
            if not name or not name.startswith(f"{column}_is_"):
                continue
            m = re.fullmatch(
                rf'\s*\(?\s*"?{re.escape(column)}"?\s+IN\s*\(([^()]*)\)\s*\)?\s*', sql, re.I
            )
            labels = re.findall(r"'([a-z0-9_]+)'", m[1]) if m else []
            type_name = name[len(f"{column}_is_") :]
            spelled = f"enum({type_name}: {', '.join(labels)})"
            if labels and m and m[1].count(",") == len(labels) - 1:
                try:
                    parse_type(spelled)
                except ValueError:
                    continue
                out[column] = spelled
    return out


def _checks(conn: Connection, insp: Any, table: str) -> list[tuple[str | None, str]]:
    """(name, SQL) of each CHECK constraint of ``table``."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = to_regclass(:t) AND contype = 'c' ORDER BY conname"
            ),
            {"t": f'"{table}"'},
        )
        return [(r[0], r[1]) for r in rows]
    return [(c.get("name"), c["sqltext"]) for c in insp.get_check_constraints(table)]


def _foreign_keys(conn: Connection, insp: Any, table: str) -> list[dict[str, Any]]:
    if conn.dialect.name != "sqlite":
        return list(insp.get_foreign_keys(table))
    # SQLite's own account: SQLAlchemy's misses the action of a column-level REFERENCES.
    by_id: dict[int, dict[str, Any]] = {}
    for row in conn.exec_driver_sql(
        'SELECT id, "from", "table", "to", on_delete FROM pragma_foreign_key_list(?) '
        "ORDER BY id, seq",
        (table,),
    ):
        fk = by_id.setdefault(
            row[0],
            {
                "name": None,
                "constrained_columns": [],
                "referred_table": row[2],
                "referred_columns": [],
                "options": {"ondelete": row[4]},
            },
        )
        fk["constrained_columns"].append(row[1])
        fk["referred_columns"].append(row[3])
    return list(by_id.values())


def _order(tables: dict[str, set[str]]) -> list[str]:
    """Parents before children (a table's referred tables first), else by name."""
    out: list[str] = []
    todo = dict(tables)
    while todo:
        ready = sorted(t for t, deps in todo.items() if not (deps - {t}) - set(out))
        if not ready:  # a cycle: the spec cannot declare it; keep going by name
            ready = sorted(todo)[:1]
        for name in ready:
            out.append(name)
            del todo[name]
    return out


def _infer(
    samples: dict[str, list[tuple[str, dict[str, str]]]], current: Conventions
) -> dict[str, str]:
    """Per kind, the convention most of the database's names follow (the project's own
    first on a tie); the names that do not follow it are written into the spec."""
    naming: dict[str, str] = {}
    for kind, found in samples.items():
        if not found:
            continue
        mine = getattr(current, kind)
        candidates = [mine, *(c for c in CANDIDATES[kind] if c != mine)]
        naming[kind] = max(candidates, key=lambda c: sum(c.format(**v) == n for n, v in found))
    return naming


def _check_expression(dialect: str, text: str) -> str | None:
    """A CHECK's SQL (``CHECK ((n > 0))`` on PostgreSQL, ``"n" > 0`` on SQLite) as the spec's
    expression, or None when it is outside the grammar."""
    body = text.strip()
    m = re.fullmatch(r"CHECK\s*\((.*)\)(\s+NOT VALID)?", body, flags=re.S)
    if m:
        body = m[1]
    if dialect == "postgresql":  # how PostgreSQL deparses what the grammar renders
        body = re.sub(r"\bchar_length\(", "length(", body)
    try:
        return expr.canonical(expr.parse(body))
    except expr.ExprError:
        return None


def inspect_database(
    conn: Connection, conventions: Conventions, foreign_tables: tuple[str, ...] = ()
) -> Inspected:
    """The tables of ``conn``'s schema as the spec declares them; InspectError if the spec
    cannot say something about them."""
    dialect = conn.dialect.name
    insp = sa.inspect(conn)
    skip = {"alembic_version", version_table.get()}
    names = [
        t for t in insp.get_table_names() if t not in skip and not is_foreign(t, foreign_tables)
    ]
    pg_enums = _pg_enums(conn) if dialect == "postgresql" else {}
    problems: list[str] = []
    samples: dict[str, list[tuple[str, dict[str, str]]]] = {k: [] for k in CANDIDATES}
    tables: dict[str, dict[str, Any]] = {}
    depends: dict[str, set[str]] = {}
    names_of: dict[str, dict[str, Any]] = {}
    for table in names:
        found: dict[str, Any] = {"unique": {}, "foreign_key": {}}
        names_of[table] = found
        pk = insp.get_pk_constraint(table)
        pk_columns = list(pk.get("constrained_columns") or [])
        if pk.get("name"):
            samples["primary_key"].append((str(pk["name"]), {"table": table}))
            found["primary_key"] = str(pk["name"])
        uniques: set[str] = set()
        if dialect == "sqlite":  # column-level UNIQUE too (SQLAlchemy reads table-level only)
            for (column_name,) in conn.exec_driver_sql(
                "SELECT min(ii.name) FROM pragma_index_list(?) AS il, pragma_index_info(il.name)"
                " AS ii WHERE il.origin = 'u' GROUP BY il.name HAVING count(*) = 1",
                (table,),
            ):
                uniques.add(column_name)
        for uq in insp.get_unique_constraints(table):
            cols = uq["column_names"]
            if len(cols) != 1:
                problems.append(
                    f"{table}: unique constraint {uq.get('name')} on {', '.join(cols)}: a "
                    "spec declares single-column uniques only (a unique index can cover several)"
                )
                continue
            uniques.add(cols[0])
            if uq.get("name"):
                samples["unique"].append((str(uq["name"]), {"table": table, "column": cols[0]}))
                found["unique"][cols[0]] = str(uq["name"])
        references: dict[str, dict[str, Any]] = {}
        depends[table] = set()
        for fk in _foreign_keys(conn, insp, table):
            cols, ref_cols = fk["constrained_columns"], fk["referred_columns"]
            if len(cols) != 1:
                problems.append(
                    f"{table}: foreign key {fk.get('name')} on {', '.join(cols)}: a spec "
                    "declares single-column foreign keys only"
                )
                continue
            action = (fk.get("options") or {}).get("ondelete")
            action = action.upper() if isinstance(action, str) else None
            if action not in ACTIONS:
                problems.append(f"{table}.{cols[0]}: ON DELETE {action} is not supported")
                continue
            ref: dict[str, Any] = {"table": fk["referred_table"], "column": ref_cols[0]}
            if ACTIONS[action] != "no_action":
                ref["on_delete"] = ACTIONS[action]
            references[cols[0]] = ref
            depends[table].add(fk["referred_table"])
            if fk.get("name"):
                found["foreign_key"][cols[0]] = str(fk["name"])
                samples["foreign_key"].append(
                    (
                        str(fk["name"]),
                        {"table": table, "column": cols[0], "referred_table": fk["referred_table"]},
                    )
                )
        checks: list[dict[str, Any]] = []
        table_columns = _columns(conn, table)
        if dialect == "sqlite":
            enums = _sqlite_enums(table_columns, _checks(conn, insp, table))
            typename = {name: name for name, *_ in table_columns if name in enums}
        else:
            enums, typename = pg_enums, {name: catalogue for name, catalogue, *_ in table_columns}
        typed = {
            check[0]
            for name, catalogue, *_ in table_columns
            if (kind := _type(dialect, typename.get(name, catalogue), enums))
            and (check := dialects.type_check(name, parse_type(kind), dialect))
        }
        for name, sql in _checks(conn, insp, table):
            if name in typed:  # SQLite's CHECK holding a uuid or json column to its form
                continue
            expression = _check_expression(dialect, sql) if name else None
            if expression is None:
                problems.append(
                    f"{table}: CHECK constraint {name or sql}: "
                    + ("a spec's check needs a name" if not name else f"{sql!r} is not ")
                    + ("" if not name else "of the expression grammar (docs/authoring.md)")
                )
                continue
            checks.append({"name": name, "expression": expression})
        columns: list[dict[str, Any]] = []
        for name, catalogue, nullable, default_text, identity in table_columns:
            where = f"{table}.{name}"
            kind = _type(dialect, typename.get(name, catalogue), enums)
            if kind is None:
                problems.append(
                    f"{where}: type {catalogue!r} is not in the vocabulary ({VOCABULARY})"
                )
                continue
            serial = False
            if default_text and default_text.startswith("nextval("):
                sequence = f"{table}_{name}_seq"
                if default_text != f"nextval('{sequence}'::regclass)" or not (
                    name in pk_columns and len(pk_columns) == 1 and kind in ("integer", "bigint")
                ):
                    problems.append(
                        f"{where}: default {default_text}: a spec's serial column is an integer "
                        f"or bigint single-column primary key with its sequence {sequence}"
                    )
                    continue
                serial, default_text = True, None
            value, understood = default_value(kind.split("(")[0], default_text)
            if not understood:
                problems.append(
                    f"{where}: default {default_text!r} is not a literal of type {kind} "
                    "(or now on a timestamptz)"
                )
                continue
            column: dict[str, Any] = {"name": name, "type": kind}
            is_pk = name in pk_columns
            if is_pk:
                column["primary_key"] = True
                if nullable:
                    nullable = False
            else:
                column["nullable"] = nullable
            if name in uniques:
                column["unique"] = True
            if value is not None:
                column["default"] = value
            if name in references:
                column["references"] = references[name]
            single_integer_key = is_pk and len(pk_columns) == 1 and kind in ("integer", "bigint")
            if serial:
                column["serial"] = True
            elif dialect == "postgresql":
                if identity and not (is_pk and len(pk_columns) == 1):
                    problems.append(
                        f"{where}: an identity column that is not the single-column primary key"
                    )
                    continue
                if single_integer_key and not identity:
                    column["identity"] = False
            columns.append(column)
        indexes: list[dict[str, Any]] = []
        predicates = _predicates(conn, table)
        for index in sorted(insp.get_indexes(table), key=lambda i: str(i["name"])):
            if index.get("duplicates_constraint"):
                continue
            cols = [str(c) for c in index["column_names"] if c is not None]
            if len(cols) != len(index["column_names"]):
                problems.append(f"{table}: index {index['name']} on an expression")
                continue
            entry: dict[str, Any] = {"name": index["name"], "columns": list(cols)}
            if index.get("unique"):
                entry["unique"] = True
            predicate = predicates.get(str(index["name"]))
            if predicate is not None:
                if not re.fullmatch(spec_module.WHERE_PATTERN, predicate):
                    problems.append(
                        f"{table}: index {index['name']}: predicate {predicate!r} is not "
                        f"{spec_module.ADOPTED_WHERE_HELP}"
                    )
                    continue
                entry["where"] = predicate
            indexes.append(entry)
        tables[table] = {"name": table, "columns": columns}
        if checks:
            tables[table]["checks"] = sorted(checks, key=lambda c: str(c["name"]))
        if indexes:
            tables[table]["indexes"] = indexes
    naming = _infer(samples, conventions)
    if problems:
        raise InspectError(problems)
    _name_the_odd_ones(tables, names_of, replace_conventions(conventions, naming))
    return Inspected([tables[t] for t in _order(depends)], naming)


def replace_conventions(conventions: Conventions, naming: dict[str, str]) -> Conventions:
    return dataclasses.replace(conventions, **naming)


def _name_the_odd_ones(
    tables: dict[str, dict[str, Any]], names_of: dict[str, dict[str, Any]], c: Conventions
) -> None:
    """Write into the spec each name the inferred convention would not give."""
    for table, spec in tables.items():
        found = names_of.get(table, {})
        pk = found.get("primary_key")
        if pk and pk != c.pk_name(table):
            columns = spec.pop("columns")
            spec["primary_key_name"] = pk
            spec["columns"] = columns
            if "checks" in spec:
                spec["checks"] = spec.pop("checks")
            if "indexes" in spec:
                spec["indexes"] = spec.pop("indexes")
        for column in spec["columns"]:
            uq = found.get("unique", {}).get(column["name"])
            if uq and uq != c.uq_name(table, column["name"]):
                column["unique_name"] = uq
            fk = found.get("foreign_key", {}).get(column["name"])
            ref = column.get("references")
            if fk and ref and fk != c.fk_name(table, column["name"], ref["table"]):
                ref["name"] = fk


class _Dumper(yaml.SafeDumper):
    pass


def _flow_small(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    # A column, a reference or an index on one line; a table's mapping in block style.
    flow = not any(key in data for key in ("op", "operations"))
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(dict, _flow_small)
_Dumper.add_representer(str, _text)


def to_yaml(data: dict[str, Any]) -> str:
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return "# yaml-language-server: $schema=change.schema.json\n" + body
