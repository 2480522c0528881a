"""Deterministic benchmark data: the same ticks and alerts at the baseline and at head.

Row ``n`` of each table is a pure function of ``n`` (a multiplicative hash, no shared random
state), so the bulk loader (one ``INSERT ... SELECT`` over a generated series, computed by the
database itself) and the Python batches of the insert suite produce identical rows on both
dialects and at both revisions, and batches can start at any ``n``. The shape follows
:func:`marketdata.demo.seed`: six instruments and twelve rules, ticks every second cycling
over the instruments (every fifth tick has only a price), alerts every seven seconds cycling
over the rules, prices on the 4-place grid between 1 and 5000.

Values go to the application's Core tables as the application would bind them: ``Decimal``
for the DECIMAL(12,4) columns of revision 0000 (:class:`marketdata.types.FourPlaceDecimal`),
``float`` for the FLOAT columns at head (:class:`marketdata.types.Price`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from marketdata.mixins import utcnow
from marketdata.models import AlertLog, MarketData
from marketdata.types import FourPlaceDecimal, UTCDateTime, sqlite_timestamp_text

START = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
START_EPOCH = int(START.timestamp())
SYMBOLS = ("AAPL", "MSFT", "EURUSD", "BTCUSD", "ES1", "VOD")
N_INSTRUMENTS = len(SYMBOLS)
N_RULES = 12
CONDITIONS = ("price_above", "price_below", "spread_above", "pct_change_above")
SEVERITIES = ("info", "warning", "critical")

TICK_PRICES = ("price", "bid", "ask", "open_price", "high_price", "low_price")
ALERT_PRICES = ("trigger_value", "threshold_value")
TICK_COLUMNS = ("instrument_id", "timestamp", *TICK_PRICES, "volume")
ALERT_COLUMNS = (
    "rule_id",
    "instrument_id",
    "timestamp",
    "trigger_value",
    "threshold_value",
    "status",
    "severity",
    "message",
    "acknowledged_at",
    "acknowledged_by",
)
# Written by every insert path (the Core path fills them from the models' Python defaults).
AUDIT_COLUMNS = ("created_at", "updated_at")
SOFT_DELETED_PERCENT = 1  # of the oldest ticks and alerts, at 0004 and head (soft_delete_some)

# The hash: (n * K) mod 2^32, spread over the 4-place price grid [1.0000, 5000.0000).
_K_PRICE = 2654435761
_K_SPREAD = 40503
_K_VOLUME = 48271
_PRICE_UNITS = 5000_0000 - 1_0000


def price_units(n: int) -> int:
    return 1_0000 + (n * _K_PRICE) % 4294967296 % _PRICE_UNITS


def spread_units(n: int) -> int:
    return 1 + (n * _K_SPREAD) % 65536 % 499


def rule_threshold_units(rule: int) -> int:
    return price_units(1_000_000_007 + rule)


def rule_instrument(rule: int) -> int:
    return (rule - 1) % N_INSTRUMENTS + 1


def rule_severity(rule: int) -> str:
    return SEVERITIES[rule % 3]


# --- the application's Core tables at each revision -------------------------------------


def _baseline_table(head: sa.Table, metadata: sa.MetaData, prices: tuple[str, ...]) -> sa.Table:
    """``head`` as the application declared it at revision 0000: DECIMAL(12,4) prices, no
    ``deleted_at``, the same Python defaults (TimestampMixin existed then)."""
    columns: list[sa.Column[Any]] = []
    for col in head.columns:
        if col.name == "deleted_at":
            continue
        kind: Any = FourPlaceDecimal() if col.name in prices else col.type
        if col.name in AUDIT_COLUMNS:
            columns.append(sa.Column(col.name, UTCDateTime(), nullable=False, default=utcnow))
        elif col.name == "status":
            columns.append(sa.Column(col.name, kind, nullable=False, default="triggered"))
        else:
            columns.append(
                sa.Column(col.name, kind, primary_key=col.primary_key, nullable=col.nullable)
            )
    return sa.Table(head.name, metadata, *columns)


_BASELINE = sa.MetaData()
TABLES: dict[str, dict[str, sa.Table]] = {
    "baseline": {
        "market_data": _baseline_table(MarketData.__table__, _BASELINE, TICK_PRICES),  # type: ignore[arg-type]
        "alert_logs": _baseline_table(AlertLog.__table__, _BASELINE, ALERT_PRICES),  # type: ignore[arg-type]
    },
    "head": {
        "market_data": MarketData.__table__,  # type: ignore[dict-item]
        "alert_logs": AlertLog.__table__,  # type: ignore[dict-item]
    },
}
# phase 1 as specified (0004) inserts the same columns as head: only its indexes differ
TABLES["phase1"] = TABLES["head"]
REVISIONS = {"baseline": "0000", "phase1": "0004", "head": "head"}


# --- Python rows (insert suite, raw-driver paths) -----------------------------------------


def _money(units: int, as_decimal: bool) -> Decimal | float:
    return Decimal(units).scaleb(-4) if as_decimal else units / 10_000


def tick_rows(first: int, count: int, *, as_decimal: bool) -> list[dict[str, Any]]:
    """Ticks ``first .. first+count-1`` as Core parameter dicts (no id: the database assigns it)."""
    rows = []
    for n in range(first, first + count):
        p, s = price_units(n), spread_units(n)
        full = n % 5 != 0
        rows.append(
            {
                "instrument_id": (n - 1) % N_INSTRUMENTS + 1,
                "timestamp": START + timedelta(seconds=n),
                "price": _money(p, as_decimal),
                "bid": _money(p - s, as_decimal) if full else None,
                "ask": _money(p + s, as_decimal) if full else None,
                "open_price": _money(p, as_decimal) if full else None,
                "high_price": _money(p + 2 * s, as_decimal) if full else None,
                "low_price": _money(p - 2 * s, as_decimal) if full else None,
                "volume": 1 + (n * _K_VOLUME) % 999_999_999 if full else None,
            }
        )
    return rows


def alert_rows(first: int, count: int, *, as_decimal: bool) -> list[dict[str, Any]]:
    """Alerts ``first .. first+count-1`` as Core parameter dicts (no id)."""
    rows = []
    for n in range(first, first + count):
        rule = (n - 1) % N_RULES + 1
        acknowledged = n % 3 == 0
        ts = START + timedelta(seconds=7 * n)
        rows.append(
            {
                "rule_id": rule,
                "instrument_id": rule_instrument(rule),
                "timestamp": ts,
                "trigger_value": _money(price_units(n), as_decimal),
                "threshold_value": _money(rule_threshold_units(rule), as_decimal),
                "status": "acknowledged" if acknowledged else ("triggered", "resolved")[n % 2],
                "severity": rule_severity(rule),
                "message": None if n % 4 == 0 else f"alert {n}",
                "acknowledged_at": ts + timedelta(seconds=60) if acknowledged else None,
                "acknowledged_by": "ops" if acknowledged else None,
            }
        )
    return rows


def rows_for(table: str, first: int, count: int, *, as_decimal: bool) -> list[dict[str, Any]]:
    make = tick_rows if table == "market_data" else alert_rows
    return make(first, count, as_decimal=as_decimal)


def columns_for(table: str) -> tuple[str, ...]:
    return (TICK_COLUMNS if table == "market_data" else ALERT_COLUMNS) + AUDIT_COLUMNS


def sqlite_text(value: datetime) -> str:
    """A datetime as SQLAlchemy stores a ``DateTime`` on SQLite (UTC, microseconds)."""
    return sqlite_timestamp_text(value.astimezone(UTC))


def driver_tuples(
    table: str, rows: list[dict[str, Any]], dialect: str, now: datetime
) -> list[tuple[Any, ...]]:
    """``rows`` as the raw driver takes them, in :func:`columns_for` order, audit columns set.

    sqlite3: datetimes as SQLAlchemy's text form, prices as floats (what SQLAlchemy binds for a
    NUMERIC column on SQLite too). asyncpg: aware datetimes, prices as given (Decimal for
    NUMERIC, float for DOUBLE PRECISION).
    """
    names = columns_for(table)
    out = []
    for row in rows:
        values = [row.get(name, now) for name in names]
        if dialect == "sqlite":
            values = [
                sqlite_text(v)
                if isinstance(v, datetime)
                else float(v)
                if isinstance(v, Decimal)
                else v
                for v in values
            ]
        out.append(tuple(values))
    return out


# --- bulk load (prefill) in SQL --------------------------------------------------------------


def reference_rows(conn: sa.Connection) -> None:
    """The six instruments and twelve rules (ids from 1) that ticks and alerts point at."""
    conn.execute(
        sa.text(
            "INSERT INTO instruments (id, symbol, name, exchange, currency, is_active) "
            "VALUES (:id, :symbol, :name, :exchange, 'USD', :active)"
        ),
        [
            {
                "id": i,
                "symbol": s,
                "name": f"{s} bench",
                "exchange": None if i == 3 else "XNAS",
                "active": i != 6,
            }
            for i, s in enumerate(SYMBOLS, start=1)
        ],
    )
    conn.execute(
        sa.text(
            "INSERT INTO alert_rules (id, instrument_id, name, condition, threshold, severity) "
            "VALUES (:id, :instrument_id, :name, :condition, :threshold, :severity)"
        ),
        [
            {
                "id": r,
                "instrument_id": rule_instrument(r),
                "name": f"rule {r}",
                "condition": CONDITIONS[r % len(CONDITIONS)],
                "threshold": str(Decimal(rule_threshold_units(r)).scaleb(-4)),
                "severity": rule_severity(r),
            }
            for r in range(1, N_RULES + 1)
        ],
    )


def _series(dialect: str, count: int) -> str:
    """A FROM clause yielding ``n`` = 1..count."""
    if dialect == "postgresql":
        return f"generate_series(1::bigint, {count}) AS g(n)"
    return (
        f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {count}) "
        "SELECT n FROM s) AS g"
    )


def _ts(dialect: str, seconds: str) -> str:
    if dialect == "postgresql":
        return f"(TIMESTAMPTZ '{START.isoformat()}' + ({seconds}) * INTERVAL '1 second')"
    return f"(strftime('%Y-%m-%d %H:%M:%S', {START_EPOCH} + ({seconds}), 'unixepoch') || '.000000')"


def _money_sql(dialect: str, units: str, baseline: bool) -> str:
    # Exact on the grid: numeric division on PostgreSQL, the nearest double on SQLite (as the
    # application's drivers bind these values).
    if dialect == "postgresql":
        return f"(({units})::numeric / 10000)" + ("" if baseline else "::double precision")
    return f"(({units}) / 10000.0)"


def _price_sql(n: str) -> str:
    return f"(10000 + ({n}) * {_K_PRICE} % 4294967296 % {_PRICE_UNITS})"


def _spread_sql(n: str) -> str:
    return f"(1 + ({n}) * {_K_SPREAD} % 65536 % 499)"


def load_ticks(conn: sa.Connection, count: int, revision: str) -> None:
    """Ticks 1..count with ids 1..count, computed by the database (rows equal tick_rows)."""
    d = conn.dialect.name
    base = revision == "baseline"
    p, s = _price_sql("n"), _spread_sql("n")

    def full(expr: str) -> str:
        return f"CASE WHEN n % 5 <> 0 THEN {expr} END"

    def m(units: str) -> str:
        return _money_sql(d, units, base)

    now = _ts(d, "0") if d == "sqlite" else "CURRENT_TIMESTAMP"
    _exec(
        conn,
        "INSERT INTO market_data (id, instrument_id, timestamp, price, bid, ask, open_price, "
        "high_price, low_price, volume, created_at, updated_at) "
        f"SELECT n, (n - 1) % {N_INSTRUMENTS} + 1, {_ts(d, 'n')}, {m(p)}, "
        f"{full(m(f'{p} - {s}'))}, {full(m(f'{p} + {s}'))}, {full(m(p))}, "
        f"{full(m(f'{p} + 2 * {s}'))}, {full(m(f'{p} - 2 * {s}'))}, "
        f"{full(f'1 + n * {_K_VOLUME} % 999999999')}, {now}, {now} "
        f"FROM {_series(d, count)} ORDER BY n",
    )


def load_alerts(conn: sa.Connection, count: int, revision: str) -> None:
    """Alerts 1..count with ids 1..count, computed by the database (rows equal alert_rows)."""
    d = conn.dialect.name
    base = revision == "baseline"
    rule = f"((n - 1) % {N_RULES} + 1)"
    thresholds = " ".join(
        f"WHEN {r} THEN {_money_sql(d, str(rule_threshold_units(r)), base)}"
        for r in range(1, N_RULES + 1)
    )
    severities = " ".join(f"WHEN {r} THEN '{rule_severity(r)}'" for r in range(1, N_RULES + 1))
    concat = "'alert ' || n" if d == "sqlite" else "'alert ' || n::text"
    now = _ts(d, "0") if d == "sqlite" else "CURRENT_TIMESTAMP"
    _exec(
        conn,
        "INSERT INTO alert_logs (id, rule_id, instrument_id, timestamp, trigger_value, "
        "threshold_value, status, severity, message, acknowledged_at, acknowledged_by, "
        "created_at, updated_at) "
        f"SELECT n, {rule}, ({rule} - 1) % {N_INSTRUMENTS} + 1, {_ts(d, '7 * n')}, "
        f"{_money_sql(d, _price_sql('n'), base)}, CASE {rule} {thresholds} END, "
        "CASE WHEN n % 3 = 0 THEN 'acknowledged' WHEN n % 2 = 0 THEN 'triggered' "
        f"ELSE 'resolved' END, CASE {rule} {severities} END, "
        f"CASE WHEN n % 4 <> 0 THEN {concat} END, "
        f"CASE WHEN n % 3 = 0 THEN {_ts(d, '7 * n + 60')} END, "
        f"CASE WHEN n % 3 = 0 THEN 'ops' END, {now}, {now} "
        f"FROM {_series(d, count)} ORDER BY n",
    )


def soft_delete_some(conn: sa.Connection, ticks: int, alerts: int) -> None:
    """Soft-delete the oldest 1 % of the ticks and the acknowledged ones of the oldest 1 % of
    the alerts, each a day after its timestamp: what purge and restore look for. No catalogue
    query's arguments reach those rows (their windows are in the middle of the series, the
    newest rows are live), so the catalogue returns the same rows at every revision."""
    d = conn.dialect.name
    _exec(
        conn,
        f"UPDATE market_data SET deleted_at = {_ts(d, 'id + 86400')} "
        f"WHERE id <= {ticks * SOFT_DELETED_PERCENT // 100}",
    )
    _exec(
        conn,
        f"UPDATE alert_logs SET deleted_at = {_ts(d, '7 * id + 86400')} "
        f"WHERE id <= {alerts * SOFT_DELETED_PERCENT // 100} AND id % 3 = 0",
    )


def _exec(conn: sa.Connection, sql: str) -> None:
    # psycopg formats the statement, so its modulo operators are written %%.
    conn.exec_driver_sql(sql.replace("%", "%%") if conn.dialect.name == "postgresql" else sql)


def reset_identity(conn: sa.Connection, table: str) -> None:
    """PostgreSQL: the identity continues after the highest id (rows were loaded with ids)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        )


def iter_batches(rows: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]
