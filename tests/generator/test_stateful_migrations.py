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

from generator import db, dialects, expr, indexexpr, migrate, ops, runtime, spec
from generator.coltypes import (
    MAX_VARCHAR,
    NUMERIC_KINDS,
    STRING_KINDS,
    conversion_problem,
    parse_type,
)
from generator.load import Change, load_changes
from generator.ops.drop_column import archive_prefix
from generator.ops.drop_table import ArchiveTableStep
from generator.ops.purge import PurgeTableStep
from generator.ops.rename_table import RenameTableStep, dependent_renames
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
# The second column of a composite primary key (id, k) that composite foreign keys reference:
# types a key compares exactly on both dialects and that hold the row's number.
COMPOSITE_KEY_TYPES = ("integer", "bigint", "text", "varchar(8)", "date", "uuid")

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

# Every constraint operation at least once, whatever Hypothesis draws (some are drawn only in
# rare states): added, then dropped or flipped with rows in the tables, and undone.
CONSTRAINTS: list[dict[str, Any]] = [
    {
        "id": "step_1",
        "description": "A new table constrained: a unique key, checks, a foreign key",
        "operations": [
            {
                "op": "create_table",
                "name": "t1",
                "columns": [
                    {"name": "id", "type": "integer", "primary_key": True},
                    {"name": "code", "type": "varchar(8)", "nullable": True},
                    {"name": "qty", "type": "integer", "nullable": True},
                ],
            },
            {"op": "add_unique", "table": "t1", "name": "uq_t1_code", "columns": ["code"]},
            {"op": "add_check", "table": "t1", "name": "ck_t1_qty", "expression": "qty >= 0"},
            {
                "op": "add_check",
                "table": "instruments",
                "name": "ck_instruments_symbol",
                "expression": "length(symbol) > 0 AND lower(currency) <> 'xxx'",
            },
        ],
    },
    {
        "id": "step_2",
        "description": "Constraints of existing tables with rows: flipped, keyed, dropped",
        "operations": [
            {"op": "set_nullable", "table": "t1", "column": "qty", "nullable": False, "fill": 0},
            {"op": "set_default", "table": "t1", "column": "code", "default": "x"},
            {
                "op": "add_foreign_key",
                "table": "t1",
                "name": "fk_t1_qty",
                "columns": ["qty"],
                "references": {"table": "instruments", "columns": ["id"]},
                "on_delete": "cascade",
            },
            {"op": "drop_check", "table": "t1", "name": "ck_t1_qty"},
            {"op": "drop_unique", "table": "t1", "name": "uq_t1_code"},
            {
                "op": "set_nullable",
                "table": "instruments",
                "column": "exchange",
                "nullable": False,
                "fill": "X",
            },
        ],
    },
    {
        "id": "step_3",
        "description": "Dropped again",
        "operations": [
            {"op": "drop_foreign_key", "table": "t1", "name": "fk_t1_qty"},
            {"op": "drop_check", "table": "instruments", "name": "ck_instruments_symbol"},
            {"op": "set_nullable", "table": "t1", "column": "qty", "nullable": True},
            {"op": "set_default", "table": "t1", "column": "code", "default": None},
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
                # the tool refuses |default| >= 1e308 (resolve.default_problem)
                st.floats(min_value=-9.9e307, max_value=9.9e307),
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


def _predicate_term(column: Column) -> str | None:
    """A condition on ``column`` for a partial index's ``where`` (the expression grammar)."""
    name, kind = column.name, column.type.kind
    if name in expr.KEYWORDS or name == "now":
        return None
    if kind in ("smallint", "integer", "bigint"):
        return f"{name} > -1"
    if kind == "boolean":
        return f"NOT {name}"
    if kind in ("text", "varchar"):
        return f"{name} <> 'x'"
    if column.nullable:
        return f"{name} IS NOT NULL"
    return None


def _expression_key(table: Table, name: str) -> str | None:
    """An expression key on column ``name`` of ``table`` (generator.indexexpr), or None."""
    column = table.column(name)
    if column is None or name in expr.KEYWORDS or name in expr.FUNCTIONS:
        return None
    if column.type.kind in ("text", "varchar"):
        return f"lower({name})" if len(name) % 2 else f"upper({name})"
    if column.type.kind == "boolean":
        return f"coalesce({name}, false)"
    return None


class Drawer:
    """Draws one valid operation at a time, resolving it to keep the schema current."""

    def __init__(self, draw: st.DrawFn, schema: Schema) -> None:
        self.draw = draw
        self.resolver = Resolver(schema)
        self.counter = itertools.count(1)
        self.created_here: set[str] = set()
        # The kinds still to draw, first possible first (covering_sequences); empty: any kind.
        self.pending: list[str] = []

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
        first = [k for k in self.pending if k in kinds]
        kind = first[0] if first else self.draw(st.sampled_from(kinds))
        if kind in self.pending:
            self.pending.remove(kind)
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
            case "drop_column":
                return bool(self._droppable())
            case "drop_table":
                return bool(self._droppable_tables())
            case "purge":
                return bool(self._purgeable())
            case "drop_check":
                return any(t.checks for t in self.schema.tables)
            case "set_nullable":
                return bool(self._nullable_flips())
            case "add_unique":
                return bool(self._unique_candidates())
            case "drop_unique":
                return bool(self._droppable_uniques())
            case "add_foreign_key":
                return bool(self._fk_candidates() or self._composite_fk_candidates())
            case "drop_foreign_key":
                return any(t.foreign_keys for t in self.schema.tables)
            case "backfill":
                return any(self._backfillable(t) for t in self.schema.tables)
            case "widen_key":
                return bool(self._widenable())
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
        names = self.schema.relation_names()
        # a dropped table's archive keeps its key's name (pk_<table>): that table name is taken
        kept = {n.removeprefix("pk_") for n in names if n.startswith("pk_")}
        name = self.fresh_name("t", tables | names | kept)
        columns: list[dict[str, Any]] = []
        has_id = draw(st.integers(0, 9)) > 0
        composite = False
        if has_id:
            columns.append(
                {
                    "name": "id",
                    "type": draw(st.sampled_from(["integer", "bigint"])),
                    "primary_key": True,
                }
            )
            composite = draw(st.integers(0, 2)) == 0
            if composite:  # a composite key (id, k), which composite foreign keys reference
                key_type = draw(st.sampled_from(COMPOSITE_KEY_TYPES))
                columns.append({"name": "k", "type": key_type, "primary_key": True})
        # parents: tables with a single-column `id` key, and this table itself
        parents = [(t.name, t.column("id")) for t in self.schema.tables if t.primary_key == ("id",)]
        taken = {"id", "k"}
        for _ in range(draw(st.integers(1, 5))):
            col_name = self.fresh_name("c", taken)
            taken.add(col_name)
            candidates = parents + ([(name, None)] if has_id and not composite else [])
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
        foreign_keys = []
        if composite and draw(st.booleans()):
            # a composite foreign key to its own key (row n references itself), or to an older
            # table's composite key (its rows hold every number this table's will)
            older = [t for t in self.schema.tables if len(t.primary_key) == 2]
            parent = draw(st.sampled_from([None, *older]))
            key = columns[:2] if parent is None else [parent.column(n) for n in parent.primary_key]
            types = [c["type"] if isinstance(c, dict) else str(c.type) for c in key if c]
            nullable = draw(st.booleans())
            refs = []
            for type_name in types:
                col_name = self.fresh_name("c", taken)
                taken.add(col_name)
                refs.append(col_name)
                columns.append({"name": col_name, "type": type_name, "nullable": nullable})
            actions = [a for a in FK_ACTIONS if nullable or a != "set_null"]
            foreign_keys.append(
                {
                    "name": self.fresh("fk"),
                    "columns": refs,
                    "references": {
                        "table": name if parent is None else parent.name,
                        "columns": ["id", "k"] if parent is None else list(parent.primary_key),
                    },
                    "on_delete": draw(st.sampled_from(actions)),
                }
            )
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
        if foreign_keys:
            op["foreign_keys"] = foreign_keys
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
        elif self.draw(st.integers(0, 2)) == 0:
            terms = [t for t in map(_predicate_term, table.columns) if t]
            if terms:
                chosen = self.draw(st.lists(st.sampled_from(terms), min_size=1, max_size=2))
                joiner = self.draw(st.sampled_from([" AND ", " OR "]))
                op["where"] = joiner.join(dict.fromkeys(chosen))
        if self.draw(st.integers(0, 3)) == 0:
            op["descending"] = [cols[0]]
        rest = [c.name for c in table.columns if c.name not in cols]
        if rest and self.draw(st.integers(0, 3)) == 0:
            op["include"] = [self.draw(st.sampled_from(rest))]
        if not op.get("unique") and self.draw(st.integers(0, 2)) == 0:
            # an expression key in place of a key column (lower/upper of a text column,
            # coalesce of a boolean one): a non-unique index, so that rows never collide
            keyed = [(n, key) for n, c in enumerate(cols) if (key := _expression_key(table, c))]
            if keyed:
                n, key = self.draw(st.sampled_from(keyed))
                op["columns"] = [key if i == n else c for i, c in enumerate(cols)]
                op["descending"] = [key if c == cols[n] else c for c in op.get("descending", [])]
        return op

    def _alterable(self) -> list[tuple[Table, Column]]:
        out = []
        for t in self.schema.tables:
            referenced = {c for f in self.schema.referencing(t.name) for c in f.ref_columns}
            for c in t.columns:
                if c.type.family not in CONVERTS_TO or c.primary_key:
                    continue
                if c.type.kind == "date" and c.default is not None:
                    continue  # no other temporal type takes a date's default
                if c.type.kind == "timestamp" and c.default not in (None, "now"):
                    continue
                compared = {
                    n for i in t.indexes if i.where for n in indexexpr.compared_columns(i.where)
                }
                # a column an expression key uses keeps its type (the key is read back by it)
                compared |= {
                    n for i in t.indexes for _, tree in i.expressions for n in expr.columns(tree)
                }
                if not t.fks_using(c.name) and c.name not in referenced | compared:
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
        table = self.schema.get(fk.table)
        nullable = all(c.nullable for c in table.columns if c.name in fk.columns)
        actions = [a for a in FK_ACTIONS if a != fk.on_delete and (nullable or a != "set_null")]
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

    def _droppable(self) -> list[tuple[Table, Column]]:
        """Columns drop_column accepts whose downgrade can always come back: nullable or with
        a default (rows inserted after the drop have no value for them)."""
        out = []
        for t in self.schema.tables:
            if len(t.columns) < 2:
                continue
            held = {*t.primary_key, *(c for u in t.uniques for c in u.columns)}
            held |= {c for f in t.foreign_keys for c in f.columns}
            held |= {c for ck in t.checks for c in ck.columns}
            held |= {c for f in self.schema.referencing(t.name) for c in f.ref_columns}
            out += [
                (t, c)
                for c in t.columns
                if c.name not in held and (c.nullable or c.default is not None)
            ]
        return out

    def drop_column(self) -> dict[str, Any]:
        table, column = self.draw(st.sampled_from(self._droppable()))
        op: dict[str, Any] = {"op": "drop_column", "table": table.name, "column": column.name}
        # without its data the downgrade adds it back at the end: only the last column comes
        # back where it was (the schemas are compared column by column, in order)
        if table.physical()[-1] == column and self.draw(st.booleans()):
            op["keep_data"] = False
        return op

    def _droppable_tables(self) -> list[Table]:
        return [
            t
            for t in self.schema.tables
            if all(f.table == t.name for f in self.schema.referencing(t.name))
        ]

    def drop_table(self) -> dict[str, Any]:
        # with its rows kept: the test compares the rows after each downgrade
        table = self.draw(st.sampled_from(self._droppable_tables()))
        return {"op": "drop_table", "table": table.name}

    def _purgeable(self) -> list[str]:
        """Ids of earlier changes with archives a purge can destroy."""
        out = []
        for change_id, number in self.resolver.change_numbers.items():
            prefix = archive_prefix(number)
            archives = self.schema.archives
            mine = any(t.name.startswith(prefix) for t in archives) or any(
                c.name.startswith(prefix) for t in self.schema.tables for _, c in t.aside
            )
            inside_later = any(
                c.name.startswith(prefix) and not t.name.startswith(prefix)
                for t in archives
                for _, c in t.aside
            )
            if mine and not inside_later:
                out.append(change_id)
        return out

    def purge(self) -> dict[str, Any]:
        return {"op": "purge", "change": self.draw(st.sampled_from(self._purgeable()))}

    def sql(self) -> dict[str, Any]:
        """Raw SQL that keeps every value (an UPDATE of a column to itself), with a check;
        sometimes irreversible (the test expects its downgrade to refuse)."""
        table = self.draw(st.sampled_from(self.schema.tables))
        column = self.draw(st.sampled_from(table.columns))
        t, c = dialects.quote_ident(table.name), dialects.quote_ident(column.name)
        both = {"postgresql": f"UPDATE {t} SET {c} = {c}", "sqlite": f"UPDATE {t} SET {c} = {c}"}
        check = f"SELECT * FROM {t} WHERE 1 = 0"
        op: dict[str, Any] = {
            "op": "sql",
            "up": both,
            "checks": [{"postgresql": check, "sqlite": check}],
        }
        if self.draw(st.integers(0, 4)) == 0:
            op["irreversible"] = True
        else:
            op["down"] = dict(both)  # a copy: a shared dict would be dumped as a YAML anchor
        return op

    def rename_table(self) -> dict[str, Any]:
        table = self.draw(st.sampled_from(self.schema.tables))
        to = self.fresh_name("t", self.schema.relation_names())
        op: dict[str, Any] = {"op": "rename_table", "table": table.name, "to": to}
        renames = dependent_renames(self.schema, table, to, self.resolver.conventions)
        taken = self.schema.relation_names() - table.relation_names()
        if self.draw(st.booleans()) and not {n.new for n in renames} & (taken | {to}):
            op["rename_dependents"] = True
        return op

    def set_default(self) -> dict[str, Any]:
        pairs = [(t, c) for t in self.schema.tables for c in t.columns if not c.identity]
        table, column = self.draw(st.sampled_from(pairs))
        new = self.draw(
            st.one_of(st.none(), defaults(str(column.type))).filter(
                lambda d: (d, type(d)) != (column.default, type(column.default))
            )
        )
        return {"op": "set_default", "table": table.name, "column": column.name, "default": new}

    def add_check(self) -> dict[str, Any]:
        """A check every row the test inserts (and every default) satisfies."""
        table = self.draw(st.sampled_from(self.schema.tables))
        column = self.draw(st.sampled_from(table.columns))
        c = dialects.quote_ident(column.name) if column.name in KEYWORDS else column.name
        expression = {
            "numeric": f"{c} IS NULL OR {c} * 0 = 0",
            "string": f"length({c}) >= 0 AND lower({c}) = lower({c})",
            "boolean": f"{c} IN (true, false)",
        }.get(column.type.family, f"{c} IS NULL OR {c} IS NOT NULL")
        return {
            "op": "add_check",
            "table": table.name,
            "name": self.fresh("ck"),
            "expression": expression,
        }

    def drop_check(self) -> dict[str, Any]:
        pairs = [(t.name, c.name) for t in self.schema.tables for c in t.checks]
        table, name = self.draw(st.sampled_from(pairs))
        return {"op": "drop_check", "table": table, "name": name}

    def _nullable_flips(self) -> list[tuple[Table, Column]]:
        """NOT NULL columns that are no key, and nullable ones of tables with a primary key
        (the NULLs that rows added by add_column hold are filled)."""
        return [
            (t, c)
            for t in self.schema.tables
            for c in t.columns
            if not c.primary_key
            and (not c.nullable or (t.primary_key and c.name not in self._unique_columns(t)))
        ]

    @staticmethod
    def _unique_columns(t: Table) -> set[str]:
        """Columns of a unique index or key: one fill for many NULLs would repeat."""
        keys = [i.columns for i in t.indexes if i.unique] + [u.columns for u in t.uniques]
        return {c for cols in keys for c in cols}

    def set_nullable(self) -> dict[str, Any]:
        table, column = self.draw(st.sampled_from(self._nullable_flips()))
        op: dict[str, Any] = {
            "op": "set_nullable",
            "table": table.name,
            "column": column.name,
            "nullable": not column.nullable,
        }
        if column.nullable:
            op["fill"] = self.draw(defaults(str(column.type)))
        return op

    def _unique_candidates(self) -> list[Table]:
        """Tables this change created (empty when it runs; the rows inserted later differ in
        every column but booleans) with a column that is no boolean, and tables with a
        primary key and another column (a key containing the primary key never repeats)."""
        return [
            t
            for t in self.schema.tables
            if (t.name in self.created_here and any(c.type.kind != "boolean" for c in t.columns))
            or (t.primary_key and len(t.columns) > len(t.primary_key))
        ]

    def add_unique(self) -> dict[str, Any]:
        table = self.draw(st.sampled_from(self._unique_candidates()))
        others = [c.name for c in table.columns if c.name not in table.primary_key]
        if table.name in self.created_here and any(c.type.kind != "boolean" for c in table.columns):
            first = self.draw(
                st.sampled_from([c.name for c in table.columns if c.type.kind != "boolean"])
            )
            columns = [first]
        else:
            columns = list(table.primary_key)
        if others:
            columns += [self.draw(st.sampled_from(others))]
        columns = list(dict.fromkeys(columns))
        if table.is_unique_key(tuple(columns)):
            columns = [*columns, *(c for c in others if c not in columns)][:4]
        return {
            "op": "add_unique",
            "table": table.name,
            "name": self.fresh("uq"),
            "columns": columns,
        }

    def _droppable_uniques(self) -> list[tuple[str, str]]:
        referenced = {
            (f.ref_table, f.ref_columns) for t in self.schema.tables for f in t.foreign_keys
        }
        return [
            (t.name, u.name)
            for t in self.schema.tables
            for u in t.uniques
            if (t.name, u.columns) not in referenced
        ]

    def drop_unique(self) -> dict[str, Any]:
        table, name = self.draw(st.sampled_from(self._droppable_uniques()))
        return {"op": "drop_unique", "table": table, "name": name}

    def _fk_candidates(self) -> list[tuple[Table, Column, Table]]:
        """(child, column, parent): the parent has a single-column `id` key of the column's
        type and is no younger than the child (so it holds every number the child's rows
        hold, inserted first); the column has no default (its rows hold their number or
        NULL) and was never filled."""
        tables = list(self.schema.tables)
        names = self.schema.relation_names()
        out = []
        for i, child in enumerate(tables):
            if child.name.startswith("filled_"):  # keys of another table's rows: no parent
                continue
            for c in child.columns:
                if (
                    c.default is not None
                    or child.fks_using(c.name)
                    or c.type.kind
                    not in (
                        "integer",
                        "bigint",
                    )
                ):
                    continue
                if any(
                    n.startswith("filled_") and n.endswith(f"_{child.name}_{c.name}") for n in names
                ):
                    continue
                for parent in tables[: i + 1]:
                    key = parent.column("id")
                    if parent.primary_key == ("id",) and key is not None and key.type == c.type:
                        out.append((child, c, parent))
        return out

    def _composite_fk_candidates(self) -> list[tuple[Table, tuple[Column, ...], Table]]:
        """(child, columns, parent): the parent has a composite primary key (id, k), there
        since its creation (every row holds its number in both), and is no younger than the
        child; the child's columns are of the key's types one by one, in no foreign key, with
        no default (their rows hold their number or NULL) and never filled; a self-reference
        uses other columns than the key's."""
        tables = list(self.schema.tables)
        names = self.schema.relation_names()
        out = []
        for i, child in enumerate(tables):
            if child.name.startswith("filled_"):
                continue
            free = [
                c
                for c in child.columns
                if c.default is None
                and not child.fks_using(c.name)
                and not any(
                    n.startswith("filled_") and n.endswith(f"_{child.name}_{c.name}") for n in names
                )
            ]
            for parent in tables[: i + 1]:
                key = [parent.column(n) for n in parent.primary_key]
                if len(key) != 2:
                    continue
                slots = [
                    [
                        c
                        for c in free
                        if k is not None
                        and c.type == k.type
                        and (parent is not child or c.name not in parent.primary_key)
                    ]
                    for k in key
                ]
                for first in slots[0]:
                    for second in slots[1]:
                        if first.name != second.name:
                            out.append((child, (first, second), parent))
        return out

    def add_foreign_key(self) -> dict[str, Any]:
        composite = self._composite_fk_candidates()
        if composite and (not self._fk_candidates() or self.draw(st.booleans())):
            child, columns, parent = self.draw(st.sampled_from(composite))
            nullable = all(c.nullable for c in columns)
            return {
                "op": "add_foreign_key",
                "table": child.name,
                "name": self.fresh("fk"),
                "columns": [c.name for c in columns],
                "references": {"table": parent.name, "columns": list(parent.primary_key)},
                "on_delete": self.draw(
                    st.sampled_from([a for a in FK_ACTIONS if nullable or a != "set_null"])
                ),
            }
        child, column, parent = self.draw(st.sampled_from(self._fk_candidates()))
        actions = [a for a in FK_ACTIONS if column.nullable or a != "set_null"]
        return {
            "op": "add_foreign_key",
            "table": child.name,
            "name": self.fresh("fk"),
            "columns": [column.name],
            "references": {"table": parent.name, "columns": ["id"]},
            "on_delete": self.draw(st.sampled_from(actions)),
        }

    def drop_foreign_key(self) -> dict[str, Any]:
        pairs = [(t.name, f.name) for t in self.schema.tables for f in t.foreign_keys]
        table, name = self.draw(st.sampled_from(pairs))
        return {"op": "drop_foreign_key", "table": table, "name": name}

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

    def _widenable(self) -> list[dict[str, Any]]:
        """widen_key on each integer key it accepts (a primary key or a referenced column,
        every column referencing it of its type, no partial index comparing one of them)."""
        out = []
        for t in self.schema.tables:
            for c in t.columns:
                if c.type.kind not in ("smallint", "integer") or t.fk_on(c.name) is not None:
                    continue
                for to in ("integer", "bigint")[("smallint", "integer").index(c.type.kind) :]:
                    op = {
                        "op": "widen_key",
                        "table": t.name,
                        "column": c.name,
                        "from": str(c.type),
                        "to": to,
                    }
                    if not OPERATION.validate_python(op).resolve(self.resolver)[1]:
                        out.append(op)
        return out

    def widen_key(self) -> dict[str, Any]:
        return dict(self.draw(st.sampled_from(self._widenable())))


@st.composite
def change_sequences(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-4 change specs (as YAML-ready dicts), each of 1-4 operations."""
    drawer = Drawer(draw, baseline()[0])
    changes = []
    for number in range(1, draw(st.integers(1, MAX_CHANGES)) + 1):
        drawer.created_here = set()
        drawer.resolver.change_number = number  # archives are named from their change
        drawer.resolver.change_number = number
        operations = [drawer.operation() for _ in range(draw(st.integers(1, MAX_OPS)))]
        drawer.resolver.change_numbers[f"step_{number}"] = number
        changes.append(
            {
                "id": f"step_{number}",
                "description": f"Random change {number}: " + ", ".join(o["op"] for o in operations),
                "operations": operations,
            }
        )
    return changes


COVER_OPS = 8  # operations per change of a covering sequence: MAX_CHANGES of them hold every kind


@st.composite
def covering_sequences(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Change specs that draw every operation of the registry, by construction: the Drawer
    takes the kinds in a drawn order, each as soon as it is possible (``purge`` last: it needs
    an archive of an earlier change), the operations around them and every operation's
    fields drawn as usual. Up to MAX_CHANGES changes of COVER_OPS operations (the row values
    stay one digit), ending once every kind was drawn (a kind not yet possible waits for one
    that enables it: add_check before drop_check, a drop with its data kept before purge)."""
    drawer = Drawer(draw, baseline()[0])
    order = draw(st.permutations([k for k in OP_KINDS if k != "purge"]))
    drawer.pending = [*order, "purge"]
    changes = []
    for number in range(1, MAX_CHANGES + 1):
        if not drawer.pending:
            break
        drawer.created_here = set()
        drawer.resolver.change_number = number
        operations = [drawer.operation() for _ in range(COVER_OPS)]
        drawer.resolver.change_numbers[f"step_{number}"] = number
        changes.append(
            {
                "id": f"step_{number}",
                "description": f"Covering change {number}: "
                + ", ".join(o["op"] for o in operations),
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


def renamed_tables(change: Change) -> dict[str, str]:
    """Each table the change renames (or archives), by its name before → its name after."""
    names: dict[str, str] = {}
    for step in change.steps:
        if isinstance(step, RenameTableStep | ArchiveTableStep):
            now = step.to if isinstance(step, RenameTableStep) else step.archive
            old = next((k for k, v in names.items() if v == step.table_name), step.table_name)
            names[old] = now
    return names


def check_sequence(specs: list[dict[str, Any]], dialect: str, url: str, workdir: Path) -> None:
    changes, migrations = write_project(workdir, specs)
    parsed = sa.make_url(url)
    reset_database(url)
    migrate.upgrade(migrations, parsed, "0000")
    counts: Counter[str] = Counter()
    floor = "base"  # the last change that cannot be undone (purge)
    for change in changes[1:]:
        insert_rows(url, dialect, change.before, counts)
        before, rows_before = inspect_schema(url), row_counts(url)
        migrate.upgrade(migrations, parsed, change.revision)
        after, rows_after = inspect_schema(url), row_counts(url)
        names = renamed_tables(change)
        purged = {s.table.name for s in change.steps if isinstance(s, PurgeTableStep)}
        kept = {t: n for t, n in rows_before.items() if t not in purged}
        assert {t: rows_after[names.get(t, t)] for t in kept} == kept, f"upgrade {change.name}"
        assert change.down_revision is not None
        if any(s.refuses for s in change.inverse_steps):
            with pytest.raises(runtime.Irreversible, match=change.name):
                migrate.downgrade(migrations, parsed, change.down_revision)
            assert inspect_schema(url) == after, f"refused downgrade of {change.name} changed"
            floor = change.revision
            continue
        migrate.downgrade(migrations, parsed, change.down_revision)
        assert inspect_schema(url) == before, f"downgrade of {change.name} left a different schema"
        assert row_counts(url) == rows_before, f"downgrade of {change.name} lost rows"
        migrate.upgrade(migrations, parsed, change.revision)
        assert inspect_schema(url) == after, f"second upgrade of {change.name} differs"
        # the rows of a renamed table keep counting under its new name
        moved = {names[t]: counts.pop(t) for t in list(counts) if t in names}
        counts.update(moved)
    migrate.downgrade(migrations, parsed, floor)
    if floor == "base":
        assert inspect_schema(url) == {}


def composite_fks(specs: list[dict[str, Any]]) -> int:
    """The composite foreign keys the changes add (create_table's or add_foreign_key's)."""
    ops = [op for change in specs for op in change["operations"]]
    keys = [fk for op in ops for fk in op.get("foreign_keys", [])]
    keys += [op for op in ops if op["op"] == "add_foreign_key"]
    return sum(len(fk["columns"]) > 1 for fk in keys)


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
    @example(specs=CONSTRAINTS)
    def run(specs: list[dict[str, Any]]) -> None:
        seen.update(op["op"] for change in specs for op in change["operations"])
        seen["composite foreign keys"] += composite_fks(specs)
        check_sequence(specs, dialect, db_url, next(workdirs))

    run()
    # Which kinds these examples drew is up to Hypothesis (a random run once drew no purge in
    # 12 examples): the covering test below draws every kind by construction.
    print(f"op kinds drawn ({dialect}): {dict(sorted(seen.items()))}")


@pytest.mark.slow
@pytest.mark.db
def test_a_sequence_drawing_every_operation_upgrades_downgrades_and_upgrades_again(
    dialect: str, db_url: str, tmp_path: Path
) -> None:
    """One covering sequence (covering_sequences) through the same cycle as above."""
    seen: Counter[str] = Counter()
    workdirs = (tmp_path / f"example_{n}" for n in itertools.count())

    @settings(
        max_examples=1,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        phases=tuple(Phase) if SHRINK else (Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(specs=covering_sequences())
    def run(specs: list[dict[str, Any]]) -> None:
        kinds = Counter(op["op"] for change in specs for op in change["operations"])
        assert set(kinds) == set(OP_KINDS), f"not drawn: {set(OP_KINDS) - set(kinds)}"
        seen.update(kinds)
        check_sequence(specs, dialect, db_url, next(workdirs))

    run()
    print(f"op kinds drawn ({dialect}, covering): {dict(sorted(seen.items()))}")
