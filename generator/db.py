"""Database URLs and engines for running migrations: sync or async, SQLite or PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from generator import redact
from generator.sqlite import install_sqlite_listeners


class UrlError(ValueError):
    """A database URL that cannot be used; the message never contains its password."""


def resolve_url(explicit: str | None = None) -> URL:
    """``--url``, else ``DATABASE_URL``; no default (the CLI adds the project's configured url)."""
    text = explicit or os.environ.get("DATABASE_URL")
    if not text:
        raise UrlError("no database URL: pass --url or set DATABASE_URL")
    redact.register_url_text(text)
    try:
        url = sa.make_url(text)
    except Exception as exc:  # ArgumentError and friends quote the URL: never show it
        raise UrlError(f"cannot parse the database URL {redact.redact(text)!r}") from exc
    redact.register_url(url)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UrlError(
            f"unsupported database {url.get_backend_name()!r} in {redact.safe_url(url)} "
            "(expected sqlite or postgresql)"
        )
    try:
        url.get_dialect()
    except Exception as exc:
        raise UrlError(f"unknown driver in {redact.safe_url(url)}: {exc}") from exc
    return url


def is_async(url: URL) -> bool:
    return bool(getattr(url.get_dialect(), "is_async", False))


def make_engine(url: URL) -> Engine:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    if url.get_backend_name() == "sqlite":
        install_sqlite_listeners(engine)  # FK on, transactional DDL
    return engine


def make_async_engine(url: URL) -> AsyncEngine:
    engine = create_async_engine(url, poolclass=sa.pool.NullPool)
    if url.get_backend_name() == "sqlite":
        install_sqlite_listeners(engine.sync_engine)
    return engine


def _pragma(connection: Connection, sql: str) -> Any:
    """Run a PRAGMA on the driver connection, outside any SQLAlchemy transaction."""
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return row[0] if row else None


@contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Switch SQLite's foreign-key enforcement off for a migration run, then restore it.

    ``PRAGMA foreign_keys`` is a no-op inside a transaction, so it is changed on the driver
    connection between transactions. With enforcement on, recreating a parent table in batch
    mode runs an implicit DELETE that cascades into its children. Each migration runs
    ``PRAGMA foreign_key_check`` before it commits instead (generator.runtime).
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    if connection.in_transaction():
        connection.commit()
    was = _pragma(connection, "PRAGMA foreign_keys")
    _pragma(connection, "PRAGMA foreign_keys=OFF")
    if _pragma(connection, "PRAGMA foreign_keys") != 0:
        raise RuntimeError("could not switch SQLite foreign-key enforcement off")
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        _pragma(connection, f"PRAGMA foreign_keys={'ON' if was else 'OFF'}")
