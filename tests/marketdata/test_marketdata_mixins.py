"""TimestampMixin: aware UTC values from the ORM, from Core and from the server default."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, DefaultClause, MetaData, String, select, text, update
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from marketdata import (
    NAMING_CONVENTION,
    TimestampMixin,
    UTCDateTime,
    create_app_engine,
    get_db_session,
)

OLD = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)


class _TestBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _Stamped(TimestampMixin, _TestBase):
    __tablename__ = "stamped"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32))


def _assert_aware_utc(value: datetime, not_before: datetime, not_after: datetime) -> None:
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)
    assert not_before <= value <= not_after


async def _engine_with_table(url: str) -> AsyncEngine:
    engine = create_app_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_TestBase.metadata.create_all)
    return engine


def test_columns_are_not_null_timestamptz_with_server_default() -> None:
    table = _TestBase.metadata.tables["stamped"]
    for name in ("created_at", "updated_at"):
        column = table.c[name]
        assert isinstance(column.type, UTCDateTime)
        assert isinstance(column.type.impl, DateTime)
        assert column.type.impl.timezone is True
        assert column.nullable is False
        assert isinstance(column.server_default, DefaultClause)
        assert str(column.server_default.arg) == "CURRENT_TIMESTAMP"
        assert column.default is not None
    assert table.c.created_at.onupdate is None
    assert table.c.updated_at.onupdate is not None


@pytest.mark.db
def test_orm_insert_and_reload_give_aware_utc(async_db_url: str) -> None:
    async def main() -> None:
        engine = await _engine_with_table(async_db_url)
        try:
            before = datetime.now(UTC)
            async with get_db_session(engine) as session:
                row = _Stamped(name="orm")
                session.add(row)
                await session.flush()
                _assert_aware_utc(row.created_at, before, datetime.now(UTC))
                _assert_aware_utc(row.updated_at, before, datetime.now(UTC))
            after = datetime.now(UTC)
            async with get_db_session(engine) as session:
                loaded = await session.get_one(_Stamped, row.id)
                # Same instants after the round trip, and aware on SQLite too.
                assert loaded.created_at == row.created_at
                assert loaded.updated_at == row.updated_at
                _assert_aware_utc(loaded.created_at, before, after)
        finally:
            await engine.dispose()

    asyncio.run(main())


@pytest.mark.db
def test_server_default_fills_rows_written_without_values(async_db_url: str) -> None:
    async def main() -> None:
        engine = await _engine_with_table(async_db_url)
        try:
            # SQLite's CURRENT_TIMESTAMP has whole seconds only.
            before = datetime.now(UTC).replace(microsecond=0)
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO stamped (name) VALUES ('raw')"))
            after = datetime.now(UTC)
            async with get_db_session(engine) as session:
                row = (await session.scalars(select(_Stamped))).one()
                _assert_aware_utc(row.created_at, before, after)
                _assert_aware_utc(row.updated_at, before, after)
        finally:
            await engine.dispose()

    asyncio.run(main())


@pytest.mark.db
def test_updates_refresh_updated_at_only(async_db_url: str) -> None:
    async def main() -> None:
        engine = await _engine_with_table(async_db_url)
        try:
            async with get_db_session(engine) as session:
                row = _Stamped(name="old", created_at=OLD, updated_at=OLD)
                session.add(row)
            async with get_db_session(engine) as session:
                loaded = await session.get_one(_Stamped, row.id)
                loaded.name = "orm update"
            async with get_db_session(engine) as session:
                loaded = await session.get_one(_Stamped, row.id)
                assert loaded.created_at == OLD
                assert loaded.updated_at > OLD
                _assert_aware_utc(loaded.updated_at, OLD, datetime.now(UTC))

                # Core UPDATEs through the table get the Python-side onupdate as well.
                loaded.updated_at = OLD
                await session.flush()
                await session.execute(
                    update(_Stamped).where(_Stamped.id == row.id).values(name="core update")
                )
                await session.refresh(loaded)
                assert loaded.created_at == OLD
                assert loaded.updated_at > OLD
        finally:
            await engine.dispose()

    asyncio.run(main())


@pytest.mark.db
def test_other_offsets_are_stored_as_the_same_instant(async_db_url: str) -> None:
    plus_two = datetime(2024, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    async def main() -> datetime:
        engine = await _engine_with_table(async_db_url)
        try:
            async with get_db_session(engine) as session:
                row = _Stamped(name="tz", created_at=plus_two)
                session.add(row)
            async with get_db_session(engine) as session:
                return (await session.get_one(_Stamped, row.id)).created_at
        finally:
            await engine.dispose()

    stored = asyncio.run(main())
    assert stored == plus_two
    assert stored == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert stored.utcoffset() == timedelta(0)


@pytest.mark.db
def test_naive_datetimes_are_refused(async_db_url: str) -> None:
    async def main() -> None:
        engine = await _engine_with_table(async_db_url)
        try:
            with pytest.raises(StatementError, match="naive datetime"):
                async with get_db_session(engine) as session:
                    session.add(_Stamped(name="naive", created_at=datetime(2024, 1, 1)))
        finally:
            await engine.dispose()

    asyncio.run(main())
