"""Alembic environment for the generated migrations (hand-written, not generated).

The URL comes from the caller (schemagen passes it in), else DATABASE_URL, else the SQLite
default; sync and async URLs both work. Each change runs in its own transaction, and on
SQLite with foreign-key enforcement switched off around the run (see generator.db).
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from generator import db, guard

config = context.config


def _run(connection: Connection) -> None:
    # Timeouts before the first query, one runner at a time (schemagen's --lock-timeout and
    # friends, else SCHEMAGEN_* environment variables for plain alembic): generator.guard.
    settings = config.attributes.get("guard") or guard.Settings.from_environment()
    with guard.runner(connection, settings), db.sqlite_foreign_keys_off(connection):
        context.configure(connection=connection, transaction_per_migration=True)
        with guard.naming_failures(connection):
            with context.begin_transaction():
                context.run_migrations()
            if connection.in_transaction():
                connection.commit()


async def _run_async(url: object) -> None:
    engine = db.make_async_engine(url)  # type: ignore[arg-type]
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    """`schemagen plan` / `alembic upgrade --sql`: print the SQL instead of running it. The
    checks, which need a live database, are named in comments instead."""
    dialect = (
        config.attributes.get("dialect")
        or db.resolve_url(
            config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
        ).get_backend_name()
    )
    context.configure(
        dialect_name=dialect,
        literal_binds=True,
        transaction_per_migration=True,
        output_buffer=config.attributes.get("output_buffer"),
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        _run_offline()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = db.resolve_url(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))
    if db.is_async(url):
        asyncio.run(_run_async(url))
        return
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


main()
