"""Every fact about how SQLite and PostgreSQL differ in types, literals and catalogues.

Templates branch on the dialect name; the names, types and literals they need come from
here. What a step costs on each dialect is the step's own ``risk`` (generator/ops/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Protocol

from generator import coltypes
from generator.coltypes import SqlType
from generator.state import Column, DefaultValue, Domain, Index

POSTGRESQL = "postgresql"
SQLITE = "sqlite"
DIALECTS = (POSTGRESQL, SQLITE)

FK_ACTION_SQL = {
    "cascade": "CASCADE",
    "restrict": "RESTRICT",
    "no_action": "NO ACTION",
    "set_null": "SET NULL",
    "set_default": "SET DEFAULT",
}
# The spec's action of an ON DELETE clause as a database reports it (None: no clause).
FK_ACTION_OF_SQL: dict[str | None, str] = {
    None: "no_action",
    **{sql: action for action, sql in FK_ACTION_SQL.items()},
}
# pg_constraint.confdeltype codes
PG_FK_ACTION_CODE = {
    "cascade": "c",
    "restrict": "r",
    "no_action": "a",
    "set_null": "n",
    "set_default": "d",
}


def quote_ident(name: str) -> str:
    """Double-quote an identifier (names are validated, so quoting is belt and braces): what
    the PostgreSQL and SQLite dialects' ``IdentifierPreparer.quote_identifier`` return
    (tests/generator/test_quote_ident.py compares them), without importing SQLAlchemy into
    ``generate`` (docs/ci.md: a cold check imports neither SQLAlchemy nor Alembic)."""
    return '"' + name.replace('"', '""') + '"'


class _Reference(Protocol):
    """A foreign key as fk_lock_order sees it: the table it is on, the table it references."""

    @property
    def table(self) -> str: ...

    @property
    def ref_table(self) -> str: ...


def fk_lock_order(fks: Sequence[_Reference]) -> list[str]:
    """The tables of these foreign keys, each referencing table before the tables it
    references: the order an INSERT takes them (its table, then its foreign-key checks).
    Locking them in this order up front means a concurrent writer waits instead of
    deadlocking against a lock taken half-way through the swaps."""
    parents: dict[str, set[str]] = {}
    for fk in fks:
        parents.setdefault(fk.table, set())
        parents.setdefault(fk.ref_table, set())
        if fk.ref_table != fk.table:
            parents[fk.table].add(fk.ref_table)
    children = {t: {c for c, ps in parents.items() if t in ps} for t in parents}
    order: list[str] = []
    ready = sorted(t for t, cs in children.items() if not cs)
    while ready:
        table = ready.pop(0)
        order.append(table)
        for parent in sorted(parents[table]):
            children[parent].discard(table)
            if not children[parent] and parent not in order and parent not in ready:
                ready.append(parent)
        ready.sort()
    return order + sorted(t for t in parents if t not in order)  # a cycle: the rest by name


def where_sql(index: Index, dialect: str) -> str:
    """A partial index's predicate as the dialect's SQL (generator.expr)."""
    return index.where_sql(dialect)


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_rowid_alias(column: Column, dialect: str) -> bool:
    # An INTEGER PRIMARY KEY aliases SQLite's rowid (its generated key); BIGINT would not, so
    # a generated bigint key is declared INTEGER there (it is 64-bit anyway).
    return dialect == SQLITE and column.identity


def sa_type(column: Column, dialect: str) -> str:
    """The SQLAlchemy type expression (Python source) for a column on a dialect."""
    t = column.type
    if _is_rowid_alias(column, dialect):
        return "sa.Integer()"
    if column.domain is not None and dialect == POSTGRESQL:
        # created and dropped by the change (domain_sql), never by SQLAlchemy's table events
        return (
            f"sa.dialects.postgresql.DOMAIN({column.domain.name!r}, {sa_type_of(t, dialect)}, "
            "create_type=False)"
        )
    return sa_type_of(t, dialect)


def sa_type_of(t: SqlType, dialect: str) -> str:
    pg = dialect == POSTGRESQL
    match t.kind:
        case "smallint":
            return "sa.SmallInteger()"
        case "integer":
            return "sa.Integer()"
        case "bigint":
            return "sa.BigInteger()"
        case "decimal":
            return f"sa.Numeric({t.precision}, {t.scale})"
        case "float":
            return "sa.Double()" if dialect == POSTGRESQL else "sa.Float()"
        case "varchar":
            return f"sa.String({t.length})"
        case "text":
            return "sa.Text()"
        case "boolean":
            return "sa.Boolean()"
        case "timestamptz":
            return "sa.DateTime(timezone=True)"
        case "date":
            return "sa.Date()"
        case "timestamp":
            # TIMESTAMP on SQLite, not DATETIME: the catalogue tells it from a timestamptz
            return "sa.DateTime()" if pg else "sa.TIMESTAMP()"
        case "uuid":
            # SQLite: text in the canonical form, held there by the column's CHECK
            return "sa.Uuid()" if pg else f"sa.CHAR({coltypes.UUID_LENGTH})"
        case "json":
            # PostgreSQL's dialect package is loaded whenever this runs (on a PostgreSQL
            # connection); SQLite: text, held to valid JSON by the column's CHECK (a JSON
            # declared type would have NUMERIC affinity, turning '1e5' into 100000.0)
            return "sa.dialects.postgresql.JSONB()" if pg else "sa.Text()"
        case "bytes":
            return "sa.LargeBinary()"
        case "enum":
            # PostgreSQL: the type is created and dropped by the change (runtime.enum_types),
            # never by SQLAlchemy's table events; SQLite: text held by the column's CHECK
            if not pg:
                return "sa.Text()"
            labels = ", ".join(repr(label) for label in t.labels)
            return f"sa.dialects.postgresql.ENUM({labels}, name={t.name!r}, create_type=False)"
    raise ValueError(f"no SQLAlchemy type for {t}")


def catalog_type(column: Column, dialect: str) -> str:
    """The type as the validation SQL reads it back from the database catalogue.

    PostgreSQL: ``format_type()``; SQLite: the declared type, upper-cased, spaces removed.
    """
    t = column.type
    if dialect == SQLITE:
        if _is_rowid_alias(column, dialect):
            return "INTEGER"
        return {
            "integer": "INTEGER",
            "bigint": "BIGINT",
            "decimal": f"NUMERIC({t.precision},{t.scale})",
            "float": "FLOAT",
            "varchar": f"VARCHAR({t.length})",
            "text": "TEXT",
            "boolean": "BOOLEAN",
            "timestamptz": "DATETIME",
            "smallint": "SMALLINT",
            "date": "DATE",
            "timestamp": "TIMESTAMP",
            "uuid": f"CHAR({coltypes.UUID_LENGTH})",
            "json": "TEXT",
            "bytes": "BLOB",
            "enum": "TEXT",
        }[t.kind]
    if t.kind == "enum":
        return str(t.name)
    if column.domain is not None:
        return column.domain.name
    return {
        "integer": "integer",
        "bigint": "bigint",
        "decimal": f"numeric({t.precision},{t.scale})",
        "float": "double precision",
        "varchar": f"character varying({t.length})",
        "text": "text",
        "boolean": "boolean",
        "timestamptz": "timestamp with time zone",
        "smallint": "smallint",
        "date": "date",
        "timestamp": "timestamp without time zone",
        "uuid": "uuid",
        "json": "jsonb",
        "bytes": "bytea",
    }[t.kind]


def _number(value: int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# A timestamp (without time zone) holds UTC: its `now` default, and the conversions from and
# to timestamptz, read and write the time in UTC whatever the session's TimeZone.
UTC_NOW = "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"
UTC_NOW_CATALOG = "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC'::text)"


def default_is_clock(value: DefaultValue, t: SqlType) -> bool:
    """Whether a column's default is the current time (`now`): not a constant, which SQLite's
    ALTER TABLE ADD COLUMN refuses."""
    return t.kind == "timestamptz" or (t.kind == "timestamp" and value == "now")


def default_sql(value: DefaultValue, t: SqlType, dialect: str) -> str:
    """The DEFAULT clause's expression as written in DDL."""
    if t.kind == "timestamptz" or (t.kind == "timestamp" and value == "now"):
        # timestamp: the time in UTC (SQLite's CURRENT_TIMESTAMP is UTC already)
        return UTC_NOW if t.kind == "timestamp" and dialect == POSTGRESQL else "CURRENT_TIMESTAMP"
    if isinstance(value, bool):
        if dialect == SQLITE:
            return "1" if value else "0"
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    return sql_string(value)


