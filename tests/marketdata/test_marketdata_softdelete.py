"""SoftDeleteMixin: soft-deleted rows vanish from ORM queries and relationship loads,
come back with ``include_deleted=True`` and after ``restore()``; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from marketdata_support import T0, add_family, ids, run_with_engine, sync_engine, upgrade
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import joinedload, selectinload, subqueryload

from marketdata import (
    AlertLog,
    AlertRule,
    IncludeDeleted,
    Instrument,
    MarketData,
    SoftDeleteMixin,
    get_db_session,
)

INCLUDE = {"include_deleted": True}


def test_mark_restore_and_is_deleted_without_a_database() -> None:
    tick = MarketData(instrument_id=1, timestamp=T0, price=1.0)
    assert tick.deleted_at is None
    assert tick.is_deleted is False
    before = datetime.now(UTC)
    tick.soft_delete()
    assert tick.is_deleted is True
    assert tick.deleted_at is not None
    assert before <= tick.deleted_at <= datetime.now(UTC)
    first = tick.deleted_at
    tick.soft_delete(T0)  # already deleted: the first mark stays
    assert tick.deleted_at == first
    tick.restore()
    assert (tick.deleted_at, tick.is_deleted) == (None, False)
    tick.soft_delete(T0)
    assert tick.deleted_at == T0


def test_mixin_columns_and_query_expression() -> None:
    for cls, table in ((MarketData, "market_data"), (AlertLog, "alert_logs")):
        assert issubclass(cls, SoftDeleteMixin)
        column = sa.inspect(cls).local_table.c.deleted_at
        assert column.nullable is True
        assert column.server_default is None
        assert {i.name for i in column.table.indexes if list(i.columns) == [column]} == {
            f"ix_{table}_deleted_at"
        }
    assert not issubclass(Instrument, SoftDeleteMixin)
    assert not issubclass(AlertRule, SoftDeleteMixin)
    where = sa.select(MarketData.id).where(MarketData.is_deleted)
    assert str(where).endswith("WHERE market_data.deleted_at IS NOT NULL")


async def _setup(engine: AsyncEngine) -> tuple[int, list[int], list[int]]:
    """An instrument with 4 ticks and 1 rule of 3 alerts; tick 2 and alert 1 soft-deleted.

    Returns (instrument id, [deleted tick id, ...all tick ids], [deleted alert id, ...]).
    """
    async with get_db_session(engine) as session:
        instrument = add_family(session, "SD", ticks=4, rules=1, alerts_per_rule=3)
        add_family(session, "OTHER", ticks=1)
    async with get_db_session(engine) as session:
        ticks = (await session.scalars(sa.select(MarketData).order_by(MarketData.id))).all()
        alerts = (await session.scalars(sa.select(AlertLog).order_by(AlertLog.id))).all()
        ticks[1].soft_delete()
        alerts[0].soft_delete()
    return (
        instrument.id,
        [ticks[1].id, *ids(t for t in ticks if t.instrument_id == instrument.id)],
        [alerts[0].id, *ids(alerts)],
    )


@pytest.mark.db
def test_soft_deleted_rows_vanish_from_orm_queries(db_url: str, async_db_url: str) -> None:
    upgrade(db_url, "head")

    async def main(engine: AsyncEngine) -> None:
        instrument_id, (gone_tick, *all_ticks), (gone_alert, *all_alerts) = await _setup(engine)
        live_ticks = [i for i in all_ticks if i != gone_tick]
        async with get_db_session(engine) as session:
            scalars = session.scalars
            ticks = await scalars(
                sa.select(MarketData).where(MarketData.instrument_id == instrument_id)
            )
            assert ids(ticks) == live_ticks
            assert ids(await scalars(sa.select(AlertLog))) == [
                i for i in all_alerts if i != gone_alert
            ]
            # Column queries, aggregates, joins and get() too.
            tick_ids = await scalars(
                sa.select(MarketData.id).where(MarketData.instrument_id == instrument_id)
            )
            assert sorted(tick_ids) == live_ticks
            count = sa.select(sa.func.count()).select_from(MarketData)
            assert await session.scalar(count) == len(live_ticks) + 1  # + OTHER's tick
            joined = await scalars(
                sa.select(MarketData.id)
                .join(Instrument, MarketData.instrument)
                .where(Instrument.symbol == "SD")
            )
            assert sorted(joined) == live_ticks
            assert await session.get(MarketData, gone_tick) is None
            assert await session.get(AlertLog, gone_alert) is None
            # The deleted rows are still there for the opt-in, marked.
            deleted = await scalars(
                sa.select(MarketData.id).where(MarketData.is_deleted).execution_options(**INCLUDE)
            )
            assert list(deleted) == [gone_tick]

    run_with_engine(async_db_url, main)


async def _tick_ids_by_loader(session: AsyncSession, instrument_id: int, **opts: bool) -> dict:
    """The instrument's tick ids (and its rule's alert ids) as each loader strategy loads them."""
    out: dict[str, list[int]] = {}
    for name, option in (
        ("selectin", selectinload(Instrument.ticks)),
        ("joined", joinedload(Instrument.ticks)),
        ("subquery", subqueryload(Instrument.ticks)),
    ):
        session.expunge_all()
        statement = (
            sa.select(Instrument)
            .where(Instrument.id == instrument_id)
            .options(option)
            .execution_options(**opts)
        )
        instrument = (await session.scalars(statement)).unique().one()
        out[name] = ids(instrument.ticks)
    session.expunge_all()
    statement = sa.select(Instrument).where(Instrument.id == instrument_id)
    instrument = (await session.scalars(statement.execution_options(**opts))).one()
    out["lazy"] = ids(await instrument.awaitable_attrs.ticks)
    (rule,) = await instrument.awaitable_attrs.rules
    out["lazy, two levels"] = ids(await rule.awaitable_attrs.alerts)
    session.expunge_all()
    rule = await session.get_one(AlertRule, rule.id, execution_options=opts)
    out["lazy from get"] = ids(await rule.awaitable_attrs.alerts)
    session.expunge_all()
    instrument = await session.get_one(Instrument, instrument_id, execution_options=opts)
    await session.refresh(instrument, ["ticks"])
    out["refresh"] = ids(instrument.ticks)
    return out


@pytest.mark.db
def test_relationship_loads_hide_them_and_the_opt_in_shows_them(
    db_url: str, async_db_url: str
) -> None:
    upgrade(db_url, "head")

    async def main(engine: AsyncEngine) -> None:
        instrument_id, (gone_tick, *all_ticks), (gone_alert, *all_alerts) = await _setup(engine)
        live = [i for i in all_ticks if i != gone_tick]
        live_alerts = [i for i in all_alerts if i != gone_alert]
        async with get_db_session(engine) as session:
            hidden = await _tick_ids_by_loader(session, instrument_id)
            shown = await _tick_ids_by_loader(session, instrument_id, include_deleted=True)
        assert hidden == {
            "selectin": live,
            "joined": live,
            "subquery": live,
            "lazy": live,
            "lazy, two levels": live_alerts,
            "lazy from get": live_alerts,
            "refresh": live,
        }
        assert shown == {
            "selectin": all_ticks,
            "joined": all_ticks,
            "subquery": all_ticks,
            "lazy": all_ticks,
            "lazy, two levels": all_alerts,
            "lazy from get": all_alerts,
            "refresh": all_ticks,
        }
        async with get_db_session(engine) as session:
            # The statement option is the same opt-in.
            statement = sa.select(MarketData).options(IncludeDeleted())
            assert gone_tick in ids(await session.scalars(statement))
            tick = await session.get(MarketData, gone_tick, execution_options=INCLUDE)
            assert tick is not None
            assert tick.is_deleted
            # Many-to-one from a deleted child to its live parent is unaffected.
            assert (await tick.awaitable_attrs.instrument).id == instrument_id

    run_with_engine(async_db_url, main)


@pytest.mark.db
def test_restore_brings_rows_back(db_url: str, async_db_url: str) -> None:
    upgrade(db_url, "head")

    async def main(engine: AsyncEngine) -> None:
        instrument_id, (gone_tick, *all_ticks), (gone_alert, *_) = await _setup(engine)
        async with get_db_session(engine) as session:
            tick = await session.get_one(MarketData, gone_tick, execution_options=INCLUDE)
            alert = await session.get_one(AlertLog, gone_alert, execution_options=INCLUDE)
            await session.refresh(tick)  # an object held is refreshed, deleted or not
            assert tick.is_deleted
            tick.restore()
            alert.restore()
        async with get_db_session(engine) as session:
            instrument = (
                await session.scalars(
                    sa.select(Instrument)
                    .where(Instrument.id == instrument_id)
                    .options(selectinload(Instrument.ticks))
                )
            ).one()
            assert ids(instrument.ticks) == all_ticks
            assert (await session.get_one(AlertLog, gone_alert)).deleted_at is None
            # Soft-deleting again hides it again, with a fresh mark.
            instrument.ticks[0].soft_delete(T0 + timedelta(days=1))
        async with get_db_session(engine) as session:
            ticks = await session.scalars(
                sa.select(MarketData.id).where(MarketData.instrument_id == instrument_id)
            )
            assert sorted(ticks) == all_ticks[1:]

    run_with_engine(async_db_url, main)


@pytest.mark.db
def test_soft_delete_keeps_the_row_and_plain_sql_sees_it(db_url: str, async_db_url: str) -> None:
    upgrade(db_url, "head")
    _, (gone_tick, *_), _ = run_with_engine(async_db_url, _setup)
    engine = sync_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, deleted_at FROM market_data WHERE id = :i"), {"i": gone_tick}
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 1
    assert rows[0][1] is not None
