"""The declarative base every model inherits, with deterministic constraint names."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase

# Explicit names make migrations reproducible: both dialects get the same constraint names,
# so a later migration can drop or alter a constraint by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(AsyncAttrs, DeclarativeBase):
    """Base class of all market-data models.

    ``AsyncAttrs`` gives every model ``awaitable_attrs``, so an async session can lazy-load
    a relationship explicitly: ``await instrument.awaitable_attrs.ticks``.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