def catalog_default(column: Column, dialect: str) -> str | None:
    """The default as the catalogue reports it (``pg_get_expr`` / ``dflt_value``)."""
    value, t = column.default, column.type
    if column.serial and dialect != SQLITE:
        return f"nextval('{column.serial}'::regclass)"
    if value is None:
        return None
    written = default_sql(value, t, dialect)
    if dialect == SQLITE or t.kind in ("timestamptz", "boolean"):
        return written
    if written == UTC_NOW:
        return UTC_NOW_CATALOG
    # PostgreSQL deparses a string as a literal cast to the column's bare type name (no
    # length): 'USD'::character varying.
    if isinstance(value, str):
        return f"{written}::{catalog_type(column, dialect).split('(')[0]}"
    return _pg_number_default(value)


def _pg_number_default(value: int | float) -> str:
    """How ``pg_get_expr`` shows a numeric literal default, whatever the column's type.

    The literal keeps its own type (integer, bigint or numeric, by its value) and the cast
    to the column's type is implicit, so it is not shown: -1 is '-1'::integer on a bigint
    or float column too. A float is read as numeric, which prints without an exponent
    (1e-05 is 0.00001); a numeric needs no label only when it is non-negative and has a
    decimal point.
    """
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return str(value) if value >= 0 else f"'{value}'::integer"
        if -(2**63) <= value < 2**63:
            return f"'{value}'::bigint"
        return f"'{value}'::numeric"
    text = format(Decimal(repr(value)), "f")
    if Decimal(text) == 0:
        text = text.lstrip("-")  # numeric has no negative zero
    if "." in text and not text.startswith("-"):
        return text
    return f"'{text}'::numeric"


