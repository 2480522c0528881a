"""Random valid change sequences over the baseline migrate up, down and up again, exactly.

Hypothesis draws a few change files (every op kind, valid against the schema as it stands
when drawn: the strategy resolves each operation with the generator's own Resolver and a
problem there is a bug of this test). Each sequence is written into a scratch project,
loaded and rendered; every generated module must compile. Then, on SQLite and on
PostgreSQL, with a few rows inserted before each change:

    upgrade to 0000; for each change: snapshot -> upgrade (its own pre/post checks run) ->
    downgrade -> the snapshot again, and the same row counts -> upgrade -> as after the
    first upgrade; finally downgrade to base -> an empty schema.

The examples are the same on every run (derandomized). Environment knobs:
``SCHEMAGEN_STATEFUL_EXAMPLES`` sequences per dialect (default 15);
``SCHEMAGEN_STATEFUL_RANDOM=1`` fresh random sequences instead, to go looking for bugs;
``SCHEMAGEN_STATEFUL_SHRINK=0`` report a failure as found, without minimising it first
(shrinking against a database can take minutes).
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from support import ROOT, execute, inspect_schema

from generator import db, dialects, expr, migrate, ops, spec
from generator.coltypes import (
    MAX_VARCHAR,
    NUMERIC_KINDS,
    STRING_KINDS,
    conversion_problem,
    parse_type,
)
from generator.load import Change, load_changes
from generator.render import generate
from generator.resolve import Resolver, default_problem
from generator.state import Column, DefaultValue, Schema, Table

EXAMPLES = int(os.environ.get("SCHEMAGEN_STATEFUL_EXAMPLES", "15"))
RANDOM = os.environ.get("SCHEMAGEN_STATEFUL_RANDOM") == "1"
SHRINK = os.environ.get("SCHEMAGEN_STATEFUL_SHRINK", "1") != "0"
BASELINE = ROOT / "changes" / "0000_baseline.yaml"

MAX_CHANGES = 4
MAX_OPS = 4
ROWS_PER_TABLE = 2  # inserted into every table before each change
# Row values are the row's number within its table (1..8), so every drawn type must hold a
# one-digit number: decimal(p,s) keeps p > s, and varchar(n) has n >= 1.
# Every operation of the registry: a new operation module is drawn by itself once the Drawer
# below has a method of its name (test_every_registered_operation_is_drawn checks it has).
OP_KINDS = ops.op_names()
FK_ACTIONS = ("cascade", "restrict", "no_action", "set_null")
# Names that must be quoted everywhere (the baseline already has "timestamp", "condition").
KEYWORDS = ("order", "user", "group", "select", "check", "default")

OPERATION: TypeAdapter[spec.Operation] = TypeAdapter(spec.Operation)

# Always run first: sequences that once failed (defaults PostgreSQL shows with another
# literal type, a default with line breaks and invisible characters, a column converted
# twice in one change, conversions of a column or table the same change creates).
REGRESSIONS: list[dict[str, Any]] = [
    {
        "id": "step_1",
        "description": "Defaults the catalogue reports in another form than they were written",
        "operations": [
            {
                "op": "add_column",
                "table": "instruments",
                "column": {"name": "c1", "type": "bigint", "nullable": False, "default": -1},
            },
            {
                "op": "add_column",
                "table": "instruments",
                "column": {"name": "c2", "type": "float", "nullable": True, "default": 1e-05},
            },
            {
                "op": "add_column",
                "table": "instruments",
                "column": {"name": "c3", "type": "float", "nullable": True, "default": -2.5},
            },
            {
                "op": "add_column",
                "table": "instruments",
                "column": {
                    "name": "c4",
                    "type": "text",
                    "nullable": False,
                    "default": "a\tb\r\nc\u200b\xa0'",
                },
            },
        ],
    },
    {
        "id": "step_2",
        "description": "Conversions chained, and of what this change creates",
        "operations": [
            {
                "op": "alter_column_type",
                "table": "market_data",
                "column": "ask",
                "from": "decimal(12,4)",
                "to": "float",
                "range_check": True,
            },
            {
                "op": "alter_column_type",
                "table": "market_data",
                "column": "ask",
                "from": "float",
                "to": "decimal(14,2)",
            },
            {
                "op": "create_table",
                "name": "t1",
                "columns": [
                    {"name": "id", "type": "integer", "primary_key": True},
                    {"name": "c5", "type": "bigint", "nullable": True, "default": 3000000000},
                ],
            },
            {
                "op": "alter_column_type",
                "table": "t1",
                "column": "c5",
                "from": "bigint",
                "to": "decimal(20,0)",
            },
            {
                "op": "add_column",
                "table": "alert_rules",
                "column": {"name": "c6", "type": "integer", "nullable": True},
            },
            {
                "op": "alter_column_type",
                "table": "alert_rules",
                "column": "c6",
                "from": "integer",
                "to": "bigint",
            },
        ],
    },
]


@functools.cache
def baseline() -> tuple[Schema, dict[str, str]]:
    """The schema after the baseline alone, and the files rendered from it alone."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "changes").mkdir()
        shutil.copy(BASELINE, Path(tmp) / "changes" / BASELINE.name)
        (change,) = load_changes(Path(tmp) / "changes", display_base=Path(tmp), lint=False)
    return change.after, generate([change])


