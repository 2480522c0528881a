"""What an interrupted change can leave behind: the exact catalogue rows a re-run tolerates.

On PostgreSQL a change with steps that must run outside a transaction (CREATE/DROP INDEX
CONCURRENTLY, VALIDATE CONSTRAINT) commits part of itself before its revision is stamped: every
step up to its last such step (the transaction before a non-transactional block is committed
when the block starts). A kill or a failure there leaves the database "half-applied", and
running the change again, or its inverse, must accept exactly the states those steps can leave
each object in, and nothing else.

The answer is data, derived from the plan and the schema states, never from SQL text: for each
catalogue check of the side that runs before the DDL, the rows (problem, *values) that check
may report. The runtime refuses any other row before the change's first step.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from generator import checks, dialects
from generator.load import Change
from generator.plan import Unit, applied, plan
from generator.state import Schema, Table

Row = tuple[str | None, ...]
Tolerance = dict[str, list[Row]]  # check name -> the failing rows it may show
Plans = dict[str, dict[str, list[Unit]]]  # direction -> dialect -> units (as render's)
MISSING, EXTRA = "expected, not found", "found, not expected"


def committed_prefix(units: list[Unit]) -> list[Unit]:
    """The units that can have committed before the revision stamp: all up to the last one
    that runs outside a transaction (none when every unit is transactional)."""
    last = max((i for i, u in enumerate(units) if not u.transactional), default=-1)
    return units[: last + 1]


def _half_done(
    units: list[Unit], start: Schema, dialect: str
) -> Iterator[Schema | tuple[str, checks.Row]]:
    """Every state the committed prefix can leave, at each point where something commits, and
    the extra catalogue rows of a step interrupted part-way, with the check that shows them:
    an INVALID index (a killed concurrent build or drop), a swapped key not yet validated.

    Transactional units commit only together, when the next non-transactional block starts;
    each statement of a concurrent-index block commits on its own, and so does each swap of
    a swap_fk_actions unit, then each VALIDATE.
    """
    schema = start
    for unit in committed_prefix(units):
        if unit.transactional:
            for step in unit.steps:
                schema = applied(step, schema)
            continue
        yield schema  # the transaction before the block, committed as the block starts
        for step in unit.steps:
            yield from step.interrupted(dialect)
            schema = applied(step, schema)
            if unit.group is not None and unit.group.commits_each_step:
                yield schema
        yield schema


def _rows(schema: Schema, dialect: str) -> dict[str, frozenset[Row]]:
    out: dict[str, frozenset[Row]] = {"tables": _table_names(schema)}
    for table in schema.tables:
        out.update(_table_rows_of(table, dialect))
    return out


def _table_names(schema: Schema) -> frozenset[Row]:
    return frozenset((t.name,) for t in schema.tables)


def _table_rows_of(table: Table, dialect: str) -> dict[str, frozenset[Row]]:
    # The states of a history share their unchanged tables: the very same objects, looked
    # up by identity before they are hashed (the entry keeps the table, so its id stays).
    seen = _SEEN.get((id(table), dialect))
    if seen is None or seen[0] is not table:
        if len(_SEEN) >= 4096:
            _SEEN.clear()
        seen = _SEEN[(id(table), dialect)] = (table, _table_rows(table, dialect))
    return seen[1]


_SEEN: dict[tuple[int, str], tuple[Table, dict[str, frozenset[Row]]]] = {}


@functools.lru_cache(maxsize=4096)
def _table_rows(table: Table, dialect: str) -> dict[str, frozenset[Row]]:
    """Cached: the states a history passes through share most of their tables. The caller
    must not change the dict."""
    expected = checks.expect_table(table, dialect, frozenset())
    return {
        name: frozenset(_text(r) for r in rows)
        for name, rows in checks.catalogue_rows(expected).items()
    }


_NONE: dict[str, frozenset[Row]] = {}  # the rows of a table the state lacks

# (id(expected rows), id(found rows)) -> (both, kept alive so that their ids are not reused;
# the differing rows per check)
_DIFFS: dict[
    tuple[int, int],
    tuple[dict[str, frozenset[Row]], dict[str, frozenset[Row]], list[tuple[str, set[Row]]]],
] = {}


def _row_diff(
    expected: dict[str, frozenset[Row]], found: dict[str, frozenset[Row]]
) -> list[tuple[str, set[Row]]]:
    """Per check of a table (``expected``: its rows in the base; ``found``: in a half-applied
    state), the failing rows it would show, where there are any. Once per pair of row sets:
    they are :func:`_table_rows`'s, one object per table value, and a history interrupts
    the same table states again and again (an index built and dropped in turn)."""
    key = (id(expected), id(found))
    seen = _DIFFS.get(key)
    if seen is None or seen[0] is not expected or seen[1] is not found:
        out = []
        for name, rows in expected.items():
            other = found.get(name, frozenset())
            if other is rows:
                continue
            diff = _failing(rows, other)
            if diff:
                out.append((name, diff))
        if len(_DIFFS) >= 4096:
            _DIFFS.clear()
        seen = _DIFFS[key] = (expected, found, out)
    return seen[2]


def _failing(expected: frozenset[Row], found: frozenset[Row]) -> set[Row]:
    """The rows a catalogue check shows: those expected and not found, and the other way."""
    return {(MISSING, *r) for r in expected - found} | {(EXTRA, *r) for r in found - expected}


def _text(row: checks.Row) -> Row:
    """As the database reports it: text, or NULL."""
    return tuple(None if v is None else str(v) for v in row)


def _interrupted(
    change: Change, dialect: str, plans: Plans | None = None
) -> list[Schema | tuple[str, checks.Row]]:
    """What ``change`` interrupted half-applied can leave, in either direction (a half-done
    upgrade can be undone by the downgrade and the other way round): :func:`_half_done` of
    both sides. ``plans``: the units of each direction per dialect, when planned already."""
    sides = (
        ("upgrade", change.steps, change.before),
        ("downgrade", change.inverse_steps, change.after),
    )
    return [
        state
        for direction, steps, start in sides
        for state in _half_done(
            plans[direction][dialect] if plans is not None else plan(steps, start, dialect),
            start,
            dialect,
        )
    ]


def tolerance(
    change: Change,
    direction: str,
    dialect: str,
    interrupted: list[Schema | tuple[str, checks.Row]] | None = None,
) -> Tolerance:
    """The failing rows the checks before ``direction``'s DDL may show when ``change`` was
    interrupted half-applied, in either direction (a half-done upgrade can be undone by the
    downgrade and the other way round); empty when no step of it commits on its own.
    ``interrupted``: :func:`_interrupted` of the change, when known already."""
    if interrupted is None:
        interrupted = _interrupted(change, dialect)
    if not interrupted:
        return {}
    base_schema = change.before if direction == "upgrade" else change.after
    base_tables = _table_names(base_schema)
    base: dict[str, frozenset[Row]] | None = None  # every check's rows: for single rows only
    tolerated: dict[str, set[Row]] = {}

    def differ(name: str, expected: frozenset[Row], found: frozenset[Row]) -> None:
        if found is expected:  # an unchanged table's rows: the very same set
            return
        rows = _failing(expected, found)
        if rows:
            tolerated.setdefault(name, set()).update(rows)

    for state in interrupted:
        if isinstance(state, Schema):
            differ("tables", base_tables, _table_names(state))
            # A table the state shares with the base (the very same object) has the very
            # same rows: only the others are compared, each with the state's table of its
            # name (the checks of a table are named after it; one the state lacks has none).
            mine = {id(t) for t in state.tables}
            for t in base_schema.tables:
                if id(t) in mine:
                    continue
                twin = state.table(t.name)
                found_rows = _table_rows_of(twin, dialect) if twin is not None else _NONE
                expected_rows = _table_rows_of(t, dialect)
                if found_rows is expected_rows:  # an equal table: the very same rows
                    continue
                for name, rows in _row_diff(expected_rows, found_rows):
                    tolerated.setdefault(name, set()).update(rows)
        else:
            name, row = state
            if base is None:
                base = _rows(base_schema, dialect)
            if name.startswith(checks.MAY_BE_MISSING):
                name = name[len(checks.MAY_BE_MISSING) :]
                if name in base and _text(row) in base[name]:
                    tolerated.setdefault(name, set()).add((MISSING, *_text(row)))
                continue
            if name in base and _text(row) not in base[name]:
                tolerated.setdefault(name, set()).add((EXTRA, *_text(row)))
    return {name: sorted(rows, key=_order) for name, rows in sorted(tolerated.items())}


def _order(row: Row) -> tuple[str, ...]:
    return tuple("" if v is None else v for v in row)


def tolerances(change: Change, plans: Plans | None = None) -> dict[str, dict[str, Tolerance]]:
    """Per direction, per dialect with a step that commits on its own: the tolerance.
    ``plans``: the units of each direction per dialect, when planned already (render).

    PostgreSQL only: the half-applied note is a table comment, which SQLite has not. SQLite's
    only units that commit on their own are backfills, which resume from their own progress
    (generator.batches); a change killed in a backfill after DDL of its own is refused by its
    checks on a re-run there (give such a backfill a change of its own on SQLite)."""
    # the same interrupted states serve both directions
    interrupted = {dialects.POSTGRESQL: _interrupted(change, dialects.POSTGRESQL, plans)}
    return {
        direction: {
            dialect: tol
            for dialect in dialects.DIALECTS
            if dialect == dialects.POSTGRESQL
            and (tol := tolerance(change, direction, dialect, interrupted[dialect]))
        }
        for direction in ("upgrade", "downgrade")
    }