def column_ddl_type(column: Column, dialect: str) -> str:
    """A column's type as written in DDL: its domain on PostgreSQL if it has one."""
    if column.domain is not None and dialect == POSTGRESQL:
        return quote_ident(column.domain.name)
    return ddl_type(column.type, dialect)


def _domain_exists(name: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM pg_type AS t JOIN pg_namespace AS n ON n.oid = t.typnamespace "
        f"WHERE n.nspname = current_schema() AND t.typname = {sql_string(name)} "
        "AND t.typtype = 'd')"
    )


def domain_create_sql(domain: Domain) -> str:
    """PostgreSQL: the domain, created if missing, without its constraint (re-runnable)."""
    return (
        f"DO $sg$ BEGIN IF NOT {_domain_exists(domain.name)} THEN "
        f"CREATE DOMAIN {quote_ident(domain.name)} AS {domain.base}; END IF; END $sg$"
    )


def domain_add_sql(domain: Domain) -> str:
    """PostgreSQL: ALTER DOMAIN ADD its CHECK NOT VALID (catalogue only: every row written
    from then on is checked; see state.Domain)."""
    name, con = quote_ident(domain.name), quote_ident(domain.constraint)
    return f"ALTER DOMAIN {name} ADD CONSTRAINT {con} CHECK ({domain.check_sql}) NOT VALID"


