"""The declarative base's naming convention, checked in metadata and in real databases."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import CheckConstraint, Connection, ForeignKey, MetaData, String, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateTable

from marketdata import NAMING_CONVENTION, Base, create_app_engine


class _TestBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _Owner(_TestBase):
    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(primary_key=True)


class _Widget(_TestBase):
    __tablename__ = "widgets"
    __table_args__ = (CheckConstraint("qty >= 0", name="qty_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    label: Mapped[str] = mapped_column(String(32), index=True)
    qty: Mapped[int]
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id"))


def test_base_uses_the_naming_convention() -> None:
    assert Base.metadata.naming_convention == NAMING_CONVENTION
    assert NAMING_CONVENTION == {
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }


def test_base_metadata_holds_no_test_tables() -> None:
    assert "widgets" not in Base.metadata.tables
    assert "owners" not in Base.metadata.tables


def test_convention_names_every_constraint() -> None:
    table = _TestBase.metadata.tables["widgets"]
    ddl = str(CreateTable(table).compile())
    assert "CONSTRAINT pk_widgets PRIMARY KEY (id)" in ddl
    assert "CONSTRAINT uq_widgets_code UNIQUE (code)" in ddl
    assert "CONSTRAINT fk_widgets_owner_id_owners FOREIGN KEY(owner_id)" in ddl
    assert "CONSTRAINT ck_widgets_qty_non_negative CHECK (qty >= 0)" in ddl
    assert {index.name for index in table.indexes} == {"ix_widgets_label"}


def _reflect_names(conn: Connection) -> dict[str, object]:
    insp = inspect(conn)
    return {
        "pk": insp.get_pk_constraint("widgets")["name"],
        "uq": [uq["name"] for uq in insp.get_unique_constraints("widgets")],
        "fk": [fk["name"] for fk in insp.get_foreign_keys("widgets")],
        "ck": [ck["name"] for ck in insp.get_check_constraints("widgets")],
        "ix": sorted(
            str(ix["name"])
            for ix in insp.get_indexes("widgets")
            # PostgreSQL reports the index behind a unique constraint too.
            if not ix.get("duplicates_constraint")
        ),
    }


@pytest.mark.db
def test_convention_names_reach_the_database(async_db_url: str) -> None:
    async def main() -> dict[str, object]:
        engine = create_app_engine(async_db_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_TestBase.metadata.create_all)
                return await conn.run_sync(_reflect_names)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == {
        "pk": "pk_widgets",
        "uq": ["uq_widgets_code"],
        "fk": ["fk_widgets_owner_id_owners"],
        "ck": ["ck_widgets_qty_non_negative"],
        "ix": ["ix_widgets_label"],
    }
