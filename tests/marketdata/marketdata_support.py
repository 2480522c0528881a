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
from marketdata import AlertLog, AlertRule, Instrument, MarketData, create_app_engine

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
