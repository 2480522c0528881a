"""What the validation SQL expects to find: catalogue rows derived from a schema state."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from generator import coltypes, dialects, indexexpr
from generator.coltypes import SqlType
from generator.ops.base import RowCheck, Step
from generator.state import ForeignKey, Index, Schema, Table

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


def index_row(index: Index, dialect: str, valid: bool = True) -> Row:
    """``valid=False``: the row of an index a killed concurrent build or drop left INVALID."""
    where = index_predicate(index, dialect)
    if dialect == dialects.POSTGRESQL:
        # pg_index.indkey lists the INCLUDE columns after the key's
        columns = _csv((*(pg_key_text(index, k) for k in index.columns), *index.include))
        return (index.name, columns, _yes(index.unique), _yes(valid), where)
    if index.expressions:
        # the key list of the DDL the migration wrote, without quotes, parentheses and spaces
        keys = (
            (index.key_sql(k) if index.key_expr(k) is not None else k)
            + (" DESC" if k in index.descending else "")
            for k in index.columns
        )
        columns = ",".join(keys).translate(_UNWRAP_KEY)
        return (index.name, columns, _yes(index.unique), where)
    return (index.name, _csv(index.columns), _yes(index.unique), where)


def pg_key_text(index: Index, key: str) -> str:
    """A key as the PostgreSQL index check reads it: a column's name, or an expression key's
    ``pg_get_indexdef`` text without quotes and parentheses."""
    tree = index.key_expr(key)
    if tree is None:
        return key
    return indexexpr.pg_key(tree, dict(index.column_types)).translate(_UNWRAP)


def index_predicate(index: Index, dialect: str) -> str:
    """A partial index's predicate as the catalogue query reads it back, without quotes and
    parentheses: SQLite keeps the text the migration wrote; PostgreSQL deparses its tree."""
    if index.where is None:
        return ""
    if dialect == dialects.POSTGRESQL:
        return indexexpr.pg_deparsed(index.where, dict(index.column_types)).translate(_UNWRAP)
    return index.where_sql(dialect).translate(_UNWRAP).strip()


_UNWRAP = str.maketrans("", "", '"()')
_UNWRAP_KEY = str.maketrans("", "", '"() ')


# Step.interrupted: a check name so prefixed says the row of the state the change started
# from may be missing (the rest of it, as ever, that the row may be found besides)
MAY_BE_MISSING = "missing:"


def fk_row(fk: ForeignKey, dialect: str, validated: bool = True) -> Row:
    """``validated=False``: a key added NOT VALID whose VALIDATE has not run yet."""
    # a composite key: its columns and the referenced ones, comma-separated in order
    row: Row = (
        _csv(fk.columns),
        fk.ref_table,
        _csv(fk.ref_columns),
        dialects.FK_ACTION_SQL[fk.on_delete],
    )
    return (fk.name, *row, _yes(validated)) if dialect == dialects.POSTGRESQL else row


def catalogue_rows(t: TableExpectation) -> dict[str, list[Row]]:
    """The expected rows of each catalogue check of a table, by the check's name (as
    templates/validation/<dialect>_table.sql.j2 names it)."""
    return {
        f"{t.table}.columns": t.columns,
        f"{t.table}.primary_key": t.primary_key,
        f"{t.table}.indexes": t.indexes,
        f"{t.table}.unique_constraints": t.uniques,
        f"{t.table}.foreign_keys": t.foreign_keys,
        f"{t.table}.check_constraints": t.checks,
    }


@functools.lru_cache(maxsize=4096)
def expect_table(table: Table, dialect: str, candidates: frozenset[str]) -> TableExpectation:
    """Cached: most tables are unchanged from one change to the next (frozen, hashable)."""
    pg = dialect == dialects.POSTGRESQL
    columns: list[Row] = [
        (
            c.name,
            dialects.catalog_type(c, dialect),
            "YES" if c.nullable else "NO",
            dialects.catalog_default(c, dialect),
        )
        for c in table.physical()
    ]
    pk: list[Row] = []
    if table.primary_key:
        cols = _csv(table.primary_key)
        pk = [(table.pk_name, cols)] if pg else [(cols,)]
    indexes: list[Row] = [index_row(i, dialect) for i in table.indexes]
    uniques: list[Row] = [
        (u.name, _csv(u.columns)) if pg else (_csv(u.columns),) for u in table.uniques
    ]
    fks: list[Row] = [fk_row(f, dialect) for f in table.foreign_keys]
    checks: list[Row] = [
        (c.name, "YES") if pg else (c.name,) for c in table.checks if c.on_table(dialect)
    ]
    if pg:
        # a range check held by its column's domain (state.Domain): the domain's CHECK, NOT
        # VALID (the migration proved the rows already there; new rows are checked)
        checks += sorted({(c.domain.constraint, "NO") for c in table.physical() if c.domain})
    typed = type_check_names(table, dialect)
    checks += [(name,) for name in typed]
    return TableExpectation(
        table.name,
        columns,
        sorted(pk, key=str),
        sorted(indexes, key=str),
        sorted(uniques, key=str),
        sorted(fks, key=str),
        sorted(checks, key=str),
        sorted(candidates | {c.name for c in table.checks} | set(typed)),
    )


def type_check_names(table: Table, dialect: str) -> list[str]:
    """The names of the CHECKs that hold SQLite's uuid and json columns to their form
    (dialects.type_check): the catalogue check finds them, or finds them gone."""
    found = (dialects.type_check(c.name, c.type, dialect) for c in table.columns)
    return [check[0] for check in found if check is not None]


def expect_schema(schema: Schema, dialect: str, other: Schema) -> list[TableExpectation]:
    """Expectations for ``schema``; ``other`` is the state on the far side of the change, whose
    CHECK names must be looked for (and found absent) too."""
    out = []
    # Archived tables (drop_table) are tables of the database too: checked alike.
    for t in sorted((*schema.tables, *schema.archives), key=lambda t: t.name):
        twin = other.table(t.name) or other.archive(t.name)
        # The states of a history share their unchanged tables (the very same objects):
        # looked up by identity before expect_table hashes them, which walks every column.
        key = (id(t), id(twin), dialect)
        seen = _EXPECTED.get(key)
        if seen is None or seen[0] is not t or seen[1] is not twin:
            candidates = _check_names(twin, dialect) if twin else frozenset()
            # the same table with another twin of the same CHECK names: no hash of the table
            by_table = _EXPECTED.get((id(t), candidates, dialect))
            if by_table is None or by_table[0] is not t:
                by_table = (t, None, expect_table(t, dialect, candidates))
            if len(_EXPECTED) >= 4096:  # a long-lived process: keep it bounded
                _EXPECTED.clear()
            _EXPECTED[(id(t), candidates, dialect)] = by_table
            seen = _EXPECTED[key] = (t, twin, by_table[2])
        out.append(seen[2])
    return out


# (id(table), id(twin), dialect) or (id(table), the twin's CHECK names, dialect) -> (table,
# twin: kept alive so that their ids are not reused; the expectation)
_EXPECTED: dict[
    tuple[int, int | frozenset[str], str], tuple[Table, Table | None, TableExpectation]
] = {}


def _check_names(table: Table, dialect: str) -> frozenset[str]:
    """The names of the table's CHECKs, its type checks' too (memoized by identity)."""
    seen = _CHECK_NAMES.get((id(table), dialect))
    if seen is None or seen[0] is not table:
        names = frozenset(c.name for c in table.checks) | set(type_check_names(table, dialect))
        if len(_CHECK_NAMES) >= 4096:
            _CHECK_NAMES.clear()
        seen = _CHECK_NAMES[(id(table), dialect)] = (table, names)
    return seen[1]


_CHECK_NAMES: dict[tuple[int, str], tuple[Table, frozenset[str]]] = {}


# ------------------------------------------------------------------------ data checks


@dataclass(frozen=True)
class Conversion:
    """A converted column: no value may move by ``tolerance`` or more (0: must be equal)."""

    table: str
    key: tuple[str, ...]
    column: str
    tolerance: str
    # PostgreSQL: the column's type is a domain (state.Domain): the snapshot keeps its base
    # type, so that no temporary table holds the domain a downgrade drops
    base: str | None = None


@dataclass(frozen=True)
class Fit:
    """Values of ``table.column`` must fit ``type`` unchanged (from float to a decimal: after
    rounding to its scale): the rows matching ``where`` do not, and the pre-check lists them
    before any DDL."""

    table: str
    key: tuple[str, ...]
    column: str
    type: str
    postgresql: str  # the WHERE condition of the rows that do not fit, per dialect
    sqlite: str

    @property
    def name(self) -> str:
        kind = self.type.replace("(", "_").replace(",", "_").replace(")", "")
        return f"{self.table}.{self.column}.fits_{kind}"

    def where(self, dialect: str) -> str:
        return self.postgresql if dialect == dialects.POSTGRESQL else self.sqlite


@dataclass(frozen=True)
class DataExpectation:
    counted: list[str]  # tables whose row count the change must not alter
    conversions: list[Conversion]
    fits: list[Fit]
    orphans: list[ForeignKey]
    # PostgreSQL: the counted tables a type change of this change may rewrite, in either
    # direction. Their rows are counted before and after (a rewrite gives the table a new
    # relfilenode, as a TRUNCATE does); every other counted table is checked through the
    # change's own transaction statistics, which need no scan (templates/validation/_data).
    rewritten: list[str] = field(default_factory=list)
    # the steps' own offending-row queries (Step.prechecks), run before any DDL
    prechecks: tuple[RowCheck, ...] = ()

    @property
    def snapshots(self) -> bool:
        return bool(self.counted)


def tolerance_of(types: Sequence[SqlType]) -> str:
    """The drift a chain of numeric conversions may cause (the drift check's bound)."""
    return _tolerance(types)


def _tolerance(types: Sequence[SqlType]) -> str:
    scales = [t.scale for t in types if t.kind == "decimal" and t.scale is not None]
    if scales:
        return "0." + "0" * (min(scales) - 1) + "1" if min(scales) > 0 else "1"
    return "0"


def expect_data(
    steps: Sequence[Step], before: Schema, after: Schema, dialect: str | None = None
) -> DataExpectation:
    """Data checks around ``steps`` run from ``before`` to ``after``.

    The same expectation serves both files of a change: snapshots are taken by whichever
    file runs before the DDL and compared by whichever runs after it.
    """
    touched = {s.table_name for s in steps}
    # Every table the change keeps, touched or not: a step (or a hand edit) that deletes rows
    # of another table must not pass. count(*) is what a touched table already paid.
    counted = sorted(t.name for t in after.tables if before.table(t.name))
    fits = []
    # every type a converted column passes through, per (table, column): one drift check each
    chains: dict[tuple[str, str], list[SqlType]] = {}
    for step in steps:
        change = step.type_change()
        if change is None:
            continue
        # an online conversion checks drift per batch (no snapshot); its fit-check stays,
        # run before the direction that narrows (and per batch as well)
        batched = dialect is not None and step.checked_in_batches(dialect)
        column, new = change
        old = column.type
        table, final = before.table(step.table_name), after.table(step.table_name)
        if table is None or table.column(column.name) is None:
            continue  # created by these steps: it holds no rows from before them
        survives = final is not None and final.column(column.name) is not None
        if old.family == "numeric" and table.primary_key and survives and not batched:
            chains.setdefault((table.name, column.name), [old]).append(new)
        # The fit-check runs before any DDL, on the values as they are: of the column's type
        # before the change, which a chain (uuid -> text -> uuid) left behind. Tested against
        # that type when it converts to the new one directly (nothing to check when every
        # value of it fits: whatever passed the earlier links of the chain is unchanged).
        start = table.column(column.name).type  # type: ignore[union-attr]
        if start != old and (start == new or coltypes.conversion_problem(start, new) is None):
            old = start
        condition = {d: dialects.misfit_sql(old, new, column.name, d) for d in dialects.DIALECTS}
        if condition[dialects.POSTGRESQL] is not None:
            fits.append(
                Fit(
                    table.name,
                    table.primary_key,
                    column.name,
                    str(new),
                    condition[dialects.POSTGRESQL] or "",
                    condition[dialects.SQLITE] or "",
                )
            )
    fits += [fit for step in steps for fit in step.fits()]
    orphans = [f for t in sorted(touched) if (tab := before.table(t)) for f in tab.foreign_keys]
    conversions = [
        Conversion(
            t,
            before.get(t).primary_key,
            c,
            _tolerance(types),
            (d.base if (col := before.get(t).column(c)) and (d := col.domain) else None),
        )
        for (t, c), types in chains.items()
    ]
    rewritten = sorted(
        {
            s.table_name
            for s in steps
            if s.table_name in counted
            # the risk model decides (either direction: the checks serve up and down)
            and (
                s.risk(dialects.POSTGRESQL).rewrites
                or s.reverse().risk(dialects.POSTGRESQL).rewrites
            )
        }
    )
    prechecks = tuple(c for step in steps for c in step.prechecks(before))
    return DataExpectation(
        counted, sorted(conversions, key=str), fits, orphans, rewritten, prechecks
    )


# ------------------------------------------------------------------------ the check model

# What each kind of check proves, by its aspect (the templates name the aspect they render).
PROVES = {
    "tables": "the schema has exactly these tables",
    "columns": "the table has exactly these columns, with these types, nullability and defaults",
    "primary_key": "the table's primary key is on these columns",
    "indexes": "the table has exactly these indexes (columns, uniqueness, validity, predicate)",
    "unique_constraints": "the table has exactly these unique constraints",
    "foreign_keys": "the table has exactly these foreign keys, with these ON DELETE actions",
    "check_constraints": "the table has exactly these CHECK constraints, validated",
    "orphans": "no row references a missing parent row",
    "fits": "every value fits the narrower type unchanged",
    "precheck": "no row would make a step of the change fail",
    "snapshot": "records what the data checks after the DDL compare with",
    "row_counts": "the change deleted no rows of a table it keeps",
    "drift": "no converted value moved by more than the conversion's tolerance",
}

KINDS = ("check", "snapshot", "data-check", "fit-check")


@dataclass(frozen=True)
class Check:
    """One check of a validation file, as data: the runtime, the review and `verify` read
    these (from the ``.json`` file rendered beside each ``.sql``), never the SQL text.

    ``kind``: ``check`` (a query returning the rows that break it: migrations and `verify`),
    ``snapshot`` (CREATE TEMP TABLE ``name``, run before the DDL), ``data-check`` (reads a
    snapshot: migrations only), ``fit-check`` (rows a step could not keep; before the DDL).
    ``table`` is empty for a check of the whole schema. ``sql``: the query per dialect.
    """

    name: str
    kind: str
    table: str
    proves: str
    sql: dict[str, str]

    def record(self, dialect: str) -> dict[str, str]:
        """The check's object in a dialect's ``.json`` validation file."""
        return dict(
            name=self.name,
            kind=self.kind,
            table=self.table,
            proves=self.proves,
            sql=self.sql[dialect],
        )


def merge(*dialect_checks: Sequence[Check]) -> list[Check]:
    """One check per (kind, name), holding the SQL of every dialect that runs it."""
    out: dict[tuple[str, str], Check] = {}
    for found in dialect_checks:
        for c in found:
            seen = out.get((c.kind, c.name))
            out[(c.kind, c.name)] = (
                c if seen is None else Check(c.name, c.kind, c.table, c.proves, seen.sql | c.sql)
            )
    return list(out.values())
