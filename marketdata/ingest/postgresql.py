"""The PostgreSQL writer: the parent check and COPY, inside SQLAlchemy's transaction.

The transaction (or, inside the caller's, the SAVEPOINT) is SQLAlchemy's own
(``begin()`` / ``begin_nested()``). The parent check runs through SQLAlchemy, which also
starts the driver's transaction (the asyncpg adapter begins lazily, at the first statement);
the rows then go to the driver connection SQLAlchemy hands out (``driver_connection``) by its
public COPY: asyncpg ``copy_records_to_table`` (binary COPY) or psycopg ``cursor.copy``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from marketdata.ingest.call import Call


def _parent_check(
    call: Call, dialect: sa.Dialect, param: str
) -> tuple[str, tuple[list[int], ...]] | None:
    """One statement for every referenced parent: ``(position, id)`` of each one found.

    FOR KEY SHARE is held to the end of the transaction, so the parents cannot be deleted
    between the check and the write (it is the lock the foreign-key trigger takes anyway).
    ``param`` is the driver's placeholder for the n-th parameter (``$1``, ``%s``).
    """
    references = call.references()
    if not references:
        return None
    quote = dialect.identifier_preparer.quote
    ctes = ", ".join(
        f"p{position} AS (SELECT id FROM {quote(parent)} "
        f"WHERE id = ANY({param.format(n + 1)}::integer[]) FOR KEY SHARE)"
        for n, (position, parent, _) in enumerate(references)
    )
    union = " UNION ALL ".join(
        f"SELECT {position}, id FROM p{position}" for position, _, _ in references
    )
    return f"WITH {ctes} {union}", tuple(ids for _, _, ids in references)


def _found(rows: Any) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for position, id_ in rows:
        found.setdefault(position, set()).add(id_)
    return found


async def write_async(conn: AsyncConnection, call: Call) -> int:
    """On an async (asyncpg) connection; the number of batches written."""
    if conn.dialect.driver != "asyncpg":
        raise ValueError(f"unsupported async driver {conn.dialect.driver!r}: asyncpg only")
    check = _parent_check(call, conn.dialect, "${}")
    written = 0
    async with conn.begin_nested() if conn.in_transaction() else conn.begin():
        call.settle(_found(await conn.exec_driver_sql(*check)) if check else {})
        raw: Any = (await conn.get_raw_connection()).driver_connection
        table, columns = call.spec.table, call.spec.targets
        try:
            for batch in call.batches():
                await raw.copy_records_to_table(table, records=batch, columns=columns)
                written += 1
        except Exception as exc:
            raise call.refused(exc) from exc
    return written


def write_sync(conn: sa.Connection, call: Call) -> int:
    """On a sync (psycopg) connection; the number of batches written."""
    if conn.dialect.driver != "psycopg":
        raise ValueError(f"unsupported sync driver {conn.dialect.driver!r}: psycopg only")
    check = _parent_check(call, conn.dialect, "%s")
    written = 0
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(n) for n in call.spec.targets)
    copy_sql = f"COPY {quote(call.spec.table)} ({names}) FROM STDIN"
    with conn.begin_nested() if conn.in_transaction() else conn.begin():
        call.settle(_found(conn.exec_driver_sql(*check)) if check else {})
        raw: Any = conn.connection.driver_connection
        try:
            with raw.cursor() as cursor:
                for batch in call.batches():
                    with cursor.copy(copy_sql) as copy:
                        write_row = copy.write_row
                        for values in batch:
                            write_row(values)
                    written += 1
        except Exception as exc:
            raise call.refused(exc) from exc
    return written
