"""The SQLite writer: the parent check and multi-row INSERTs, inside SQLAlchemy's transaction.

The transaction (or, inside the caller's, the SAVEPOINT) is SQLAlchemy's own
(``begin()`` / ``begin_nested()``); within it the statements go to the driver connection
SQLAlchemy hands out (``driver_connection``), through its public API: ``sqlite3`` on a sync
connection, ``aiosqlite`` (``execute_fetchall`` / ``executemany``) on an async one.

Each batch is written as one prepared INSERT of up to :data:`VALUES_ROWS` rows
(``VALUES (...), (...)``, within the limit on bound parameters) executemany'd over the
batch's full groups, plus one INSERT of the remainder: a statement step per group instead of
one per row, which is what pays for the validation (docs/ingest.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from functools import cache
from itertools import chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from marketdata.ingest.call import Call
from marketdata.ingest.validation import Row

# Rows per INSERT statement, at most (and at most the connection's limit on bound
# parameters, 32,766 since SQLite 3.32, 999 before). Measured on 20 1,000-row calls against
# the ceiling (sqlite3 executemany of one-row INSERTs): 75 % with 1 row per statement, 86 %
# with 50, 93 % with 250, 96 % with 1,000 (ticks; alerts 77 / 88 / 96 / 100 %).
VALUES_ROWS = 1_000


@cache
def library_max_params() -> int:
    """The SQLite library's limit on bound parameters (what a new connection starts with:
    the async connections' own ``sqlite3`` object is aiosqlite's, out of reach)."""
    probe = sqlite3.connect(":memory:")
    try:
        return probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        probe.close()


@cache
def _values_sql(head: str, width: int, rows: int) -> str:
    # Cached for the full-group sizes only (see _statements): a remainder's is built each time
    # rather than keeping up to a thousand of up to 40 kB.
    return _insert_sql(head, width, rows)


def _insert_sql(head: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)}"


def _parent_queries(
    call: Call, quote: Callable[[str], str], max_params: int
) -> Iterator[tuple[str, list[int]]]:
    """The parent check: ``(position, id)`` of every referenced parent found, in as few
    statements as the limit on bound parameters allows (one, nearly always: each statement
    is a round trip to aiosqlite's thread)."""
    parts: list[str] = []
    params: list[int] = []
    for position, parent, ids in call.references():
        for start in range(0, len(ids), max_params):
            chunk = ids[start : start + max_params]
            if params and len(params) + len(chunk) > max_params:
                yield " UNION ALL ".join(parts), params
                parts, params = [], []
            marks = ", ".join("?" * len(chunk))
            parts.append(f"SELECT {position}, id FROM {quote(parent)} WHERE id IN ({marks})")
            params.extend(chunk)
    if parts:
        yield " UNION ALL ".join(parts), params


def _statements(
    call: Call, quote: Callable[[str], str], max_params: int
) -> Iterator[tuple[str, list[Row]]]:
    """Per batch, the executemany calls: the multi-row INSERT over the full groups, then one
    INSERT of the rest."""
    spec = call.spec
    width = len(spec.targets)
    head = f"INSERT INTO {quote(spec.table)} ({', '.join(map(quote, spec.targets))})"
    group = max(1, min(VALUES_ROWS, max_params // width))
    flatten = chain.from_iterable
    for batch in call.batches():
        full = len(batch) - len(batch) % group
        if full:
            params = [tuple(flatten(batch[i : i + group])) for i in range(0, full, group)]
            yield _values_sql(head, width, group), params
        if full < len(batch):
            rest = _insert_sql(head, width, len(batch) - full)
            yield rest, [tuple(flatten(batch[full:]))]


def write_sync(conn: sa.Connection, call: Call) -> int:
    """On a sync (pysqlite) connection; the number of batches written."""
    with conn.begin_nested() if conn.in_transaction() else conn.begin():
        dbapi: Any = conn.connection.driver_connection
        max_params = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        quote = conn.dialect.identifier_preparer.quote
        found: dict[int, set[int]] = {}
        for query, ids in _parent_queries(call, quote, max_params):
            for position, id_ in dbapi.execute(query, ids):
                found.setdefault(position, set()).add(id_)
        call.settle(found)
        try:
            for sql, params in _statements(call, quote, max_params):
                dbapi.executemany(sql, params)
        except Exception as exc:
            raise call.refused(exc) from exc
    return call.batch_count


async def write_async(conn: AsyncConnection, call: Call) -> int:
    """On an async (aiosqlite) connection; the number of batches written."""
    async with conn.begin_nested() if conn.in_transaction() else conn.begin():
        raw: Any = (await conn.get_raw_connection()).driver_connection
        max_params = library_max_params()
        quote = conn.dialect.identifier_preparer.quote
        found: dict[int, set[int]] = {}
        for query, ids in _parent_queries(call, quote, max_params):
            for position, id_ in await raw.execute_fetchall(query, ids):
                found.setdefault(position, set()).add(id_)
        call.settle(found)
        try:
            for sql, params in _statements(call, quote, max_params):
                await raw.executemany(sql, params)
        except Exception as exc:
            raise call.refused(exc) from exc
    return call.batch_count
