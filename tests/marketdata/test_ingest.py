"""marketdata.ingest: the bulk path validates every row in Python, then COPYs (PostgreSQL) or
executemanys (SQLite) into the head schema; on SQLite and PostgreSQL, async and sync.

One head-schema database per dialect serves the whole module (migrated once, with two
instruments and two rules); every test starts from empty ``market_data`` / ``alert_logs``.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from conftest import PG_ADMIN_URL, pg_url_for, postgres_problem
from marketdata_support import T0, sync_engine, upgrade
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from marketdata import (
    AlertLog,
    IngestRefused,
    InvalidRows,
    MarketData,
    create_app_engine,
    format_price,
    ingest,
    insert_alerts,
    insert_alerts_sync,
    insert_ticks,
    insert_ticks_sync,
)
from marketdata.base import Base
from marketdata.ingest import ALERTS, TICKS, IngestResult, TableSpec
from marketdata.ingest.validation import NOT_ACCEPTED, columns_of
from marketdata.models import price_range_check
from marketdata.types import PRICE_LIMIT, Price, sqlite_timestamp_text

T = TypeVar("T")
PLUS2 = timezone(timedelta(hours=2))
TICK_FIELDS = ("instrument_id", "timestamp", "price", "bid", "ask")
TICK_FIELDS += ("open_price", "high_price", "low_price", "volume")


# --- the module's databases ---------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    dialect: str
    url: str  # sync (pysqlite / psycopg)
    async_url: str  # aiosqlite / asyncpg


@pytest.fixture(scope="module")
def _built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Head]]:
    built: dict[str, Head] = {}
    yield built
    if "postgresql" in built:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = sa.make_url(built["postgresql"].url).database
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _build(dialect: str, folder: Path) -> Head:
    if dialect == "sqlite":
        path = folder / "head.db"
        head = Head(dialect, f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}")
    else:
        problem = postgres_problem()
        if problem:
            pytest.skip(problem)
        name = f"t_ingest_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        admin.dispose()
        head = Head(dialect, pg_url_for(name), pg_url_for(name, driver="asyncpg"))
    upgrade(head.url, "head")
    engine = sync_engine(head.url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO instruments (id, symbol, name) VALUES (1, 'AAA', 'a'), (2, 'BBB', 'b')"
        )
        conn.exec_driver_sql(
            "INSERT INTO alert_rules (id, instrument_id, name, condition, threshold) "
            "VALUES (1, 1, 'r1', 'price_above', 100), (2, 2, 'r2', 'price_below', 50)"
        )
    engine.dispose()
    return head


@pytest.fixture
def head(dialect: str, _built: dict[str, Head], tmp_path_factory: pytest.TempPathFactory) -> Head:
    if dialect not in _built:
        _built[dialect] = _build(dialect, tmp_path_factory.mktemp("ingest"))
    db = _built[dialect]
    engine = sync_engine(db.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM alert_logs")
        conn.exec_driver_sql("DELETE FROM market_data")
    engine.dispose()
    return db


def run(db: Head, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``fn`` on a connection of an application engine (not in a transaction)."""

    async def main() -> T:
        engine = create_app_engine(db.async_url)
        try:
            async with engine.connect() as conn:
                return await fn(conn)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def stored(db: Head, model: type[Any]) -> list[Any]:
    engine = sync_engine(db.url)
    try:
        with Session(engine) as session:
            return list(session.scalars(sa.select(model).order_by(model.id)))
    finally:
        engine.dispose()