def domain_unconstrain_sql(domain: Domain) -> str:
    """PostgreSQL: the domain without its CHECK, for the expand's ADD COLUMN of a shadow of it
    (PostgreSQL 15 rewrites the table to add a column of a constrained domain, even a NOT VALID
    constraint; put back by domain_add_sql in the same transaction)."""
    return (
        f"ALTER DOMAIN {quote_ident(domain.name)} DROP CONSTRAINT IF EXISTS "
        f"{quote_ident(domain.constraint)}"
    )


def domain_constraint_sql(domain: Domain) -> str:
    """PostgreSQL: the domain's CHECK, added NOT VALID if missing (re-runnable)."""
    add = domain_add_sql(domain)
    return (
        "DO $sg$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint AS c JOIN pg_type AS t "
        "ON t.oid = c.contypid JOIN pg_namespace AS n ON n.oid = t.typnamespace WHERE "
        f"n.nspname = current_schema() AND t.typname = {sql_string(domain.name)} AND "
        f"c.conname = {sql_string(domain.constraint)}) THEN {add}; END IF; END $sg$"
    )


def domain_drop_sql(domain: Domain) -> str:
    """PostgreSQL: drop the domain once no column uses it (a dropped column's type is 0)."""
    return (
        "DO $sg$ DECLARE d oid; BEGIN SELECT t.oid INTO d FROM pg_type AS t JOIN pg_namespace "
        "AS n ON n.oid = t.typnamespace WHERE n.nspname = current_schema() AND t.typname = "
        f"{sql_string(domain.name)} AND t.typtype = 'd'; IF d IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM pg_attribute WHERE atttypid = d) THEN DROP DOMAIN "
        f"{quote_ident(domain.name)}; END IF; END $sg$"
    )


def ddl_type(t: SqlType, dialect: str) -> str:
    """The type as written in DDL, e.g. in PostgreSQL's ``USING col::<type>``."""
    if t.kind == "float":
        return "double precision" if dialect == POSTGRESQL else "FLOAT"
    if dialect == POSTGRESQL:
        if t.kind == "enum":
            return str(t.name)
        return {
            "timestamptz": "timestamp with time zone",
            "timestamp": "timestamp without time zone",
            "json": "jsonb",
            "bytes": "bytea",
            "varchar": f"varchar({t.length})",
            "decimal": f"numeric({t.precision},{t.scale})",
        }.get(t.kind, t.kind)
    return catalog_type(Column("_", t, True), dialect)


# A uuid in its canonical form, the only one SQLite's column CHECK accepts and the form
# PostgreSQL writes: 8-4-4-4-12 lowercase hexadecimal digits.
UUID_REGEX = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UUID_GLOB = "-".join("[0-9a-f]" * n for n in (8, 4, 4, 4, 12))

# JSON text as PostgreSQL's jsonb reads it, tested without a cast (a cast that fails aborts
# the query; PostgreSQL 15 has no non-raising test). Strings become \x01 and other scalars
# \x02, then arrays and objects of those reduce to \x02 until nothing changes: the text is
# JSON when a single value is left. jsonb refuses \u0000 and an unpaired surrogate escape.
_WS = r"[ \t\n\r]*"
_JSON_STRING = (
    '"([^"\\\\' + "' || chr(1) || '-' || chr(31) || '" + ']|\\\\(["\\\\/bfnrt]'
    "|u(?!0000)(?![dD][89a-fA-F])[0-9a-fA-F]{4}"
    '|u[dD][89abAB][0-9a-fA-F]{2}\\\\u[dD][c-fC-F][0-9a-fA-F]{2}))*"'
)
_JSON_SCALAR = "-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][+-]?[0-9]+)?|true|false|null"
_JSON_VALUE = "[' || chr(1) || chr(2) || ']"
_JSON_ARRAY = f"\\[{_WS}({_JSON_VALUE}({_WS},{_WS}{_JSON_VALUE})*)?{_WS}\\]"
_JSON_MEMBER = f"' || chr(1) || '{_WS}:{_WS}{_JSON_VALUE}"
_JSON_OBJECT = f"\\{{{_WS}({_JSON_MEMBER}({_WS},{_WS}{_JSON_MEMBER})*)?{_WS}\\}}"


