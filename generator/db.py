"""Database URLs and engines for running migrations: sync or async, SQLite or PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from generator import redact
from generator.sqlite import install_sqlite_listeners


class UrlError(ValueError):
    """A database URL that cannot be used; the message never contains its password."""


class NoDatabase(RuntimeError):
    """A SQLite file that does not exist, for a command that must not create it."""


# The pip package that provides each driver SQLAlchemy names in a URL (postgresql+<driver>).
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg_async": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "psycopg2cffi": "psycopg2cffi",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "pygresql": "PyGreSQL",
    "aiosqlite": "aiosqlite",
    "pysqlcipher": "sqlcipher3-binary",
    "pysqlite": "(part of Python)",
}


def _repair_userinfo(text: str) -> str:
    """Percent-encode the ``@`` of a password typed unencoded: SQLAlchemy would end the
    password at the first ``@`` and take the rest for the host (redact.userinfo_password)."""
    pw = redact.userinfo_password(text)
    if not pw or "@" not in pw:
        return text
    start = text.index("://") + 3
    colon = text.index(":", start)
    return text[: colon + 1] + pw.replace("@", "%40") + text[colon + 1 + len(pw) :]


def resolve_url(explicit: str | None = None) -> URL:
    """``--url``, else ``DATABASE_URL``; no default (the CLI adds the project's configured url)."""
    text = explicit or os.environ.get("DATABASE_URL")
    if not text:
        raise UrlError("no database URL: pass --url or set DATABASE_URL")
    redact.register_url_text(text)
    try:
        url = sa.make_url(_repair_userinfo(text))
    except Exception as exc:  # ArgumentError and friends quote the URL: never show it
        raise UrlError(f"cannot parse the database URL {redact.redact(text)!r}") from exc
    redact.register_url(url)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UrlError(
            f"unsupported database {url.get_backend_name()!r} in {redact.safe_url(url)} "
            "(expected sqlite or postgresql)"
        )
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite" and driver != "pysqlcipher" and (url.username or url.password):
        # SQLAlchemy refuses these only when it connects, quoting the URL
        raise UrlError(
            f"a SQLite URL takes no user or password: {redact.safe_url(url)} "
            "(a file is sqlite:///relative/path.db or sqlite:////absolute/path.db)"
        )
    known = ", ".join(sorted(d for d in DRIVER_PACKAGES if d != "psycopg_async"))
    try:
        dialect = url.get_dialect()
    except Exception as exc:
        raise UrlError(
            f"unknown driver {driver!r} in {redact.safe_url(url)} (SQLAlchemy has no "
            f"{backend}+{driver} dialect; drivers: {known})"
        ) from exc
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        package = DRIVER_PACKAGES.get(driver, driver)
        raise UrlError(
            f"the {backend}+{driver} driver is not installed ({type(exc).__name__}: "
            f"{redact.redact(str(exc))}); install it with `pip install {package}`, or use "
            f"postgresql+psycopg:// (installed with schemagen)"
            if backend == "postgresql"
            else f"the {backend}+{driver} driver is not installed; `pip install {package}`"
        ) from exc
    return url


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names; None for an in-memory database."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or "mode=memory" in database:
        return None
    if database.startswith("file:"):  # uri=true form
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


def require_existing(url: URL) -> None:
    """Refuse a SQLite URL whose file is missing: connecting would create an empty one."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise NoDatabase(
            f"no database at {path.resolve()} (nothing was created; check --url or "
            "DATABASE_URL, or create it with `schemagen upgrade`)"
        )


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