def count(db: Head, table: str) -> int:
    engine = sync_engine(db.url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
    finally:
        engine.dispose()


def tick(n: int = 0, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "instrument_id": 1 + n % 2,
        "timestamp": T0 + timedelta(seconds=n),
        "price": 100.0 + n / 4,
    }
    row.update(kw)
    return row


def alert(n: int = 0, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "rule_id": 1,
        "instrument_id": 1,
        "timestamp": T0 + timedelta(seconds=7 * n),
        "trigger_value": 101.5 + n,
        "threshold_value": 100.0,
        "severity": "warning",
    }
    row.update(kw)
    return row


# --- round trips --------------------------------------------------------------------------


@pytest.mark.db
def test_ticks_round_trip_exactly(head: Head) -> None:
    rows = [
        # float, Decimal and int prices; 4-place values that are not exact doubles
        tick(0, price=1234.5678, bid=Decimal("1234.5677"), ask=1235, volume=2**62),
        # the range CHECK's edges, microseconds, another offset (normalised to UTC)
        tick(
            1,
            timestamp=datetime(2026, 1, 5, 11, 30, 1, 250_001, tzinfo=PLUS2),
            price=99_999_999.9999,
            bid=-99_999_999.9999,
            ask=Decimal("0.0001"),
            open_price=-0.0001,
            high_price=0,
            low_price=Decimal("-5"),
            volume=0,
        ),
        tick(2),  # only the required fields
        tick(3, bid=None, ask=None, volume=None),  # explicit None for optional fields
    ]
    before = datetime.now(UTC)
    result = run(head, lambda conn: insert_ticks(conn, rows, batch_size=3))
    after = datetime.now(UTC)
    assert result == IngestResult("market_data", 4, batches=2, rejected=())

    ticks = stored(head, MarketData)
    assert [t.instrument_id for t in ticks] == [1, 2, 1, 2]
    assert [format_price(t.price) for t in ticks] == [
        "1234.5678",
        "99999999.9999",
        "100.5000",
        "100.7500",
    ]
    first, second, third, fourth = ticks
    assert (format_price(first.bid), format_price(first.ask)) == ("1234.5677", "1235.0000")
    assert Decimal(repr(first.price)) == Decimal("1234.5678")  # the nearest double, exact
    assert first.volume == 2**62
    assert second.timestamp == datetime(2026, 1, 5, 9, 30, 1, 250_001, tzinfo=UTC)
    assert second.timestamp.tzinfo is UTC
    assert [format_price(getattr(second, c)) for c in ("bid", "ask", "open_price")] == [
        "-99999999.9999",
        "0.0001",
        "-0.0001",
    ]
    assert (second.high_price, second.low_price, second.volume) == (0.0, -5.0, 0)
    for t in (third, fourth):
        assert (t.bid, t.ask, t.open_price, t.high_price, t.low_price, t.volume) == (None,) * 6
    for t in ticks:
        assert before <= t.created_at <= after
        assert t.updated_at == t.created_at
        assert t.deleted_at is None
    # The stored timestamps compare with bound parameters as the ORM's own would (SQLite
    # keeps them as text: the format must be SQLAlchemy's, to the microsecond).
    engine = sync_engine(head.url)
    with Session(engine) as session:
        at_t0 = sa.select(MarketData.id).where(MarketData.timestamp == T0)
        assert list(session.scalars(at_t0)) == [first.id]
        since = sa.select(sa.func.count()).where(MarketData.timestamp >= T0 + timedelta(seconds=1))
        assert session.scalar(since) == 3
        if head.dialect == "sqlite":
            text = session.connection().exec_driver_sql(
                "SELECT timestamp, created_at FROM market_data ORDER BY id"
            )
            stamps = [r[0] for r in text]
            assert stamps[:2] == ["2026-01-05 09:30:00.000000", "2026-01-05 09:30:01.250001"]
    engine.dispose()


@pytest.mark.db
def test_many_rows_keep_their_order_and_values(head: Head) -> None:
    """Several batches (on SQLite: multi-row INSERTs of full groups and of a remainder, also
    under the 999-parameter limit of older SQLite builds): every row once, in input order,
    values intact."""
    n = 2345
    rows = [tick(i, price=i / 10_000, volume=i) for i in range(n)]
    result = run(head, lambda conn: insert_ticks(conn, rows, batch_size=1100))
    assert (result.inserted, result.batches) == (n, 3)
    engine = sync_engine(head.url)
    with engine.connect() as conn:
        if head.dialect == "sqlite":
            dbapi = conn.connection.driver_connection
            assert isinstance(dbapi, sqlite3.Connection)
            dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # 90 rows a statement
        assert insert_ticks_sync(conn, rows).inserted == n
    engine.dispose()
    ticks = stored(head, MarketData)
    assert [t.volume for t in ticks] == [*range(n), *range(n)]
    prices = [format_price(i / 10_000) for i in range(n)]
    assert [format_price(t.price) for t in ticks] == prices + prices
    assert [t.timestamp for t in ticks[:n]] == [r["timestamp"] for r in rows]


@pytest.mark.db
def test_alerts_round_trip_exactly(head: Head) -> None:
    acked = datetime(2026, 1, 5, 12, 0, 0, 7, tzinfo=PLUS2)
    rows = [
        alert(0),  # status defaults to "triggered"
        alert(
            1,
            rule_id=2,
            instrument_id=2,
            trigger_value=Decimal("49.9999"),
            threshold_value=50,
            status="acknowledged",
            severity="critical",
            message="line one\nline two, naïve café ✓",  # not printable: the slow path
            acknowledged_at=acked,
            acknowledged_by="o" * 64,
        ),
        alert(2, status="x" * 16, severity="s" * 16, message=""),
    ]
    result = run(head, lambda conn: insert_alerts(conn, rows))
    assert (result.inserted, result.batches, result.rejected) == (3, 1, ())

    a, b, c = stored(head, AlertLog)
    assert (a.rule_id, a.instrument_id, a.status, a.severity) == (1, 1, "triggered", "warning")
    assert (a.message, a.acknowledged_at, a.acknowledged_by) == (None, None, None)
    assert (format_price(a.trigger_value), format_price(a.threshold_value)) == (
        "101.5000",
        "100.0000",
    )
    assert (b.rule_id, b.instrument_id, b.status, b.severity) == (2, 2, "acknowledged", "critical")
    assert format_price(b.trigger_value) == "49.9999"
    assert b.threshold_value == 50.0
    assert b.message == "line one\nline two, naïve café ✓"
    assert b.acknowledged_at == acked and b.acknowledged_at.tzinfo is UTC
    assert b.acknowledged_by == "o" * 64
    assert (c.status, c.severity, c.message) == ("x" * 16, "s" * 16, "")
    for row in (a, b, c):
        assert row.created_at is not None and row.updated_at == row.created_at
        assert row.deleted_at is None


# --- bad rows -----------------------------------------------------------------------------

# (row, field, a fragment of the reason); row index = position in the list.
BAD_TICKS: list[tuple[Any, str | None, str]] = [
    ({"timestamp": T0, "price": 1.0}, "instrument_id", "missing"),
    (tick(price=None), "price", "is None (the column is NOT NULL)"),
    (tick(price=math.nan), "price", "not finite"),
    (tick(bid=math.inf), "bid", "not finite"),
    (tick(ask=-math.inf), "ask", "not finite"),
    (tick(price=1e8), "price", "out of range: ck_market_data_price_range"),
    (tick(open_price=-100_000_000), "open_price", "ck_market_data_open_price_range"),
    (tick(high_price=Decimal("NaN")), "high_price", "not finite"),
    (tick(low_price=Decimal("1E+8")), "low_price", "ck_market_data_low_price_range"),
    (tick(price=10**400), "price", "out of range"),
    (tick(price=True), "price", "expected a float, int or Decimal price, got bool"),
    (tick(price="1.5"), "price", "got str"),
    (tick(timestamp=datetime(2026, 1, 5)), "timestamp", "naive datetime"),
    (tick(timestamp=date(2026, 1, 5)), "timestamp", "expected a timezone-aware datetime"),
    (tick(timestamp="2026-01-05T09:30:00Z"), "timestamp", "got str"),
    (tick(instrument_id="1"), "instrument_id", "expected an int, got str"),
    (tick(instrument_id=2**31), "instrument_id", "out of the INTEGER range"),
    (tick(volume=2**63), "volume", "out of the BIGINT range"),
    (tick(volume=1.5), "volume", "expected an int, got float"),
    (tick(bidd=1.0), "bidd", "not a column of market_data"),
    (tick(id=7), "id", "set by the database and the ingest"),
    (tick(deleted_at=None), "deleted_at", "set by the database and the ingest"),
    ((1, T0, 1.0), None, "expected a mapping of column names to values, got tuple"),
    (tick(instrument_id=999), "instrument_id", "instruments id 999 does not exist"),
]
BAD_ALERTS: list[tuple[Any, str | None, str]] = [
    ({k: v for k, v in alert().items() if k != "severity"}, "severity", "missing"),
    (alert(severity="s" * 17), "severity", "17 characters, more than varchar(16)"),
    (alert(status=None), "status", "is None (the column is NOT NULL)"),
    (alert(message="a\x00b"), "message", "NUL"),
    (alert(acknowledged_by="ops\ud800"), "acknowledged_by", "lone surrogate"),
    (alert(threshold_value=math.nan), "threshold_value", "not finite"),
    (alert(trigger_value=-1e8), "trigger_value", "ck_alert_logs_trigger_value_range"),
    (alert(acknowledged_at=datetime(2026, 1, 5)), "acknowledged_at", "naive datetime"),
    (alert(rule_id=999), "rule_id", "alert_rules id 999 does not exist"),
    (alert(instrument_id=998), "instrument_id", "instruments id 998 does not exist"),
]


def _expect_refused(exc: InvalidRows, bad: list[tuple[Any, str | None, str]], good: int) -> None:
    assert exc.total == len(bad) + good
    assert [(e.index, e.field) for e in exc.errors] == [
        (good + i, field) for i, (_, field, _) in enumerate(bad)
    ]
    message = str(exc)
    assert f"{len(bad)} of {len(bad) + good} rows are invalid, nothing was written" in message
    for error, (_, field, fragment) in zip(exc.errors, bad, strict=True):
        assert fragment in error.reason
        where = f"row {error.index}" + (f", {field}" if field else "")
        assert f"  {where}: {error.reason}" in message.splitlines()


@pytest.mark.db
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_every_kind_of_bad_row_is_refused_and_nothing_written(head: Head, sync: bool) -> None:
    """Two good rows, then one bad row of each kind: one InvalidRows naming every bad row by
    its index and field, and no row written (the good ones neither)."""
    cases = [
        ("market_data", insert_ticks, insert_ticks_sync, [tick(0), tick(1)], BAD_TICKS),
        ("alert_logs", insert_alerts, insert_alerts_sync, [alert(0), alert(1)], BAD_ALERTS),
    ]
    for table, async_fn, sync_fn, good, bad in cases:
        rows = [*good, *(row for row, _, _ in bad)]
        if sync:
            engine = sync_engine(head.url)
            with engine.connect() as conn, pytest.raises(InvalidRows) as caught:
                sync_fn(conn, rows)
            engine.dispose()
        else:
            with pytest.raises(InvalidRows) as caught:
                run(head, lambda conn, f=async_fn, r=rows: f(conn, r))  # type: ignore[misc]
        assert caught.value.table == table
        _expect_refused(caught.value, bad, len(good))
        assert count(head, table) == 0, table


@pytest.mark.db
def test_skip_mode_writes_exactly_the_valid_rows(head: Head) -> None:
    rows: list[Any] = [
        tick(0, volume=0),
        tick(1, price=math.nan),
        tick(2, volume=2),
        tick(3, instrument_id=999),  # refused by the foreign-key check, after the others
        tick(4, volume=4),
        "not a row",
        tick(6, timestamp=datetime(2026, 1, 5), bid=math.inf),  # two problems, one row
        tick(7, volume=7),
    ]
    result = run(head, lambda conn: insert_ticks(conn, iter(rows), on_invalid="skip"))
    assert result.inserted == 4
    assert [r.index for r in result.rejected] == [1, 3, 5, 6]
    assert [r.row for r in result.rejected] == [rows[1], rows[3], rows[5], rows[6]]
    assert [[e.field for e in r.errors] for r in result.rejected] == [
        ["price"],
        ["instrument_id"],
        [None],
        ["timestamp", "bid"],
    ]
    assert [t.volume for t in stored(head, MarketData)] == [0, 2, 4, 7]

    # Nothing valid at all: nothing written, every row handed back.
    result = run(head, lambda conn: insert_ticks(conn, rows[1:2], on_invalid="skip"))
    assert (result.inserted, result.batches, len(result.rejected)) == (0, 0, 1)
    assert count(head, "market_data") == 4


@pytest.mark.db
def test_foreign_keys_are_checked_before_the_write(head: Head) -> None:
    """A missing parent is reported by the validation (InvalidRows with its row index), not by
    the database's foreign key; inside the caller's transaction, that transaction goes on."""

    async def go(conn: AsyncConnection) -> None:
        async with conn.begin():
            await insert_ticks(conn, [tick(0, volume=1)])
            with pytest.raises(InvalidRows) as caught:
                await insert_alerts(conn, [alert(0), alert(1, rule_id=3, instrument_id=4)])
            assert [str(e) for e in caught.value.errors] == [
                "row 1, rule_id: alert_rules id 3 does not exist "
                "(fk_alert_logs_rule_id_alert_rules)",
                "row 1, instrument_id: instruments id 4 does not exist "
                "(fk_alert_logs_instrument_id_instruments)",
            ]
            await insert_ticks(conn, [tick(1, volume=2)])  # the transaction is usable

    run(head, go)
    assert [t.volume for t in stored(head, MarketData)] == [1, 2]
    assert count(head, "alert_logs") == 0


def _refusing_trigger(db: Head, install: bool) -> None:
    """A trigger refusing ticks of volume 13: a row the validation passes and the database
    refuses (the schema itself leaves no such row: every constraint is checked first)."""
    engine = sync_engine(db.url)
    with engine.begin() as conn:
        if db.dialect == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_13 BEFORE INSERT ON market_data WHEN NEW.volume = 13 "
                "BEGIN SELECT RAISE(ABORT, 'volume 13 refused'); END"
                if install
                else "DROP TRIGGER refuse_13"
            )
        elif install:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_13() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.volume = 13 THEN RAISE EXCEPTION 'volume 13 refused'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_13 BEFORE INSERT ON market_data "
                "FOR EACH ROW EXECUTE FUNCTION refuse_13()"
            )
        else:
            conn.exec_driver_sql("DROP TRIGGER refuse_13 ON market_data")
            conn.exec_driver_sql("DROP FUNCTION refuse_13()")
    engine.dispose()


