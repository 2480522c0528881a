"""The app engine (URL forms, SQLite foreign keys and transactions) and get_db_session."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy import ForeignKey, MetaData, String, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from marketdata import NAMING_CONVENTION, create_app_engine, db, get_db_session


class _TestBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _Parent(_TestBase):
    __tablename__ = "parents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32))


class _Child(_TestBase):
    __tablename__ = "children"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))


class _Boom(Exception):
    pass


async def _engine_with_tables(url: str) -> AsyncEngine:
    engine = create_app_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_TestBase.metadata.create_all)
    return engine


async def _parent_names(engine: AsyncEngine) -> list[str]:
    async with get_db_session(engine) as session:
        return list(await session.scalars(select(_Parent.name).order_by(_Parent.name)))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+pysqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://u:pw@h:5/d?x=1", "postgresql+asyncpg://u:pw@h:5/d?x=1"),
        ("postgresql+psycopg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+psycopg2://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_to_async_url(given: str, expected: str) -> None:
    assert db.to_async_url(given).render_as_string(hide_password=False) == expected
    assert db.to_async_url(sa.make_url(given)).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize("url", ["mysql://u@h/d", "postgresql+pg8000://u@h/d", "oracle://h"])
def test_to_async_url_refuses_other_databases(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        db.to_async_url(url)


@pytest.mark.db
def test_session_commits_on_success(async_db_url: str) -> None:
    async def main() -> list[str]:
        engine = await _engine_with_tables(async_db_url)
        try:
            async with get_db_session(engine) as session:
                parent = _Parent(name="kept")
                session.add(parent)
            # expire_on_commit=False: still usable after the session has closed.
            assert parent.name == "kept"
            return await _parent_names(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == ["kept"]


@pytest.mark.db
def test_session_rolls_back_and_reraises_on_exception(async_db_url: str) -> None:
    async def main() -> list[str]:
        engine = await _engine_with_tables(async_db_url)
        try:
            with pytest.raises(_Boom):
                async with get_db_session(engine) as session:
                    session.add(_Parent(name="discarded"))
                    await session.flush()  # the INSERT has reached the database
                    raise _Boom
            return await _parent_names(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == []


@pytest.mark.db
def test_session_rolls_back_when_commit_fails(async_db_url: str) -> None:
    async def main() -> list[str]:
        engine = await _engine_with_tables(async_db_url)
        try:
            with pytest.raises(IntegrityError):
                async with get_db_session(engine) as session:
                    session.add(_Parent(name="discarded"))
                    session.add(_Child(parent_id=999))
            return await _parent_names(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == []


@pytest.mark.db
def test_foreign_keys_are_enforced(async_db_url: str) -> None:
    async def main() -> None:
        engine = await _engine_with_tables(async_db_url)
        try:
            with pytest.raises(IntegrityError):
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO children (parent_id) VALUES (42)"))
        finally:
            await engine.dispose()

    asyncio.run(main())


@pytest.mark.db
def test_ddl_and_savepoints_are_transactional(async_db_url: str) -> None:
    async def main() -> tuple[bool, list[str]]:
        engine = await _engine_with_tables(async_db_url)
        try:
            # Without an explicit BEGIN, sqlite3 would run this DDL outside the transaction.
            with pytest.raises(_Boom):
                async with engine.begin() as conn:
                    await conn.execute(text("CREATE TABLE scratch (id INTEGER)"))
                    raise _Boom
            async with engine.connect() as conn:
                has_scratch = await conn.run_sync(lambda c: sa.inspect(c).has_table("scratch"))

            async with get_db_session(engine) as session:
                session.add(_Parent(name="outer"))
                nested = await session.begin_nested()
                session.add(_Parent(name="inner"))
                await nested.rollback()
            return has_scratch, await _parent_names(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == (False, ["outer"])


@pytest.mark.db
def test_autocommit_connections_get_no_begin(async_db_url: str) -> None:
    async def main() -> tuple[list[str], list[str]]:
        engine = await _engine_with_tables(async_db_url)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("INSERT INTO parents (name) VALUES ('autocommitted')"))
                await conn.rollback()  # nothing to undo: each statement committed itself
            # The pooled connection returns to normal transactions afterwards.
            with pytest.raises(_Boom):
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO parents (name) VALUES ('undone')"))
                    raise _Boom
            first = await _parent_names(engine)
        finally:
            await engine.dispose()

        # An engine-wide AUTOCOMMIT is honoured too.
        engine = create_app_engine(async_db_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text("INSERT INTO parents (name) VALUES ('engine-wide')"))
                await conn.rollback()
            return first, await _parent_names(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == (["autocommitted"], ["autocommitted", "engine-wide"])


@pytest.mark.db
def test_sync_url_is_accepted(db_url: str) -> None:
    async def main() -> None:
        engine = await _engine_with_tables(db_url)
        try:
            async with get_db_session(engine) as session:
                session.add(_Parent(name="via sync url"))
        finally:
            await engine.dispose()

    asyncio.run(main())
    # The migration tool's sync engine sees what the app wrote.
    sync_engine = sa.create_engine(db_url)
    try:
        with sync_engine.connect() as conn:
            assert conn.scalar(text("SELECT name FROM parents")) == "via sync url"
    finally:
        sync_engine.dispose()


@pytest.mark.db
def test_default_engine_comes_from_database_url(
    async_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", async_db_url)
    monkeypatch.setattr(db, "_default_engine", None)

    async def main() -> int | None:
        try:
            async with db.get_default_engine().begin() as conn:
                await conn.run_sync(_TestBase.metadata.create_all)
            async with get_db_session() as session:
                session.add(_Parent(name="default"))
            async with get_db_session() as session:
                return await session.scalar(select(func.count()).select_from(_Parent))
        finally:
            await db.dispose_default_engine()

    assert asyncio.run(main()) == 1
    assert db._default_engine is None


@pytest.mark.db
@pytest.mark.parametrize("multirow", [True, False])
def test_many_rows_go_as_multi_row_inserts_on_postgresql(
    async_db_url: str, dialect: str, multirow: bool
) -> None:
    """2,500 rows in one execute: on PostgreSQL three multi-row INSERT statements (pages of
    1,000) rather than an executemany of one statement per row; SQLite keeps its executemany
    (one prepared statement, no per-row preparation to save). Every row arrives either way."""
    statements: list[tuple[str, bool]] = []

    async def main() -> int:
        engine = create_app_engine(async_db_url, multirow_inserts=multirow)
        async with engine.begin() as conn:
            await conn.run_sync(_TestBase.metadata.create_all)

        @sa.event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _seen(
            conn: object,
            cursor: object,
            statement: str,
            params: object,
            context: object,
            executemany: bool,
        ) -> None:
            if statement.startswith("INSERT INTO parents"):
                statements.append((statement, executemany))

        try:
            async with engine.begin() as conn:
                rows = [{"name": f"p{i}"} for i in range(2500)]
                await conn.execute(sa.insert(_Parent.__table__), rows)
                return int(await conn.scalar(select(func.count()).select_from(_Parent)) or 0)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == 2500
    if dialect == "postgresql" and multirow:
        assert len(statements) == 3
        assert [s.count("), (") for s, _ in statements] == [999, 999, 499]
    else:
        assert len(statements) == 1
        assert statements[0][0].count("), (") == 0


def test_sqlite_connections_get_the_larger_page_cache(tmp_path: object) -> None:
    """The app's engine and the migration tool's both set SQLite's page cache (32 MiB, not
    SQLite's 2 MB) and foreign keys, on every new connection."""
    from pathlib import Path

    from generator.db import make_engine

    path = Path(str(tmp_path)) / "cache.db"
    expected = (-db.SQLITE_CACHE_KIB, 1)
    assert db.SQLITE_CACHE_KIB >= 8192  # the rule_alerts working set: docs/performance.md

    async def app_side() -> tuple[int, int]:
        engine = create_app_engine(f"sqlite+aiosqlite:///{path}")
        try:
            async with engine.connect() as conn:
                cache = (await conn.exec_driver_sql("PRAGMA cache_size")).scalar_one()
                keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
                return cache, keys
        finally:
            await engine.dispose()

    assert asyncio.run(app_side()) == expected
    tool = make_engine(sa.make_url(f"sqlite:///{path}"))
    try:
        with tool.connect() as conn:
            cache = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
            keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one()
        assert (cache, keys) == expected
    finally:
        tool.dispose()
