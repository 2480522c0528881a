"""Bulk ingest of ticks and alert logs: every row validated in Python, then COPY
(PostgreSQL) or multi-row INSERTs executemany'd (SQLite).

:func:`insert_ticks` and :func:`insert_alerts` take an async connection
(:class:`~sqlalchemy.ext.asyncio.AsyncConnection`) of the application's engine
(:func:`marketdata.create_app_engine`: asyncpg or aiosqlite); :func:`insert_ticks_sync` and
:func:`insert_alerts_sync` take a sync :class:`~sqlalchemy.engine.Connection` (psycopg or
pysqlite) and share all of the validation. See docs/ingest.md for the semantics.

The package is split by job:

* :mod:`~marketdata.ingest.validation`: the tables' input columns, taken from the models'
  ``__table__``, and the checks of a row (the reference one and the column-wise one);
* :mod:`~marketdata.ingest.call`: one call's arguments, validation, foreign-key verdict,
  batches and result;
* :mod:`~marketdata.ingest.sqlite` and :mod:`~marketdata.ingest.postgresql`: the writers,
  each inside SQLAlchemy's transaction (a SAVEPOINT inside the caller's), with the driver's
  public API for the bulk statements;
* :mod:`~marketdata.ingest.results`: the result and the errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from marketdata.ingest import postgresql, sqlite
from marketdata.ingest.call import DEFAULT_BATCH_SIZE, Call
from marketdata.ingest.results import (
    FieldError,
    IngestRefused,
    IngestResult,
    InvalidRows,
    OnInvalid,
    RejectedRow,
)
from marketdata.ingest.validation import ALERTS, TICKS, TableSpec

__all__ = [
    "ALERTS",
    "DEFAULT_BATCH_SIZE",
    "TICKS",
    "FieldError",
    "IngestRefused",
    "IngestResult",
    "InvalidRows",
    "OnInvalid",
    "RejectedRow",
    "TableSpec",
    "insert_alerts",
    "insert_alerts_sync",
    "insert_ticks",
    "insert_ticks_sync",
]


async def insert_ticks(
    conn: AsyncConnection,
    rows: Iterable[Mapping[str, Any]],
    *,
    on_invalid: OnInvalid = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> IngestResult:
    """Insert ticks into ``market_data``: validate every row, then COPY / executemany.

    ``rows``: mappings with ``instrument_id``, ``timestamp``, ``price`` and optionally
    ``bid``, ``ask``, ``open_price``, ``high_price``, ``low_price``, ``volume``.

    ``on_invalid="raise"`` (default): any bad row refuses the call, :class:`InvalidRows`
    lists them all (input index from 0, field, reason) and nothing is written.
    ``on_invalid="skip"``: the valid rows are written, the others come back in
    :attr:`IngestResult.rejected`.

    The call is atomic: inside the caller's transaction it runs under a SAVEPOINT (the caller
    commits); on a connection outside a transaction it begins and commits its own. If the
    database refuses a validated row, that SAVEPOINT / transaction is rolled back and
    :class:`IngestRefused` is raised. ``batch_size`` rows go into each COPY (PostgreSQL,
    asyncpg ``copy_records_to_table``) or executemany (SQLite). See docs/ingest.md.
    """
    return await _insert(conn, TICKS, rows, on_invalid, batch_size)


async def insert_alerts(
    conn: AsyncConnection,
    rows: Iterable[Mapping[str, Any]],
    *,
    on_invalid: OnInvalid = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> IngestResult:
    """Insert alert logs into ``alert_logs``; semantics as :func:`insert_ticks`.

    ``rows``: mappings with ``rule_id``, ``instrument_id``, ``timestamp``,
    ``trigger_value``, ``threshold_value``, ``severity`` and optionally ``status`` (default
    ``"triggered"``), ``message``, ``acknowledged_at``, ``acknowledged_by``. Both the rule
    and the instrument must exist (they are not checked against each other: the schema does
    not tie them).
    """
    return await _insert(conn, ALERTS, rows, on_invalid, batch_size)


def insert_ticks_sync(
    conn: Connection,
    rows: Iterable[Mapping[str, Any]],
    *,
    on_invalid: OnInvalid = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> IngestResult:
    """:func:`insert_ticks` on a sync connection: pysqlite (executemany) or psycopg
    (``cursor.copy``); the same validation, semantics and results.

    On SQLite, use an engine with :func:`marketdata.db.install_sqlite_listeners` (as
    ``generator.db.make_engine`` does): without it pysqlite's own transaction handling
    breaks SAVEPOINTs, and the database does not enforce foreign keys.
    """
    return _insert_sync(conn, TICKS, rows, on_invalid, batch_size)


def insert_alerts_sync(
    conn: Connection,
    rows: Iterable[Mapping[str, Any]],
    *,
    on_invalid: OnInvalid = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> IngestResult:
    """:func:`insert_alerts` on a sync connection; see :func:`insert_ticks_sync`."""
    return _insert_sync(conn, ALERTS, rows, on_invalid, batch_size)


async def _insert(
    conn: AsyncConnection, spec: TableSpec, rows: Iterable[Any], on_invalid: str, size: int
) -> IngestResult:
    call = Call(spec, rows, conn.dialect, on_invalid, size)
    if call.nothing_to_do:
        return call.result(0)
    writer = sqlite.write_async if call.sqlite else postgresql.write_async
    return call.result(await writer(conn, call))


def _insert_sync(
    conn: Connection, spec: TableSpec, rows: Iterable[Any], on_invalid: str, size: int
) -> IngestResult:
    call = Call(spec, rows, conn.dialect, on_invalid, size)
    if call.nothing_to_do:
        return call.result(0)
    writer = sqlite.write_sync if call.sqlite else postgresql.write_sync
    return call.result(writer(conn, call))