@pytest.mark.db
def test_a_database_refusal_rolls_the_whole_call_back(head: Head) -> None:
    rows = [tick(n, volume=n) for n in range(10, 16)]  # volume 13 is the 4th, batch 2 of 3
    _refusing_trigger(head, install=True)
    try:

        async def own_transaction(conn: AsyncConnection) -> None:
            for _ in range(2):  # on a fresh connection, then after a call has committed
                with pytest.raises(IngestRefused, match="refused the batch of 6") as caught:
                    await insert_ticks(conn, rows, batch_size=2)
                assert "volume 13 refused" in str(caught.value.__cause__)
                assert not conn.in_transaction()
                await insert_ticks(conn, [tick(0, volume=1)])

        run(head, own_transaction)
        assert [t.volume for t in stored(head, MarketData)] == [1, 1]  # only the good calls
        engine = sync_engine(head.url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM market_data")
        engine.dispose()

        async def callers_transaction(conn: AsyncConnection) -> None:
            async with conn.begin():
                await insert_ticks(conn, [tick(0, volume=1)])
                with pytest.raises(IngestRefused):
                    await insert_ticks(conn, rows, batch_size=2)
                # Only the call's SAVEPOINT was rolled back: the caller's work stays.
                await insert_ticks(conn, [tick(1, volume=2)])

        run(head, callers_transaction)
        assert [t.volume for t in stored(head, MarketData)] == [1, 2]

        engine = sync_engine(head.url)
        with engine.connect() as conn, pytest.raises(IngestRefused):
            insert_ticks_sync(conn, rows, batch_size=4)
        engine.dispose()
        assert count(head, "market_data") == 2
    finally:
        _refusing_trigger(head, install=False)


@pytest.mark.db
def test_the_callers_transaction_decides(head: Head) -> None:
    """Inside the caller's transaction nothing is committed by the call; outside one, the call
    commits its own."""

    async def rolled_back(conn: AsyncConnection) -> None:
        await conn.begin()
        result = await insert_ticks(conn, [tick(0), tick(1)])
        assert result.inserted == 2
        count_sql = "SELECT count(*) FROM market_data"
        assert (await conn.exec_driver_sql(count_sql)).scalar() == 2
        await conn.rollback()

    run(head, rolled_back)
    assert count(head, "market_data") == 0

    async def committed(conn: AsyncConnection) -> None:
        # Several calls in a row on one connection: each commits its own transaction (the
        # first on PostgreSQL also ends the one the schema guard's checkout read began).
        for n in range(3):
            await insert_alerts(conn, [alert(n)])
            assert not conn.in_transaction()
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            assert not (
                raw.is_in_transaction() if head.dialect == "postgresql" else raw.in_transaction
            )
            assert count(head, "alert_logs") == n + 1  # seen from another connection

    run(head, committed)
    assert count(head, "alert_logs") == 3


@pytest.mark.db
def test_sync_and_async_write_the_same_rows(head: Head) -> None:
    ticks = [
        tick(0, price=Decimal("12.3456"), timestamp=T0.astimezone(PLUS2)),
        tick(1, bid=1, ask=2.5, volume=3),
    ]
    alerts = [alert(0), alert(1, message="m\tx", acknowledged_at=T0, acknowledged_by="me")]
    engine = sync_engine(head.url)
    with engine.begin() as conn:  # inside the caller's transaction
        assert insert_ticks_sync(conn, ticks).inserted == 2
        assert insert_alerts_sync(conn, alerts).inserted == 2
    with engine.connect() as conn:  # a transaction of its own
        assert insert_ticks_sync(conn, ticks).inserted == 2
    engine.dispose()
    run(head, lambda conn: insert_ticks(conn, ticks))
    run(head, lambda conn: insert_alerts(conn, alerts))

    def values(obj: Any, skip: tuple[str, ...] = ("id", "created_at", "updated_at")) -> tuple:
        return tuple(
            getattr(obj, c.key) for c in sa.inspect(obj).mapper.column_attrs if c.key not in skip
        )

    t = [values(x) for x in stored(head, MarketData)]
    assert t[0:2] == t[2:4] == t[4:6]
    assert t[0][2] == 12.3456 and t[0][1] == T0
    a = [values(x) for x in stored(head, AlertLog)]
    assert a[0:2] == a[2:4]


@pytest.mark.db
def test_the_transaction_is_sqlalchemys(head: Head) -> None:
    """The call's transaction (or SAVEPOINT) is SQLAlchemy's own, not BEGIN / COMMIT sent to
    the driver behind its back: SQLAlchemy's begin, commit, savepoint and rollback events
    fire, on both dialects, async and sync."""
    seen: list[str] = []

    def listen(engine: sa.Engine) -> None:
        for name in ("begin", "commit", "rollback", "savepoint", "release_savepoint"):
            sa.event.listen(engine, name, lambda *_, n=name: seen.append(n))

    async def go(conn: AsyncConnection) -> None:
        listen(conn.engine.sync_engine)
        await insert_ticks(conn, [tick(0)])  # a transaction of its own
        assert seen == ["begin", "commit"]
        seen.clear()
        async with conn.begin():  # the caller's: a SAVEPOINT in it
            await insert_alerts(conn, [alert(0)])
            assert seen == ["begin", "savepoint", "release_savepoint"]
        seen.clear()
        with pytest.raises(InvalidRows):
            await insert_ticks(conn, [tick(1, instrument_id=999)])
        assert seen == ["begin", "rollback"]

    run(head, go)
    seen.clear()
    engine = sync_engine(head.url)
    listen(engine)
    with engine.connect() as conn:
        insert_ticks_sync(conn, [tick(2)])
    engine.dispose()
    assert seen == ["begin", "commit"]
    assert count(head, "market_data") == 2 and count(head, "alert_logs") == 1


# --- without a database -------------------------------------------------------------------


def _random_value(rng: random.Random, kind: str) -> Any:
    """Mostly what the fast paths take (float prices, UTC datetimes, plain ints, short
    printable strings), some valid values only the reference check takes (Decimal and int
    prices, other offsets, tabs, non-ASCII), and every kind of wrong value now and then."""
    pick = rng.random()
    if pick < 0.02:
        return rng.choice(
            [None, math.nan, -math.inf, True, "x", 1e8, 2**31, 2**63, Decimal("NaN"), b"1"]
        )
    slow = pick > 0.95
    if kind == "price":
        units = rng.randint(-(10**12 - 1), 10**12 - 1)
        if slow:
            return rng.choice([rng.randint(-5, 5), Decimal(units).scaleb(-4)])
        return units / 10_000
    if kind in ("int32", "int64"):
        return rng.choice([1, 2, -(2**31), 2**31 - 1, 2**40 if kind == "int64" else 3])
    if kind == "timestamp":
        moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randint(0, 10**9), microseconds=rng.choice([0, rng.randint(0, 999_999)])
        )
        if slow:
            return rng.choice([moment.astimezone(PLUS2), moment.replace(tzinfo=None)])
        return moment
    if slow:
        return rng.choice(["a" * 17, "a" * 65, "tab\there", "nul\x00", "\ud800"])
    return rng.choice(["ok", "", "a" * 16, "é✓"])