# ------------------------------------------------------------------------------ strategy


def type_names(
    kinds: tuple[str, ...], min_digits: int = 1, min_length: int = 1
) -> st.SearchStrategy[str]:
    """Portable type names of the given kinds; a decimal has at least ``min_digits`` (and
    always one) digits before the point, a varchar at least ``min_length`` characters."""
    options = []
    for kind in kinds:
        if kind == "decimal":
            digits = max(1, min_digits)
            options.append(
                st.builds(
                    lambda s, d: f"decimal({s + d},{s})",
                    st.integers(0, 6),
                    st.integers(digits, max(digits, 20)),
                )
            )
        elif kind == "varchar":
            options.append(
                st.one_of(st.integers(max(1, min_length), 300), st.just(MAX_VARCHAR)).map(
                    lambda n: f"varchar({n})"
                )
            )
        else:
            options.append(st.just(kind))
    return st.one_of(options)


ALL_TYPES = (
    "integer",
    "bigint",
    "decimal",
    "float",
    "varchar",
    "text",
    "boolean",
    "timestamptz",
    "smallint",
    "date",
    "timestamp",
    "uuid",
    "json",
    "bytes",
)
# What alter_column_type may draw from each family, given the rows' values (_literal): a
# string row ('1'..'9') is JSON but not a uuid; a uuid goes to a string that holds 36
# characters; temporal rows are at midnight UTC, so they fit a date.
CONVERTS_TO = {
    "numeric": tuple(sorted(NUMERIC_KINDS)),
    "string": (*sorted(STRING_KINDS), "json"),
    "temporal": ("date", "timestamp", "timestamptz"),
    "uuid": tuple(sorted(STRING_KINDS)),
    "json": tuple(sorted(STRING_KINDS)),
}
# Any text a YAML spec can hold, control and invisible characters included (not NUL,
# which the resolver refuses).
DEFAULT_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
)


def defaults(type_name: str) -> st.SearchStrategy[DefaultValue]:
    """A literal default valid for the type (a decimal's never needs rounding to fit)."""
    t = parse_type(type_name)
    match t.kind:
        case "timestamptz":
            return st.just("now")
        case "boolean":
            return st.booleans()
        case "smallint":
            return st.integers(-(2**15), 2**15 - 1)
        case "date":
            return st.dates().map(lambda d: d.isoformat())
        case "timestamp":
            return st.one_of(
                st.just("now"),
                st.datetimes().map(
                    lambda d: (
                        d.isoformat(sep=" ").rstrip("0").rstrip(".")
                        if d.microsecond
                        else d.isoformat(sep=" ")
                    )
                ),
            )
        case "uuid":
            return st.uuids().map(str)
        case "json":
            return st.sampled_from(["{}", "[]"])
        case "integer":
            return st.integers(-(2**31), 2**31 - 1)
        case "bigint":
            return st.integers(-(2**63), 2**63 - 1)
        case "float":
            return st.one_of(
                st.integers(-(2**70), 2**70),
                st.floats(allow_nan=False, allow_infinity=False).filter(
                    lambda f: abs(f) < 1e308  # the resolver's limit for a float default
                ),
            )
        case "decimal":
            assert t.precision is not None and t.scale is not None
            digits = t.precision - t.scale
            # at most 15 significant digits, so the float's repr is the exact decimal
            scaled = st.integers(0, min(t.scale, 15 - min(digits, 15))).flatmap(
                lambda sc: st.integers(
                    -(10 ** min(digits + sc, 15)) + 1, 10 ** min(digits + sc, 15) - 1
                ).map(lambda k: k / 10**sc)
            )
            whole = st.integers(-(10 ** min(digits, 18)) + 1, 10 ** min(digits, 18) - 1)
            return st.one_of(whole, scaled)
    return DEFAULT_TEXT.filter(lambda s: t.length is None or len(s) <= t.length)