# Values nested this deep or less are decided without running the recursive query.
_JSON_INLINE_DEPTH = 3


def _json_reduce(text: str) -> str:
    return (
        f"regexp_replace(regexp_replace({text}, '{_JSON_ARRAY}', chr(2), 'g'),\n"
        f"        '{_JSON_OBJECT}', chr(2), 'g')"
    )


def _not_json_pg(col: str) -> str:
    """The WHERE condition of the rows whose ``col`` is not JSON jsonb reads (see above).
    Measured on 100,000 small objects: about 3 s, where the recursive query alone took 6.6 s and a
    plain ``::jsonb`` of every row (which would stop at the first bad one) 0.27 s."""
    tokens = (
        f"regexp_replace(regexp_replace({col}, '{_JSON_STRING}', chr(1), 'g'),\n"
        f"        '{_JSON_SCALAR}', chr(2), 'g')"
    )
    inline = tokens
    for _ in range(_JSON_INLINE_DEPTH):
        inline = _json_reduce(inline)
    single = f"~ ('^{_WS}{_JSON_VALUE}{_WS}$')"
    return (
        f"{col} IS NOT NULL AND (strpos({col}, chr(1)) + strpos({col}, chr(2)) > 0 OR (\n"
        f"    NOT {inline} {single}\n"
        "    AND NOT EXISTS (\n"
        f"    WITH RECURSIVE r(s, last) AS (\n"
        f"        SELECT {tokens}, NULL::text\n"
        f"        UNION ALL\n"
        f"        SELECT {_json_reduce('r.s')}, r.s FROM r WHERE r.s IS DISTINCT FROM r.last\n"
        f"    )\n"
        f"    SELECT 1 FROM r WHERE r.s {single}\n"
        f")))"
    )


def type_check(column: str, t: SqlType, dialect: str) -> tuple[str, str] | None:
    """(name, SQL) of the CHECK that holds a SQLite column to its type's form: a uuid in its
    canonical form, json valid JSON (SQLite stores both as text). None elsewhere: PostgreSQL's
    uuid and jsonb refuse a malformed value themselves. NULL passes."""
    if dialect != SQLITE:
        return None
    col = quote_ident(column)
    if t.kind == "uuid":
        return f"{column}_is_uuid", f"{col} GLOB '{UUID_GLOB}'"
    if t.kind == "json":
        # json_valid(NULL) is 0 before SQLite 3.45: NULL is let through explicitly
        return f"{column}_is_json", f"{col} IS NULL OR json_valid({col})"
    if t.kind == "enum":
        return f"{column}_is_{t.name}", f"{col} IN ({labels_sql(t)})"
    return None


def labels_sql(t: SqlType) -> str:
    """An enum's labels as a list of SQL strings: 'a', 'b'."""
    return ", ".join(sql_string(label) for label in t.labels)


def _date_and_time(old: SqlType, new: SqlType) -> bool:
    """A conversion between date and a timestamp type: its values change form."""
    return old.family == new.family == "temporal" and (old.kind == "date") != (new.kind == "date")


def sqlite_batch_type(step: TypeChange) -> str:
    """The ``type_`` of SQLite's batch alter_column. Alembic CASTs a value whose SQLAlchemy
    type changes affinity, and a CAST to DATE or TIMESTAMP is a NUMERIC cast in SQLite
    ('2020-01-02' becomes 2020): between date and a timestamp the old type is kept as the
    variant's base (no CAST) and sqlite_convert_sql converts the values."""
    new = sa_type(replace(step.column, type=step.to), SQLITE)
    if _date_and_time(step.column.type, step.to):
        return f'{sa_type(step.column, SQLITE)}.with_variant({new}, "sqlite")'
    return new