@pytest.mark.parametrize("as_text", [True, False], ids=["sqlite", "postgresql"])
def test_the_fast_paths_agree_with_the_reference_check(as_text: bool) -> None:
    """The inline checks of the fast paths are an optimisation only: on thousands of random
    rows (valid and not) they produce exactly what the field-by-field check produces."""
    rng = random.Random(20260105)
    now = "NOW"
    for spec in (TICKS, ALERTS):
        rows: list[Any] = []
        for _ in range(3000):
            row = {
                c.name: _random_value(rng, c.kind)
                for c in spec.columns
                if c.required or rng.random() < 0.7
            }
            if rng.random() < 0.02:
                row[rng.choice(["unknown", "id", "deleted_at"])] = None
            rows.append(row if rng.random() > 0.005 else tuple(row.values()))
        tuples, rejected = spec.validate(rows, as_text, now)
        reference = [spec.check_row(i, row, as_text, now) for i, row in enumerate(rows)]
        assert tuples == [r for r in reference if isinstance(r, tuple)]
        assert rejected == [r for r in reference if not isinstance(r, tuple)]
        # Plenty of both, and most rows taken by the inline checks.
        assert 300 < len(rejected) < len(rows) - 1000
        fast = [r for r in rows if isinstance(r, dict) and _fast_form(r)]
        assert len(fast) > len(rows) // 3