class Drawer:
    """Draws one valid operation at a time, resolving it to keep the schema current."""

    def __init__(self, draw: st.DrawFn, schema: Schema) -> None:
        self.draw = draw
        self.resolver = Resolver(schema)
        self.counter = itertools.count(1)
        self.created_here: set[str] = set()

    @property
    def schema(self) -> Schema:
        return self.resolver.schema

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def fresh_name(self, prefix: str, taken: set[str]) -> str:
        """A new name, sometimes an SQL keyword when that one is free."""
        free = [k for k in KEYWORDS if k not in taken]
        if free and self.draw(st.integers(0, 5)) == 0:
            return str(self.draw(st.sampled_from(free)))
        return self.fresh(prefix)

    # -------------------------------------------------------------------------- operations

    def operation(self) -> dict[str, Any]:
        kinds = [k for k in OP_KINDS if self._possible(k)]
        kind = self.draw(st.sampled_from(kinds))
        op: dict[str, Any] = getattr(self, kind)()
        _, problems = self.resolver.resolve(OPERATION.validate_python(op))
        assert not problems, f"test bug: the strategy drew an invalid operation {op}: {problems}"
        return op

    def _possible(self, kind: str) -> bool:
        match kind:
            case "drop_index":
                return any(t.indexes for t in self.schema.tables)
            case "alter_column_type":
                return bool(self._alterable())
            case "swap_fk_action":
                return any(t.foreign_keys for t in self.schema.tables)
            case "backfill":
                return any(self._backfillable(t) for t in self.schema.tables)
        return True

    def _column_spec(self, name: str, *, new_table: bool) -> dict[str, Any]:
        """A column of a random type; NOT NULL needs a default unless its table is new."""
        type_name = self.draw(type_names(ALL_TYPES))
        nullable = self.draw(st.booleans())
        if type_name == "bytes":  # takes no default: nullable on a table that has rows
            column: dict[str, Any] = {"name": name, "type": type_name}
            column["nullable"] = nullable or not new_table
            return column
        column = {"name": name, "type": type_name, "nullable": nullable}
        if (not nullable and not new_table) or self.draw(st.booleans()):
            column["default"] = self.draw(defaults(type_name))
        return column

    def create_table(self) -> dict[str, Any]:
        draw = self.draw
        tables = {t.name for t in self.schema.tables}
        name = self.fresh_name("t", tables | self.schema.relation_names())
        columns: list[dict[str, Any]] = []
        has_id = draw(st.integers(0, 9)) > 0
        if has_id:
            columns.append(
                {
                    "name": "id",
                    "type": draw(st.sampled_from(["integer", "bigint"])),
                    "primary_key": True,
                }
            )
        # parents: tables with a single-column `id` key, and this table itself
        parents = [(t.name, t.column("id")) for t in self.schema.tables if t.primary_key == ("id",)]
        taken = {"id"}
        for _ in range(draw(st.integers(1, 5))):
            col_name = self.fresh_name("c", taken)
            taken.add(col_name)
            candidates = parents + ([(name, None)] if has_id else [])
            if candidates and draw(st.integers(0, 3)) == 0:
                parent, target = draw(st.sampled_from(candidates))
                type_name = str(target.type) if target is not None else columns[0]["type"]
                nullable = draw(st.booleans())
                actions = [a for a in FK_ACTIONS if nullable or a != "set_null"]
                columns.append(
                    {
                        "name": col_name,
                        "type": type_name,
                        "nullable": nullable,
                        "references": {
                            "table": parent,
                            "on_delete": draw(st.sampled_from(actions)),
                        },
                    }
                )
                continue
            column = self._column_spec(col_name, new_table=True)
            if column["type"] != "boolean" and draw(st.integers(0, 5)) == 0:
                column["unique"] = True
            columns.append(column)
        indexes = []
        for _ in range(draw(st.integers(0, 2))):
            cols = draw(
                st.lists(
                    st.sampled_from([c["name"] for c in columns]),
                    min_size=1,
                    max_size=3,
                    unique=True,
                )
            )
            index: dict[str, Any] = {"name": self.fresh("ix"), "columns": cols}
            if self._may_be_unique(cols, [(c["name"], c["type"]) for c in columns]):
                index["unique"] = True
            indexes.append(index)
        self.created_here.add(name)
        op: dict[str, Any] = {"op": "create_table", "name": name, "columns": columns}
        if indexes:
            op["indexes"] = indexes
        return op

    def _may_be_unique(self, cols: list[str], types: list[tuple[str, str]]) -> bool:
        """Unique only when no row can repeat a key: rows differ in every non-boolean column."""
        kinds = dict(types)
        return any(kinds[c] != "boolean" for c in cols) and self.draw(st.integers(0, 3)) == 0

    def drop_index(self) -> dict[str, Any]:
        pairs = [(t.name, i.name) for t in self.schema.tables for i in t.indexes]
        table, name = self.draw(st.sampled_from(pairs))
        return {"op": "drop_index", "table": table, "name": name}

    def create_index(self) -> dict[str, Any]:
        table = self.draw(st.sampled_from(self.schema.tables))
        cols = self.draw(
            st.lists(
                st.sampled_from([c.name for c in table.columns]),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        op: dict[str, Any] = {
            "op": "create_index",
            "table": table.name,
            "name": self.fresh("ix"),
            "columns": cols,
        }
        # Existing tables hold rows, and an added NOT NULL column repeats its default: a
        # unique index only on a table created by this change (empty when it runs).
        if table.name in self.created_here and self._may_be_unique(
            cols, [(c.name, c.type.kind) for c in table.columns]
        ):
            op["unique"] = True
        return op

    def _alterable(self) -> list[tuple[Table, Column]]:
        out = []
        for t in self.schema.tables:
            referenced = {f.ref_column for f in self.schema.referencing(t.name)}
            for c in t.columns:
                if c.type.family not in CONVERTS_TO or c.primary_key:
                    continue
                if c.type.kind == "date" and c.default is not None:
                    continue  # no other temporal type takes a date's default
                if c.type.kind == "timestamp" and c.default not in (None, "now"):
                    continue
                if t.fk_on(c.name) is None and c.name not in referenced:
                    out.append((t, c))
        return out

    def alter_column_type(self) -> dict[str, Any]:
        table, column = self.draw(st.sampled_from(self._alterable()))
        old = column.type
        kinds = CONVERTS_TO[old.family]
        value = column.default
        if isinstance(value, float):
            kinds = tuple(k for k in kinds if k not in ("integer", "bigint"))
        elif isinstance(value, int) and not -(2**31) <= value < 2**31:
            kinds = tuple(k for k in kinds if k != "integer")
        min_digits = len(str(int(abs(value)))) if isinstance(value, int | float) else 1
        min_length = len(value) if isinstance(value, str) else 1
        if old.kind == "uuid":
            min_length = 36

        def fits(name: str) -> bool:
            new = parse_type(name)
            if conversion_problem(old, new) is not None:
                return False
            return value is None or default_problem(value, new) is None

        new = self.draw(type_names(kinds, min_digits, min_length).filter(fits))
        op = {
            "op": "alter_column_type",
            "table": table.name,
            "column": column.name,
            "from": str(old),
            "to": new,
        }
        check = f"ck_{table.name}_{column.name}_range"
        if (
            old.kind == "decimal"
            and new == "float"
            and check not in self.schema.relation_names()
            and self.draw(st.booleans())
        ):
            op["range_check"] = True
        return op

    def add_column(self) -> dict[str, Any]:
        table = self.draw(st.sampled_from(self.schema.tables))
        name = self.fresh_name("c", {c.name for c in table.columns})
        column = self._column_spec(name, new_table=False)
        return {"op": "add_column", "table": table.name, "column": column}

    def swap_fk_action(self) -> dict[str, Any]:
        fks = [f for t in self.schema.tables for f in t.foreign_keys]
        fk = self.draw(st.sampled_from(fks))
        column = self.schema.get(fk.table).column(fk.column)
        assert column is not None
        actions = [
            a for a in FK_ACTIONS if a != fk.on_delete and (column.nullable or a != "set_null")
        ]
        return {
            "op": "swap_fk_action",
            "table": fk.table,
            "column": fk.column,
            "from": fk.on_delete,
            "to": self.draw(st.sampled_from(actions)),
        }

    def rename_column(self) -> dict[str, Any]:
        table = self.draw(st.sampled_from(self.schema.tables))
        column = self.draw(st.sampled_from(table.columns))
        to = self.fresh_name("r", {c.name for c in table.columns})
        return {"op": "rename_column", "table": table.name, "column": column.name, "to": to}

    @staticmethod
    def _backfillable(table: Table) -> list[Column]:
        """Columns a backfill may set: not in the key, named as the grammar reads a column."""
        if not table.primary_key:
            return []
        words = {*expr.KEYWORDS, *expr.FUNCTIONS}
        return [c for c in table.columns if not c.primary_key and c.name not in words]

    def backfill(self) -> dict[str, Any]:
        """Sets a column from itself (lowered when it is free text no key or check names),
        in small batches, sometimes only where it is not NULL."""
        table = self.draw(st.sampled_from([t for t in self.schema.tables if self._backfillable(t)]))
        column = self.draw(st.sampled_from(self._backfillable(table)))
        name = column.name
        free = (
            str(column.type).split("(")[0] in ("text", "varchar")
            and not any(name in i.columns for i in table.indexes if i.unique)
            and not any(name in u.columns for u in table.uniques)
            and not any(c.column == name for c in table.checks)
        )
        value = f"lower({name})" if free and self.draw(st.booleans()) else name
        op: dict[str, Any] = {"op": "backfill", "table": table.name, "set": {name: value}}
        if self.draw(st.booleans()):
            op["where"] = f"{name} IS NOT NULL"
        op["batch_size"] = self.draw(st.integers(1, 5))
        return op


@st.composite
def change_sequences(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-4 change specs (as YAML-ready dicts), each of 1-4 operations."""
    drawer = Drawer(draw, baseline()[0])
    changes = []
    for number in range(1, draw(st.integers(1, MAX_CHANGES)) + 1):
        drawer.created_here = set()
        operations = [drawer.operation() for _ in range(draw(st.integers(1, MAX_OPS)))]
        changes.append(
            {
                "id": f"step_{number}",
                "description": f"Random change {number}: " + ", ".join(o["op"] for o in operations),
                "operations": operations,
            }
        )
    return changes


# ------------------------------------------------------------------------------- project


def write_project(root: Path, specs: list[dict[str, Any]]) -> tuple[list[Change], Path]:
    """Specs into root/changes/, rendered into root/generated_migrations/."""
    changes_dir = root / "changes"
    changes_dir.mkdir(parents=True)
    shutil.copy(BASELINE, changes_dir / BASELINE.name)
    for number, change in enumerate(specs, 1):
        text = yaml.safe_dump(change, sort_keys=False, allow_unicode=True)
        (changes_dir / f"{number:04d}_{change['id']}.yaml").write_text(text, encoding="utf-8")
    changes = load_changes(changes_dir, display_base=root, lint=False)  # mechanics, not policy
    files = generate(changes)
    out = root / "generated_migrations"
    for rel, text in files.items():
        if rel.endswith(".py"):
            compile(text, rel, "exec")
        if rel in baseline()[1] and rel != "schemagen.sum":  # the sum lists every file
            assert text == baseline()[1][rel], f"{rel} depends on the changes after it"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
    return changes, out


# ---------------------------------------------------------------------------------- data


def reset_database(url: str) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        Path(parsed.database).unlink(missing_ok=True)
    else:
        execute(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")


def _literal(column: Column, n: int, dialect: str) -> str:
    """Row ``n``'s value: fits every type its column can be converted to, never repeats."""
    match column.type.kind:
        case "boolean":
            return (
                ("1" if n % 2 else "0") if dialect == "sqlite" else ("true" if n % 2 else "false")
            )
        case "timestamptz":
            return f"'2024-01-{n:02d} 00:00:00+00:00'"  # midnight UTC: fits a date
        case "timestamp":
            return f"'2024-01-{n:02d} 00:00:00'"
        case "date":
            return f"'2024-01-{n:02d}'"
        case "uuid":
            return f"'00000000-0000-0000-0000-{n:012d}'"
        case "bytes":
            return f"X'0{n}'" if dialect == "sqlite" else f"'\\x0{n}'"
        case "varchar" | "text" | "json":
            return f"'{n}'"
    return str(n)


def insert_rows(url: str, dialect: str, schema: Schema, counts: Counter[str]) -> None:
    """Insert rows into every table, parents first; row n references its parents' row n."""
    statements = []
    for table in schema.tables:
        for _ in range(ROWS_PER_TABLE):
            counts[table.name] += 1
            n = counts[table.name]
            assert n < 10, "row values must stay one digit"
            names = ", ".join(dialects.quote_ident(c.name) for c in table.columns)
            values = ", ".join(_literal(c, n, dialect) for c in table.columns)
            statements.append(
                f"INSERT INTO {dialects.quote_ident(table.name)} ({names}) VALUES ({values})"
            )
    execute(url, *statements)


def row_counts(url: str) -> dict[str, int]:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
            return {
                t: conn.exec_driver_sql(
                    f"SELECT count(*) FROM {dialects.quote_ident(t)}"
                ).scalar_one()
                for t in tables
            }
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------- test


def check_sequence(specs: list[dict[str, Any]], dialect: str, url: str, workdir: Path) -> None:
    changes, migrations = write_project(workdir, specs)
    parsed = sa.make_url(url)
    reset_database(url)
    migrate.upgrade(migrations, parsed, "0000")
    counts: Counter[str] = Counter()
    for change in changes[1:]:
        insert_rows(url, dialect, change.before, counts)
        before, rows_before = inspect_schema(url), row_counts(url)
        migrate.upgrade(migrations, parsed, change.revision)
        after, rows_after = inspect_schema(url), row_counts(url)
        assert {t: rows_after[t] for t in rows_before} == rows_before, f"upgrade {change.name}"
        assert change.down_revision is not None
        migrate.downgrade(migrations, parsed, change.down_revision)
        assert inspect_schema(url) == before, f"downgrade of {change.name} left a different schema"
        assert row_counts(url) == rows_before, f"downgrade of {change.name} lost rows"
        migrate.upgrade(migrations, parsed, change.revision)
        assert inspect_schema(url) == after, f"second upgrade of {change.name} differs"
    migrate.downgrade(migrations, parsed, "base")
    assert inspect_schema(url) == {}


@pytest.mark.slow
@pytest.mark.db
def test_random_change_sequences_upgrade_downgrade_and_upgrade_again(
    dialect: str, db_url: str, tmp_path: Path
) -> None:
    # @given sits on an inner function, so the fixtures' database serves every example
    # (each resets it first) and the op kinds seen can be checked once all have run.
    seen: Counter[str] = Counter()
    # A fresh project per example: a reused directory could run stale bytecode of a
    # migration rewritten within the same second.
    workdirs = (tmp_path / f"example_{n}" for n in itertools.count())

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        phases=tuple(Phase) if SHRINK else (Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(specs=change_sequences())
    @example(specs=REGRESSIONS)
    def run(specs: list[dict[str, Any]]) -> None:
        seen.update(op["op"] for change in specs for op in change["operations"])
        check_sequence(specs, dialect, db_url, next(workdirs))

    run()
    if EXAMPLES >= 10:
        assert set(seen) == set(OP_KINDS), f"op kinds exercised: {dict(seen)}"