def sqlite_convert_sql(step: TypeChange) -> str | None:
    """The UPDATE that gives SQLite's values their new form, run on the old table just before
    the rebuild copies it: a date as 'YYYY-MM-DD', a timestamp as 'YYYY-MM-DD HH:MM:SS' (in
    UTC, as CURRENT_TIMESTAMP writes it). Between timestamp and timestamptz nothing changes."""
    if not _date_and_time(step.column.type, step.to):
        return None
    col = quote_ident(step.column.name)
    form = "date" if step.to.kind == "date" else "datetime"
    return (
        f"UPDATE {quote_ident(step.table_name)} SET {col} = {form}({col}) WHERE {col} IS NOT NULL"
    )


def _within(digits: int, scale: int) -> str:
    """The largest value of decimal(digits + scale, scale) as SQL text: 10^digits - 10^-scale
    (``99999999.9999`` for decimal(12,4))."""
    return "9" * digits + ("." + "9" * scale if scale else "") if digits else "0." + "9" * scale


def _inside(col: str, low: str, high: str, strict_low: bool = False) -> str:
    """``col`` inside [low, high) (or (low, high)); NOT of it flags NaN too on PostgreSQL,
    where NaN sorts above every number."""
    return f"{col} {'>' if strict_low else '>='} {low} AND {col} < {high}"


def misfit_sql(old: SqlType, new: SqlType, column: str, dialect: str) -> str | None:
    """The WHERE condition of the rows whose ``column`` (of type ``old``) would not fit ``new``
    unchanged, or None when every value of ``old`` does (see coltypes.narrows). NULL never
    matches. Cheap range tests come first, so that the exact test runs on few rows."""
    if not coltypes.narrows(old, new):
        return None
    col = quote_ident(column)
    pg = dialect == POSTGRESQL
    if new.kind == "varchar":
        text = f"{col}::text" if pg and old.kind in ("json", "enum") else col
        return f"length({text}) > {new.length}"
    if new.kind == "enum":
        return f"{col} NOT IN ({labels_sql(new)})"
    if new.kind == "uuid":
        return f"NOT ({col} ~ '{UUID_REGEX}')" if pg else f"NOT ({col} GLOB '{UUID_GLOB}')"
    if new.kind == "json":
        return _not_json_pg(col) if pg else f"{col} IS NOT NULL AND NOT json_valid({col})"
    if new.kind == "date":
        # a time of day other than midnight (in UTC) would be lost
        if pg:
            utc = f"({col} AT TIME ZONE 'UTC')" if old.kind == "timestamptz" else col
            return f"{utc} <> date_trunc('day', {utc})"
        return f"{col} IS NOT NULL AND strftime('%H:%M:%f', {col}) IS NOT '00:00:00.000'"
    if new.kind == "float":
        if old.kind == "bigint":
            bound = coltypes.FLOAT_EXACT_INTEGER
            return f"NOT ({col} >= -{bound} AND {col} <= {bound})"
        # A decimal with at most 15 significant digits survives a double; beyond them the
        # value must read back the same (PostgreSQL converts a double to numeric with 15).
        limit = format(Decimal(10) ** (coltypes.FLOAT_DIGITS - (old.scale or 0)), "f")
        back = f"{col}::double precision::numeric" if pg else f"CAST({col} AS REAL)"
        return f"NOT ({col} > -{limit} AND {col} < {limit})\n    AND {back} <> {col}"
    if new.kind in coltypes.INTEGER_KINDS:
        low, high = coltypes.INTEGER_RANGE[new.kind]
        terms = []
        if old.kind == "float" or (old.kind == "decimal" and old.scale):
            terms.append(f"{col} <> round({col})")
        whole = (old.precision or 0) - (old.scale or 0)
        fits_digits = old.kind == "decimal" and whole < coltypes.INTEGER_DIGITS[new.kind]
        if not fits_digits:
            terms.append(f"NOT ({_inside(col, str(low), str(high))})")
        return " OR ".join(terms)
    # to decimal(p, s)
    p, s = new.precision or 0, new.scale or 0
    bound = 10 ** (p - s)
    if old.kind == "float":
        # rounded to the scale by the conversion (documented): only the range must hold. The
        # range test first: a value strictly inside +-(bound - 10^-scale) rounds into the type,
        # so only the rows outside it (none, usually) pay for the exact test's numeric casts.
        within = _within(p - s, s)
        outside = f"NOT ({_inside(col, '-' + within, within, strict_low=True)})\n    AND "
        if pg:
            return (
                f"{outside}(abs(round({col}::numeric, {s})) >= {bound} OR {col}::numeric = 'NaN')"
            )
        return f"{outside}abs(round({col}, {s})) >= {bound}"
    terms = []
    if old.kind == "decimal" and (old.scale or 0) > s:
        terms.append(f"{col} <> round({col}, {s})")  # a changed value does not fit
    whole = (
        (old.precision or 0) - (old.scale or 0)
        if old.kind == "decimal"
        else coltypes.INTEGER_DIGITS[old.kind]
    )
    if whole > p - s:
        terms.append(f"NOT ({_inside(col, str(-bound), str(bound), strict_low=True)})")
    return " OR ".join(terms)