def _fast_form(row: dict[str, Any]) -> bool:
    return all(
        type(v) in (int, float, str) or (isinstance(v, datetime) and v.tzinfo is UTC)
        for v in row.values()
    )


def test_the_fast_timestamp_text_is_sqlalchemys() -> None:
    rng = random.Random(7)
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    moments += [
        datetime(1970, 1, 1, tzinfo=UTC)
        + timedelta(seconds=rng.randint(0, 4 * 10**9), microseconds=rng.randint(0, 999_999))
        for _ in range(2000)
    ]
    rows = [tick(timestamp=m) for m in moments]
    tuples, rejected = TICKS.validate(rows, True, "now")
    assert not rejected
    # What SQLAlchemy's own DateTime binds on SQLite (UTCDateTime hands it UTC values).
    bind = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert bind is not None
    expected = [bind(m.replace(tzinfo=None)) for m in moments]
    assert [t[1] for t in tuples] == expected == [sqlite_timestamp_text(m) for m in moments]


def test_bad_arguments() -> None:
    async def go() -> None:
        engine = create_app_engine("sqlite+aiosqlite://")
        async with engine.connect() as conn:
            with pytest.raises(ValueError, match="on_invalid"):
                await insert_ticks(conn, [], on_invalid="ignore")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="batch_size"):
                await insert_ticks(conn, [], batch_size=0)
            with pytest.raises(TypeError, match="not a single row"):
                await insert_ticks(conn, tick())  # type: ignore[arg-type]
            assert await insert_ticks(conn, []) == IngestResult("market_data", 0)
        await engine.dispose()

    asyncio.run(go())


