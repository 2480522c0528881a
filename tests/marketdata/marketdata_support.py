"""Helpers of the model, soft-delete, price and query tests (imported by their module name).

Every database test runs on SQLite and PostgreSQL through the ``db_url`` / ``async_db_url``
fixtures of tests/conftest.py; both name the same empty database within one test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from support import ROOT

from generator import db, migrate
from marketdata import AlertLog, AlertRule, Instrument, MarketData, create_app_engine, queries
from marketdata.demo import START

MIGRATIONS = ROOT / "generated_migrations"
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
T = TypeVar("T")


def upgrade(db_url: str, revision: str = "head") -> None:
    migrate.upgrade(MIGRATIONS, sa.make_url(db_url), revision)


def sync_engine(db_url: str) -> sa.Engine:
    """A sync engine with SQLite foreign keys on (the migration tool's engine)."""
    return db.make_engine(sa.make_url(db_url))


def run_with_engine(async_db_url: str, fn: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``asyncio.run`` of ``fn(engine)`` with an app engine that is disposed afterwards."""

    async def main() -> T:
        engine = create_app_engine(async_db_url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def counts(db_url: str) -> dict[str, int]:
    """Rows per table, soft-deleted ones included (plain SQL: no ORM filtering)."""
    engine = sync_engine(db_url)
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                for table in ("instruments", "alert_rules", "market_data", "alert_logs")
            }
    finally:
        engine.dispose()


def add_family(
    session: AsyncSession,
    symbol: str,
    *,
    ticks: int = 0,
    rules: int = 0,
    alerts_per_rule: int = 0,
) -> Instrument:
    """An instrument with ``ticks`` ticks and ``rules`` rules of ``alerts_per_rule`` alerts."""
    instrument = Instrument(symbol=symbol, name=f"{symbol} test")
    session.add(instrument)
    for n in range(ticks):
        price = 100.0 + n / 4
        session.add(
            MarketData(
                instrument=instrument,
                timestamp=T0 + timedelta(seconds=n),
                price=price,
                bid=price - 0.01,
                ask=price + 0.01,
                volume=10 * (n + 1),
            )
        )
    for r in range(rules):
        rule = AlertRule(
            instrument=instrument,
            name=f"{symbol} rule {r}",
            condition="price_above",
            threshold=Decimal("100.1250"),
        )
        session.add(rule)
        for n in range(alerts_per_rule):
            session.add(
                AlertLog(
                    rule=rule,
                    instrument=instrument,
                    timestamp=T0 + timedelta(seconds=7 * n),
                    trigger_value=100.5 + n,
                    threshold_value=100.125,
                    severity="warning",
                )
            )
    return instrument


def ids(objects: Any) -> list[int]:
    return sorted(obj.id for obj in objects)


# Windows over the demo data: ticks every second from START+1s, alerts every 7 seconds.
# Most bounds fall between rows; "all" and "empty" start exactly on START.
HALF = timedelta(milliseconds=500)
WINDOWS = {
    "edges": (START, START + timedelta(seconds=9) + HALF),  # the edge prices: ticks 1-9
    "early": (START + HALF, START + timedelta(seconds=180) + HALF),
    "middle": (START + timedelta(seconds=200) + HALF, START + timedelta(seconds=500) + HALF),
    "all": (START, START + timedelta(days=1)),
    "empty": (START - timedelta(days=1), START),
}


def catalogue(conn: sa.Connection, **kw: Any) -> dict[str, Any]:
    """Every query of the catalogue with a spread of arguments, by a readable key."""
    out: dict[str, Any] = {"latest": queries.latest_ticks(conn, **kw)}
    for name, (start, end) in WINDOWS.items():
        out[f"ohlc {name}"] = queries.ohlc(conn, start, end, **kw)
        out[f"ohlc {name} instrument 2"] = queries.ohlc(conn, start, end, instrument_id=2, **kw)
        for instrument in range(1, 7):
            out[f"ticks {name} {instrument}"] = queries.ticks_in_window(
                conn, instrument, start, end, **kw
            )
        for rule in (1, 5, 12):
            out[f"rule {name} {rule}"] = queries.rule_alerts(conn, rule, start, end, **kw)
    for status in ("triggered", "acknowledged", "resolved", "nonexistent"):
        out[f"status {status}"] = queries.alerts_by_status(conn, status, **kw)
        out[f"status {status} top 5"] = queries.alerts_by_status(conn, status, limit=5, **kw)
    for instrument in range(1, 8):
        out[f"unacknowledged {instrument}"] = queries.unacknowledged_alerts(conn, instrument, **kw)
    return out
