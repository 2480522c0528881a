"""The query catalogue gives the same results at the baseline (0000) and at head, on the
same seeded data; at head it leaves soft-deleted rows out. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from marketdata_support import catalogue, sync_engine, upgrade

from marketdata import AlertLog, MarketData, create_app_engine, demo, format_price, queries
from marketdata.demo import START

pytestmark = pytest.mark.db
TICKS, ALERTS = 600, 240


def _run(db_url: str, **kw: Any) -> tuple[bool, dict[str, Any]]:
    engine = sync_engine(db_url)
    try:
        with engine.connect() as conn:
            return queries.has_soft_delete(conn), catalogue(conn, **kw)
    finally:
        engine.dispose()


def _seeded_baseline(db_url: str) -> None:
    upgrade(db_url, "0000")
    engine = sync_engine(db_url)
    try:
        with engine.begin() as conn:
            demo.seed(conn, ticks=TICKS, alerts=ALERTS)
    finally:
        engine.dispose()


def test_same_results_at_the_baseline_and_at_head(db_url: str) -> None:
    _seeded_baseline(db_url)
    soft_before, before = _run(db_url)
    upgrade(db_url, "head")
    soft_after, after = _run(db_url)
    assert (soft_before, soft_after) == (False, True)
    assert before.keys() == after.keys()
    for key in before:
        assert after[key] == before[key], key
    # ...and the comparison is not vacuous.
    assert all(before[f"ticks all {i}"] for i in (1, 3, 6))
    assert before["ticks empty 1"] == [] and before["ohlc empty"] == []
    edge = {row["price"] for i in range(1, 7) for row in before[f"ticks edges {i}"]}
    assert edge == {format_price(p) for p in demo.EDGE_PRICES}
    trigger_values = {row["trigger_value"] for row in before["status triggered"]}
    trigger_values |= {row["trigger_value"] for row in before["status resolved"]}
    assert {"-99999999.9999", "0.0001", "4567.8901"} <= trigger_values
    assert len(before["latest"]) == 6
    assert sum(row["ticks"] for row in before["ohlc all"]) == TICKS
    assert len(before["status acknowledged top 5"]) == 5


def test_rows_are_plain_and_formatted(db_url: str) -> None:
    _seeded_baseline(db_url)
    upgrade(db_url, "head")
    _, results = _run(db_url)
    (first,) = [row for row in results["ticks edges 1"] if row["id"] == 1]
    assert first == {
        "id": 1,
        "timestamp": (START + timedelta(seconds=1)).isoformat(),
        "price": "99999999.9999",
        "bid": first["bid"],
        "ask": "99999999.9999",  # capped at the decimal(12,4) maximum by the seed
        "open_price": "99999999.9999",
        "high_price": "99999999.9999",
        "low_price": first["low_price"],
        "volume": first["volume"],
    }
    assert isinstance(first["volume"], int)
    (ohlc,) = results["ohlc all instrument 2"]
    assert set(ohlc) == {"instrument_id", "open", "high", "low", "close", "total_volume", "ticks"}
    assert Decimal(ohlc["high"]) >= Decimal(ohlc["low"])
    assert isinstance(ohlc["total_volume"], int)
    latest = results["latest"][0]
    assert set(latest) == {"instrument_id", "symbol", "id", "timestamp", "price", "bid", "ask"}
    assert latest["symbol"] == "AAPL"


def _soft_delete(db_url: str, table: str, ids: list[int]) -> None:
    engine = sync_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE {table} SET deleted_at = CURRENT_TIMESTAMP WHERE id = :i"),
                [{"i": i} for i in ids],
            )
    finally:
        engine.dispose()


def test_at_head_soft_deleted_rows_are_left_out(db_url: str) -> None:
    _seeded_baseline(db_url)
    upgrade(db_url, "head")
    _, before = _run(db_url)
    latest_1 = before["latest"][0]
    assert latest_1["instrument_id"] == 1
    # Soft-delete instrument 1's latest tick, its first tick, and two alerts.
    _soft_delete(db_url, "market_data", [latest_1["id"], 1])
    gone_alerts = [before["rule all 1"][0]["id"], before["status triggered"][0]["id"]]
    _soft_delete(db_url, "alert_logs", gone_alerts)

    _, after = _run(db_url)
    # The latest tick of instrument 1 is now the one before it (ticks cycle over 6 instruments).
    assert after["latest"][0]["id"] == latest_1["id"] - 6
    assert after["latest"][1:] == before["latest"][1:]
    assert [r["id"] for r in after["ticks all 1"]] == [
        r["id"] for r in before["ticks all 1"] if r["id"] not in (1, latest_1["id"])
    ]
    assert after["ohlc all"][0]["ticks"] == before["ohlc all"][0]["ticks"] - 2
    assert after["ohlc all"][0]["open"] != before["ohlc all"][0]["open"]  # tick 1 opened
    assert after["ohlc all"][1:] == before["ohlc all"][1:]
    assert [r["id"] for r in after["rule all 1"]] == [r["id"] for r in before["rule all 1"][1:]]
    assert after["status triggered"] == before["status triggered"][1:]
    # With live_only=False the catalogue reads every row, as before the marks.
    _, everything = _run(db_url, live_only=False)
    assert everything == before


def test_live_only_needs_the_soft_delete_column(db_url: str) -> None:
    _seeded_baseline(db_url)
    _, detected = _run(db_url)
    _, explicit = _run(db_url, live_only=False)
    assert detected == explicit
    with pytest.raises(sa.exc.DBAPIError):
        _run(db_url, live_only=True)


def test_async_callers_use_run_sync(db_url: str, async_db_url: str) -> None:
    _seeded_baseline(db_url)
    upgrade(db_url, "head")
    _, expected = _run(db_url)

    async def main() -> list[dict[str, Any]]:
        engine = create_app_engine(async_db_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(queries.latest_ticks)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == expected["latest"]


def test_deleted_rows_for_purge_and_restore_use_the_partial_index(
    db_url: str, dialect: str
) -> None:
    """deleted_ticks / deleted_alerts list soft-deleted rows in deletion order within the
    bounds; the plan reads them through the partial deleted_at index (change 0005)."""
    _seeded_baseline(db_url)
    upgrade(db_url, "head")
    engine = sync_engine(db_url)
    marks = {7: START + timedelta(days=1), 3: START + timedelta(days=2), 9: START}
    try:
        with engine.begin() as conn:
            for model in (MarketData, AlertLog):
                for row_id, when in marks.items():
                    conn.execute(sa.update(model).where(model.id == row_id).values(deleted_at=when))
            if dialect == "postgresql":
                conn.exec_driver_sql("ANALYZE market_data")
                conn.exec_driver_sql("ANALYZE alert_logs")
            else:
                conn.exec_driver_sql("ANALYZE")
        with engine.connect() as conn:
            if dialect == "postgresql":
                conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: ask the planner
            for fn, statement in (
                (queries.deleted_ticks, queries.deleted_ticks_statement),
                (queries.deleted_alerts, queries.deleted_alerts_statement),
            ):
                assert [r["id"] for r in fn(conn)] == [9, 7, 3]
                cut = START + timedelta(days=1)
                assert [r["id"] for r in fn(conn, before=cut)] == [9]
                assert [r["id"] for r in fn(conn, since=cut)] == [7, 3]
                assert [r["id"] for r in fn(conn, since=cut, limit=1)] == [7]
                compiled = statement(before=cut).compile(conn)
                prefix = "EXPLAIN" if dialect == "postgresql" else "EXPLAIN QUERY PLAN"
                plan = " ".join(
                    str(row[-1])
                    for row in conn.exec_driver_sql(
                        f"{prefix} {compiled}",
                        compiled.params  # type: ignore[arg-type]
                        if dialect == "postgresql"
                        else tuple(compiled.params[k] for k in compiled.positiontup or ()),
                    )
                )
                table = "market_data" if fn is queries.deleted_ticks else "alert_logs"
                assert f"ix_{table}_deleted_at" in plan, plan
    finally:
        engine.dispose()


def test_the_soft_delete_detection_holds_until_the_query_has_run(db_url: str) -> None:
    """Once a catalogue call has seen ``deleted_at``, no migration can drop it under that
    call (a downgrade of 0004 racing a query failed with 'column does not exist'): the
    detection locks the tables it reads first, for the rest of the transaction."""
    upgrade(db_url, "head")
    engine = sync_engine(db_url)
    other = sync_engine(db_url)
    try:
        with engine.connect() as conn:
            assert queries.has_soft_delete(conn)
            with other.connect() as ddl:
                if ddl.dialect.name == "postgresql":
                    ddl.exec_driver_sql("SET lock_timeout = '200ms'")
                else:
                    ddl.exec_driver_sql("PRAGMA busy_timeout = 200")
                with pytest.raises(sa.exc.OperationalError):
                    ddl.exec_driver_sql("ALTER TABLE alert_logs DROP COLUMN acknowledged_by")
                    ddl.commit()
                ddl.rollback()
            conn.execute(sa.select(queries.rule_alerts_statement(1, START, START, True).subquery()))
    finally:
        engine.dispose()
        other.dispose()