def test_the_message_of_many_bad_rows_is_bounded() -> None:
    from marketdata.ingest import FieldError, RejectedRow

    rejected = [RejectedRow(i, {}, (FieldError(i, "price", "bad"),)) for i in range(500)]
    exc = InvalidRows("market_data", 1000, rejected)
    assert len(exc.errors) == 500
    assert "row 49, price: bad" in str(exc) and "row 50, price" not in str(exc)
    assert "... and 450 more (see .errors)" in str(exc)


def test_the_input_columns_are_the_models() -> None:
    """TICKS / ALERTS are read from the models' tables, not declared again: every column but
    the ones the database or the ingest sets, with its kind, NOT NULL, default, length,
    foreign key and range CHECK; a model built here gets the same treatment."""
    for spec, model in ((TICKS, MarketData), (ALERTS, AlertLog)):
        table = model.__table__
        names = [c.name for c in table.columns if c.name not in NOT_ACCEPTED]
        assert [c.name for c in spec.columns] == names
        assert spec.targets == (*names, "created_at", "updated_at")
        for column in spec.columns:
            model_column = table.c[column.name]
            assert column.required == (not model_column.nullable and model_column.default is None)
            keys = {(k.column.table.name, k.constraint.name) for k in model_column.foreign_keys}
            if keys:
                assert {(column.references, column.constraint)} == keys
    assert ALERTS.by_name["status"].default == "triggered"
    assert ALERTS.by_name["acknowledged_by"].max_length == 64

    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    sa.Table("parents", metadata, sa.Column("id", sa.Integer, primary_key=True))
    probe = sa.Table(
        "probe",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey("parents.id"), nullable=False),
        sa.Column("level", Price(), nullable=False),
        sa.Column("code", sa.String(3), nullable=True),
        price_range_check("level"),
    )
    spec = TableSpec(probe.name, columns_of(probe))
    good = {"parent_id": 1, "level": 2.5, "code": "abc"}
    bad = {"parent_id": 1, "level": 2e8, "code": "abcd"}
    tuples, rejected = spec.validate([good, bad], False, "now")
    assert tuples == [(1, 2.5, "abc", "now", "now")]
    assert [(e.field, e.reason) for e in rejected[0].errors] == [
        (
            "level",
            "200000000.0 is out of range: ck_probe_level_range needs "
            f"-{PRICE_LIMIT} < value < {PRICE_LIMIT}",
        ),
        ("code", "4 characters, more than varchar(3) holds"),
    ]
    assert spec.by_name["parent_id"].constraint == "fk_probe_parent_id_parents"


def test_no_private_driver_api() -> None:
    """The writers use the drivers' public API only, and leave the transaction to SQLAlchemy:
    no aiosqlite internals (``_execute``, ``_conn``), no BEGIN / COMMIT / ROLLBACK /
    SAVEPOINT sent to a driver by hand."""
    package = Path(ingest.__file__).parent
    sources = {p.name: p.read_text() for p in sorted(package.glob("*.py"))}
    assert {"validation.py", "sqlite.py", "postgresql.py"} <= set(sources)
    for name, text in sources.items():
        code = "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith(("#", "``"))
        )
        for private in ("._execute(", "._conn", "_execute,", "._connection"):
            assert private not in code, (name, private)
        for statement in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"):
            assert f'"{statement}' not in code and f"'{statement}" not in code, (name, statement)
