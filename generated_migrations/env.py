"""Alembic environment for the generated migrations (hand-written, not generated).

`schemagen init` writes this file from the copy shipped in the package (templates/init/env.py);
keep the two identical. The connection comes from the caller as a Connection or an Engine
(pytest-alembic passes an Engine), else the URL: the caller's (schemagen passes it in), else
sqlalchemy.url, else DATABASE_URL, else the project's configured url; sync and async URLs both
work. target_metadata (for `alembic check`, `alembic revision --autogenerate` and
pytest-alembic) is the caller's, else the MetaData named by `metadata` in the project's
configuration, imported only when Alembic compares models (never for a migration run).
Each change runs in its own transaction, and on SQLite with foreign-key enforcement
switched off around the run (see generator.db).
"""

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from alembic import context
from alembic.util import CommandError
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine

from generator import db, guard, integrity, plain_alembic, version_table
from generator.config import ConfigError, Project, find_project, is_foreign, load_metadata

config = context.config


def _project() -> Project | None:
    start = Path(config.config_file_name).parent if config.config_file_name else None
    try:
        return find_project(start)
    except ConfigError:
        return None


def _version_table() -> str:
    """schemagen's setting, else the project's (its own table beside another history's)."""
    project = None if config.attributes.get("version_table") else _project()
    name = config.attributes.get("version_table") or (
        project.version_table if project is not None else version_table.DEFAULT
    )
    version_table.use(name)
    return str(name)


def _include_object() -> Callable[..., bool]:
    """Another owner's tables (foreign_tables in the configuration) are not compared."""
    project = _project()
    foreign = project.foreign_tables if project is not None else ()

    def include(obj: object, name: str | None, type_: str, *_: object) -> bool:
        return not (type_ == "table" and name is not None and is_foreign(name, foreign))

    return include


def _target_metadata() -> MetaData | None:
    given = config.attributes.get("target_metadata")
    if given is not None:
        return given
    # Alembic hands a revision context to the environment only when it compares the models
    # with the database (revision --autogenerate, check): a migration run never imports them.
    options = getattr(getattr(context, "_proxy", None), "context_opts", None)
    if options is not None and "revision_context" not in options:
        return None
    project = _project()
    if project is None:
        return None
    if project.metadata is None:
        where = project.config_file or project.root / "schemagen.toml"
        raise CommandError(
            f'no models to compare with: set metadata = "package.module:attribute" (the '
            f"application's SQLAlchemy MetaData) in {where}; to write a change, use "
            "`schemagen new`"
        )
    try:
        return load_metadata(project)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


def _run(connection: Connection) -> None:
    # Before any revision is imported: an edited generated file never runs unannounced
    # (schemagen upgrade/downgrade did this already, before connecting).
    if not config.attributes.get("integrity_checked"):
        reason = integrity.override(config.attributes)
        integrity.preflight(Path(__file__).resolve().parent, connection.dialect.name, reason)
    # Timeouts before the first query, one runner at a time (schemagen's --lock-timeout and
    # friends, else SCHEMAGEN_* environment variables for plain alembic): generator.guard.
    settings = config.attributes.get("guard") or guard.Settings.from_environment()
    with guard.runner(connection, settings), db.sqlite_foreign_keys_off(connection):
        context.configure(
            connection=connection,
            target_metadata=_target_metadata(),
            include_object=_include_object(),
            version_table=_version_table(),
            transaction_per_migration=True,
            # autogenerate / `alembic check`: a range check's domain (PostgreSQL) compares as
            # its base type, an enum as the spec says (generator.models)
            compare_type=_types_differ,
        )
        with guard.naming_failures(connection):
            with context.begin_transaction():
                context.run_migrations()
            if connection.in_transaction():
                connection.commit()


def _types_differ(*args: object) -> bool | None:
    """Alembic's compare_type hook (autogenerate, `alembic check`): generator.models', imported
    only when a comparison runs (it loads every operation's module)."""
    from generator import models

    return models.types_differ(*args)


async def _run_async(url: object) -> None:
    engine = db.make_async_engine(url)  # type: ignore[arg-type]
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _url_text() -> str | None:
    explicit = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if explicit or os.environ.get("DATABASE_URL"):
        return str(explicit) if explicit else None
    # Plain `alembic`: the url configured for the project that holds alembic.ini.
    project = _project()
    return project.url if project is not None else None


def _run_offline() -> None:
    """`schemagen plan` / `alembic upgrade --sql`: print the SQL instead of running it. The
    checks, which need a live database, are named in comments instead."""
    dialect = config.attributes.get("dialect") or db.resolve_url(_url_text()).get_backend_name()
    context.configure(
        dialect_name=dialect,
        literal_binds=True,
        version_table=_version_table(),
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
    if isinstance(connection, Engine):
        with connection.connect() as engine_connection:
            _run(engine_connection)
        return
    if connection is not None:
        _run(connection)
        return
    url = db.resolve_url(_url_text())
    if db.is_async(url):
        asyncio.run(_run_async(url))
        return
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


# From the `alembic` command line a failure is one line and an exit code, not a traceback.
plain_alembic.run(main, config)
