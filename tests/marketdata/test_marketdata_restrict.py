"""Deleting a parent that still has children fails with ParentHasChildren and deletes
nothing; a parent without children goes. ON DELETE RESTRICT is honoured, never bypassed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from marketdata_support import T0, add_family, counts, run_with_engine, upgrade
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from marketdata import (
    AlertRule,
    Instrument,
    MarketData,
    MarketDataError,
    ParentHasChildren,
    get_db_session,
)

pytestmark = pytest.mark.db


def _families(db_url: str, async_db_url: str, **families: dict[str, int]) -> dict[str, int]:
    """Migrate to head and add one instrument per keyword; returns symbol -> id."""
    upgrade(db_url, "head")

    async def main(engine: AsyncEngine) -> dict[str, int]:
        async with get_db_session(engine) as session:
            made = {symbol: add_family(session, symbol, **kw) for symbol, kw in families.items()}
        return {symbol: instrument.id for symbol, instrument in made.items()}

    return run_with_engine(async_db_url, main)


def _delete_instrument(async_db_url: str, instrument_id: int) -> None:
    async def main(engine: AsyncEngine) -> None:
        async with get_db_session(engine) as session:
            await session.delete(await session.get_one(Instrument, instrument_id))

    run_with_engine(async_db_url, main)


@pytest.mark.parametrize(
    ("family", "children"),
    [
        ({"ticks": 3}, ("market_data",)),
        ({"rules": 1}, ("alert_rules",)),
        (
            {"ticks": 2, "rules": 2, "alerts_per_rule": 2},
            ("alert_logs", "alert_rules", "market_data"),
        ),
    ],
    ids=["ticks", "rules", "everything"],
)
def test_an_instrument_with_children_cannot_be_deleted(
    db_url: str, async_db_url: str, family: dict[str, int], children: tuple[str, ...]
) -> None:
    made = _families(db_url, async_db_url, PARENT=family, BYSTANDER={"ticks": 1})
    before = counts(db_url)
    with pytest.raises(ParentHasChildren) as caught:
        _delete_instrument(async_db_url, made["PARENT"])
    error = caught.value
    assert isinstance(error, MarketDataError)
    assert error.parent_table == "instruments"
    assert error.parent_key == {"id": made["PARENT"]}
    assert error.child_tables == children
    assert error.child_table == children[0]
    message = str(error)
    assert f"cannot delete instruments row (id={made['PARENT']})" in message
    for table in children:
        assert table in message
        assert f"fk_{table}_instrument_id_instruments" in error.constraints
    assert counts(db_url) == before


def test_a_rule_with_alerts_cannot_be_deleted(db_url: str, async_db_url: str) -> None:
    made = _families(db_url, async_db_url, R={"rules": 1, "alerts_per_rule": 2})
    before = counts(db_url)

    async def main(engine: AsyncEngine) -> None:
        async with get_db_session(engine) as session:
            rule = (await session.scalars(sa.select(AlertRule))).one()
            assert rule.instrument_id == made["R"]
            await session.delete(rule)

    with pytest.raises(ParentHasChildren, match=r"alert_rules row \(id=\d+\).*alert_logs") as e:
        run_with_engine(async_db_url, main)
    assert e.value.child_tables == ("alert_logs",)
    assert e.value.constraints == ("fk_alert_logs_rule_id_alert_rules",)
    assert counts(db_url) == before


def test_soft_deleted_children_still_block(db_url: str, async_db_url: str) -> None:
    made = _families(db_url, async_db_url, SOFT={"ticks": 2})

    async def main(engine: AsyncEngine) -> None:
        async with get_db_session(engine) as session:
            for tick in (await session.scalars(sa.select(MarketData))).all():
                tick.soft_delete()
        async with get_db_session(engine) as session:
            instrument = await session.get_one(Instrument, made["SOFT"])
            assert await instrument.awaitable_attrs.ticks == []  # hidden, but still rows
            await session.delete(instrument)

    before = counts(db_url)
    with pytest.raises(ParentHasChildren, match="market_data"):
        run_with_engine(async_db_url, main)
    assert counts(db_url) == before


def test_an_instrument_without_children_is_deleted(db_url: str, async_db_url: str) -> None:
    made = _families(db_url, async_db_url, EMPTY={}, BUSY={"ticks": 2, "rules": 1})
    before = counts(db_url)
    _delete_instrument(async_db_url, made["EMPTY"])
    assert counts(db_url) == {**before, "instruments": before["instruments"] - 1}


def test_children_deleted_or_moved_in_the_same_flush_do_not_block(
    db_url: str, async_db_url: str
) -> None:
    made = _families(db_url, async_db_url, GONE={"ticks": 2, "rules": 1}, KEEP={})

    async def main(engine: AsyncEngine) -> None:
        async with get_db_session(engine) as session:
            instrument = await session.get_one(Instrument, made["GONE"])
            keep = await session.get_one(Instrument, made["KEEP"])
            ticks = await instrument.awaitable_attrs.ticks
            await session.delete(ticks[0])  # deleted in this flush
            ticks[1].instrument = keep  # moved by relationship
            (rule,) = await instrument.awaitable_attrs.rules
            rule.instrument_id = keep.id  # moved by column
            await session.delete(instrument)

    before = counts(db_url)
    run_with_engine(async_db_url, main)
    assert counts(db_url) == {
        **before,
        "instruments": before["instruments"] - 1,
        "market_data": before["market_data"] - 1,
    }


def test_a_child_added_in_the_same_flush_blocks(db_url: str, async_db_url: str) -> None:
    made = _families(db_url, async_db_url, NEW={})

    async def main(engine: AsyncEngine) -> None:
        async with get_db_session(engine) as session:
            instrument = await session.get_one(Instrument, made["NEW"])
            session.add(MarketData(instrument=instrument, timestamp=T0, price=1.0))
            await session.delete(instrument)

    before = counts(db_url)
    with pytest.raises(ParentHasChildren, match="market_data"):
        run_with_engine(async_db_url, main)
    assert counts(db_url) == before


def test_the_database_restricts_deletes_that_bypass_the_orm(db_url: str, async_db_url: str) -> None:
    made = _families(db_url, async_db_url, CORE={"ticks": 1, "rules": 1, "alerts_per_rule": 1})
    before = counts(db_url)

    async def main(engine: AsyncEngine) -> None:
        # A bulk ORM delete and a plain SQL delete: the foreign keys refuse both.
        with pytest.raises(IntegrityError):
            async with get_db_session(engine) as session:
                await session.execute(sa.delete(Instrument).where(Instrument.id == made["CORE"]))
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(sa.text("DELETE FROM alert_rules"))

    run_with_engine(async_db_url, main)
    assert counts(db_url) == before


def test_a_refused_delete_changes_no_child_in_the_session(db_url: str, async_db_url: str) -> None:
    made = _families(db_url, async_db_url, HELD={"ticks": 2})

    async def main(engine: AsyncEngine) -> None:
        async with get_db_session(engine) as session:
            instrument = await session.get_one(Instrument, made["HELD"])
            ticks = list(await instrument.awaitable_attrs.ticks)
            await session.delete(instrument)
            with pytest.raises(ParentHasChildren):
                await session.flush()
            # Nothing nulled or marked for deletion in the ORM either.
            assert [t.instrument_id for t in ticks] == [made["HELD"]] * 2
            assert not any(t in session.deleted for t in ticks)
            await session.rollback()

    run_with_engine(async_db_url, main)
