"""The catalogue of the application's existing read queries, valid at every revision.

Each query is written in SQLAlchemy Core against lightweight table descriptions that name
only the columns every revision has (plus ``deleted_at``, referenced only when the schema
has it), so it runs unchanged on the baseline schema (revision 0000: DECIMAL prices, no soft
delete) and at head (FLOAT prices, ``deleted_at``). Price columns are left untyped: the
driver's value (a Decimal at the baseline on PostgreSQL, a float at head, an int or float on
SQLite) goes straight to :func:`marketdata.prices.format_price`, so every result row is a
plain dict whose prices are 4-place strings and whose datetimes are ISO 8601 UTC strings.
The same data gives the same rows before and after the migrations
(tests/marketdata/test_marketdata_queries.py).

``live_only`` leaves soft-deleted ticks and alerts out. ``None`` (the default) means "when
the schema has ``deleted_at``", detected once per call; pass ``True`` or ``False`` to skip
the detection (``True`` fails before revision 0004).

The functions take a sync :class:`~sqlalchemy.engine.Connection`; from async code, use
``await async_connection.run_sync(queries.latest_ticks)`` (extra arguments follow).
Time windows are half-open, ``start <= timestamp < end``, with aware datetimes.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    FromClause,
    Integer,
    Select,
    String,
    and_,
    column,
    func,
    inspect,
    select,
    table,
    text,
    true,
)

from marketdata.prices import serialise
from marketdata.types import UTCDateTime

# Prices: NullType on purpose (the driver's value, whatever the column's type at this revision).
_instruments = table("instruments", column("id", Integer()), column("symbol", String()))
_market_data = table(
    "market_data",
    column("id", BigInteger()),
    column("instrument_id", Integer()),
    column("timestamp", UTCDateTime()),
    column("price"),
    column("bid"),
    column("ask"),
    column("open_price"),
    column("high_price"),
    column("low_price"),
    column("volume", BigInteger()),
    column("deleted_at", UTCDateTime()),
)
_alert_logs = table(
    "alert_logs",
    column("id", BigInteger()),
    column("rule_id", Integer()),
    column("instrument_id", Integer()),
    column("timestamp", UTCDateTime()),
    column("trigger_value"),
    column("threshold_value"),
    column("status", String()),
    column("severity", String()),
    column("message", String()),
    column("acknowledged_at", UTCDateTime()),
    column("acknowledged_by", String()),
    column("deleted_at", UTCDateTime()),
)

TICK_PRICES = frozenset({"price", "bid", "ask", "open_price", "high_price", "low_price"})
OHLC_PRICES = frozenset({"open", "high", "low", "close"})
ALERT_PRICES = frozenset({"trigger_value", "threshold_value"})


# The soft-delete tables, in the order a migration locks them (referencing tables before the
# ones they reference, generator.dialects.fk_lock_order): a reader that held market_data while
# waiting for alert_logs deadlocked with a migration holding alert_logs (the load test saw 40P01).
SOFT_DELETE_TABLES = ("alert_logs", "market_data")


def has_soft_delete(conn: Connection, tables: Collection[str] = SOFT_DELETE_TABLES) -> bool:
    """Whether ``tables`` have soft delete (``deleted_at``, revision 0004 and later).

    The tables are read first, so the transaction holds their ACCESS SHARE lock before the
    catalogue is asked: a migration cannot drop or add ``deleted_at`` between this answer and
    the caller's query in the same transaction (a 0004 downgrade racing a query failed with
    "column deleted_at does not exist"). Only the tables a query reads are locked: a lock held
    on the other one would only make a migration wait longer. On SQLite the read keeps the
    database's shared lock.
    """
    names = [t for t in SOFT_DELETE_TABLES if t in tables]
    # Reads no row; its only effect is the lock, held to the end of the transaction.
    conn.execute(text(f"SELECT 1 FROM {', '.join(names)} WHERE false"))
    insp = inspect(conn)
    return all("deleted_at" in {c["name"] for c in insp.get_columns(name)} for name in names)


def _live(t: FromClause, live_only: bool) -> ColumnElement[bool]:
    return t.c.deleted_at.is_(None) if live_only else true()


def _window(t: FromClause, start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(t.c.timestamp >= start, t.c.timestamp < end)


def _run(conn: Connection, statement: Select[Any], prices: Collection[str]) -> list[dict[str, Any]]:
    rows = conn.execute(statement).mappings()
    out = []
    for row in rows:
        shaped = serialise(row, prices)
        for key in ("volume", "total_volume"):
            # sum(bigint) is numeric on PostgreSQL: an integral Decimal.
            if shaped.get(key) is not None:
                shaped[key] = int(shaped[key])
        out.append(shaped)
    return out


def _resolve(conn: Connection, live_only: bool | None, table: str) -> bool:
    return has_soft_delete(conn, (table,)) if live_only is None else live_only


def latest_ticks_statement(live_only: bool) -> Select[Any]:
    # Driven by the (few) instruments: one index probe each for its newest tick, so the cost
    # does not grow with the ticks table (the shape that scans market_data and correlates
    # every row took 0.6 s on a million ticks; see docs/performance.md).
    md, last = _market_data.alias("md"), _market_data.alias("last")
    latest_id = (
        select(last.c.id)
        .where(last.c.instrument_id == _instruments.c.id, _live(last, live_only))
        .order_by(last.c.timestamp.desc(), last.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            md.c.instrument_id,
            _instruments.c.symbol,
            md.c.id,
            md.c.timestamp,
            md.c.price,
            md.c.bid,
            md.c.ask,
        )
        .select_from(_instruments)
        .join(md, md.c.id == latest_id)
        .order_by(md.c.instrument_id)
    )


def latest_ticks(conn: Connection, *, live_only: bool | None = None) -> list[dict[str, Any]]:
    """The latest tick (by timestamp, then id) of each instrument that has one."""
    return _run(conn, latest_ticks_statement(_resolve(conn, live_only, "market_data")), TICK_PRICES)


def ticks_in_window_statement(
    instrument_id: int, start: datetime, end: datetime, live_only: bool
) -> Select[Any]:
    md = _market_data
    return (
        select(
            md.c.id,
            md.c.timestamp,
            md.c.price,
            md.c.bid,
            md.c.ask,
            md.c.open_price,
            md.c.high_price,
            md.c.low_price,
            md.c.volume,
        )
        .where(
            md.c.instrument_id == instrument_id,
            _window(md, start, end),
            _live(md, live_only),
        )
        .order_by(md.c.timestamp, md.c.id)
    )


def ticks_in_window(
    conn: Connection,
    instrument_id: int,
    start: datetime,
    end: datetime,
    *,
    live_only: bool | None = None,
) -> list[dict[str, Any]]:
    """The ticks of one instrument in ``[start, end)``, oldest first."""
    statement = ticks_in_window_statement(
        instrument_id, start, end, _resolve(conn, live_only, "market_data")
    )
    return _run(conn, statement, TICK_PRICES)


def ohlc_statement(
    start: datetime, end: datetime, instrument_id: int | None, live_only: bool
) -> Select[Any]:
    md = _market_data.alias("md")

    def edge(newest: bool) -> Any:
        m = _market_data.alias("close_tick" if newest else "open_tick")
        order = (m.c.timestamp.desc(), m.c.id.desc()) if newest else (m.c.timestamp, m.c.id)
        return (
            select(m.c.price)
            .where(
                m.c.instrument_id == md.c.instrument_id,
                _window(m, start, end),
                _live(m, live_only),
            )
            .order_by(*order)
            .limit(1)
            .scalar_subquery()
        )

    statement = (
        select(
            md.c.instrument_id,
            edge(newest=False).label("open"),
            func.max(md.c.price).label("high"),
            func.min(md.c.price).label("low"),
            edge(newest=True).label("close"),
            func.sum(md.c.volume).label("total_volume"),
            func.count().label("ticks"),
        )
        .where(_window(md, start, end), _live(md, live_only))
        .group_by(md.c.instrument_id)
        .order_by(md.c.instrument_id)
    )
    if instrument_id is not None:
        statement = statement.where(md.c.instrument_id == instrument_id)
    return statement


def ohlc(
    conn: Connection,
    start: datetime,
    end: datetime,
    *,
    instrument_id: int | None = None,
    live_only: bool | None = None,
) -> list[dict[str, Any]]:
    """Open, high, low, close, volume and tick count per instrument over ``[start, end)``."""
    statement = ohlc_statement(start, end, instrument_id, _resolve(conn, live_only, "market_data"))
    return _run(conn, statement, OHLC_PRICES)


_ALERT_COLUMNS = (
    _alert_logs.c.id,
    _alert_logs.c.rule_id,
    _alert_logs.c.instrument_id,
    _alert_logs.c.timestamp,
    _alert_logs.c.trigger_value,
    _alert_logs.c.threshold_value,
    _alert_logs.c.status,
    _alert_logs.c.severity,
    _alert_logs.c.message,
    _alert_logs.c.acknowledged_at,
    _alert_logs.c.acknowledged_by,
)


def rule_alerts_statement(
    rule_id: int, start: datetime, end: datetime, live_only: bool
) -> Select[Any]:
    al = _alert_logs
    return (
        select(*_ALERT_COLUMNS)
        .where(al.c.rule_id == rule_id, _window(al, start, end), _live(al, live_only))
        .order_by(al.c.timestamp, al.c.id)
    )


def rule_alerts(
    conn: Connection,
    rule_id: int,
    start: datetime,
    end: datetime,
    *,
    live_only: bool | None = None,
) -> list[dict[str, Any]]:
    """The alerts one rule fired in ``[start, end)``, oldest first."""
    statement = rule_alerts_statement(rule_id, start, end, _resolve(conn, live_only, "alert_logs"))
    return _run(conn, statement, ALERT_PRICES)


def alerts_by_status_statement(status: str, limit: int | None, live_only: bool) -> Select[Any]:
    al = _alert_logs
    statement = (
        select(*_ALERT_COLUMNS)
        .where(al.c.status == status, _live(al, live_only))
        .order_by(al.c.timestamp.desc(), al.c.id.desc())
    )
    return statement if limit is None else statement.limit(limit)


def alerts_by_status(
    conn: Connection,
    status: str,
    *,
    limit: int | None = None,
    live_only: bool | None = None,
) -> list[dict[str, Any]]:
    """The alerts in one status (triggered, acknowledged, resolved), newest first."""
    statement = alerts_by_status_statement(status, limit, _resolve(conn, live_only, "alert_logs"))
    return _run(conn, statement, ALERT_PRICES)


def unacknowledged_alerts_statement(instrument_id: int, live_only: bool) -> Select[Any]:
    al = _alert_logs
    return (
        select(*_ALERT_COLUMNS)
        .where(
            al.c.instrument_id == instrument_id,
            al.c.acknowledged_at.is_(None),
            _live(al, live_only),
        )
        .order_by(al.c.timestamp, al.c.id)
    )


def unacknowledged_alerts(
    conn: Connection, instrument_id: int, *, live_only: bool | None = None
) -> list[dict[str, Any]]:
    """The alerts of one instrument nobody has acknowledged yet, oldest first."""
    statement = unacknowledged_alerts_statement(
        instrument_id, _resolve(conn, live_only, "alert_logs")
    )
    return _run(conn, statement, ALERT_PRICES)


# --- soft-deleted rows: purge and restore (revision 0004 and later) ------------------------


def _deleted(t: FromClause, since: datetime | None, before: datetime | None) -> list[Any]:
    # `deleted_at IS NOT NULL` spelled out: it is the partial index's predicate (change 0005),
    # so both planners match it without having to prove it from the range.
    terms: list[Any] = [t.c.deleted_at.is_not(None)]
    if since is not None:
        terms.append(t.c.deleted_at >= since)
    if before is not None:
        terms.append(t.c.deleted_at < before)
    return terms


def _soft_deleted_select(
    t: FromClause,
    columns: Collection[str],
    since: datetime | None,
    before: datetime | None,
    limit: int | None,
) -> Select[Any]:
    statement = (
        select(*(t.c[name] for name in columns))
        .where(*_deleted(t, since, before))
        .order_by(t.c.deleted_at, t.c.id)
    )
    return statement if limit is None else statement.limit(limit)


def deleted_ticks_statement(
    since: datetime | None = None, before: datetime | None = None, limit: int | None = None
) -> Select[Any]:
    columns = ("id", "instrument_id", "timestamp", "deleted_at")
    return _soft_deleted_select(_market_data, columns, since, before, limit)


def deleted_ticks(
    conn: Connection,
    *,
    since: datetime | None = None,
    before: datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Soft-deleted ticks, deleted in ``[since, before)`` (either bound optional), in the
    order they were deleted: the candidates of a purge (``before``) or a restore (``since``)."""
    return _run(conn, deleted_ticks_statement(since, before, limit), ())


def deleted_alerts_statement(
    since: datetime | None = None, before: datetime | None = None, limit: int | None = None
) -> Select[Any]:
    columns = ("id", "rule_id", "instrument_id", "timestamp", "deleted_at")
    return _soft_deleted_select(_alert_logs, columns, since, before, limit)


def deleted_alerts(
    conn: Connection,
    *,
    since: datetime | None = None,
    before: datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Soft-deleted alert logs, deleted in ``[since, before)``, in the order they were
    deleted (see :func:`deleted_ticks`)."""
    return _run(conn, deleted_alerts_statement(since, before, limit), ())