class TypeChange(Protocol):
    """A column type change (the step of alter_column_type): where, from what, to what."""

    @property
    def table_name(self) -> str: ...
    @property
    def column(self) -> Column: ...
    @property
    def to(self) -> SqlType: ...


def using_sql(step: TypeChange) -> str | None:
    """PostgreSQL's USING expression for a type change, or None for none at all.

    Never a cast that cuts: an explicit ``::varchar(n)`` truncates a longer string and a cast
    to fewer decimal places (or to an integer) rounds, where the pre-check promised the value
    would not change. A string keeps PostgreSQL's assignment conversion (no USING), which
    fails on a value that is too long; a number that would be rounded goes through a CASE
    whose other branch raises, naming the value; an overflow raises by itself. Back to a
    decimal from float it rounds to the decimal's scale explicitly (documented), so the
    conversion never depends on implicit rounding."""
    old, to = step.column.type, step.to
    col = quote_ident(step.column.name)
    target = ddl_type(to, POSTGRESQL)
    if to.family == "string":
        return None
    if to.kind in ("json", "enum"):
        return f"{col}::{target}"  # raises by itself on a value that is not JSON / a label
    if to.kind in ("timestamp", "timestamptz"):
        if old.kind == "date":
            midnight = f"{col}::timestamp without time zone"
            return midnight if to.kind == "timestamp" else f"{midnight} AT TIME ZONE 'UTC'"
        return f"{col} AT TIME ZONE 'UTC'"  # the one to the other, the timestamp in UTC
    if to.kind == "decimal" and old.kind == "float":
        return f"round({col}::numeric, {to.scale})::{target}"
    cast = f"{col}::{target}"
    keeps: str | None = None
    if to.kind == "uuid":
        keeps = f"{col} ~ '{UUID_REGEX}'"
    elif to.kind == "date":
        utc = f"({col} AT TIME ZONE 'UTC')" if old.kind == "timestamptz" else col
        cast = f"{utc}::{target}"
        keeps = f"{utc} = date_trunc('day', {utc})"
    elif to.kind == "decimal" and old.kind == "decimal" and (old.scale or 0) > (to.scale or 0):
        keeps = f"{col} = round({col}, {to.scale})"
    elif to.kind in coltypes.INTEGER_KINDS and (
        old.kind == "float" or (old.kind == "decimal" and old.scale)
    ):
        keeps = f"{col} = round({col})"
    elif to.kind == "float" and coltypes.narrows(old, to):
        condition = misfit_sql(old, to, step.column.name, POSTGRESQL)
        keeps = f"NOT ({' '.join((condition or '').split())})"
    if keeps is None:
        return cast
    where = f"{step.table_name}.{step.column.name}"
    message = (
        sql_string(f"schemagen: {where} = ")
        + f" || {col}::text || "
        + sql_string(f" does not fit {to} unchanged")
    )
    return f"CASE WHEN {keeps} THEN {cast} ELSE ({message})::{target} END"
