"""Run the generated migrations with Alembic, and verify a database against its revision."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection

from generator import db, runtime

T = TypeVar("T")


def alembic_config(migrations_dir: Path, url: URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Passed as an attribute, not an option: ConfigParser would choke on a '%' in a password.
    config.attributes["url"] = url.render_as_string(hide_password=False)
    return config


def _config(migrations_dir: Path, url: URL, connection: Connection | None) -> Config:
    config = alembic_config(migrations_dir, url)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(
    migrations_dir: Path, url: URL, to: str = "head", connection: Connection | None = None
) -> None:
    """Upgrade to ``to``; with ``connection``, on that connection (env.py still switches
    SQLite's foreign-key enforcement off around the run and back on after it)."""
    command.upgrade(_config(migrations_dir, url, connection), to)


def downgrade(
    migrations_dir: Path, url: URL, to: str, connection: Connection | None = None
) -> None:
    command.downgrade(_config(migrations_dir, url, connection), to)


def heads(migrations_dir: Path) -> list[str]:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    return list(ScriptDirectory.from_config(config).get_heads())


def with_connection(url: URL, fn: Callable[[Connection], T]) -> T:
    """Call ``fn`` with a connection of either flavour of URL (async URLs via run_sync)."""
    if db.is_async(url):

        async def go() -> T:
            engine = db.make_async_engine(url)
            try:
                async with engine.connect() as conn:
                    return await conn.run_sync(fn)
            finally:
                await engine.dispose()

        return asyncio.run(go())
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return fn(conn)
    finally:
        engine.dispose()


def change_for(migrations_dir: Path, revision: str | None) -> tuple[str, str]:
    """(change name, phase) whose checks describe a database at ``revision``."""
    versions = sorted((migrations_dir / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    if revision is None:
        if not versions:
            raise LookupError("no generated migrations found")
        return versions[0].stem, "pre"
    for path in versions:
        if path.stem.split("_", 1)[0] == revision:
            return path.stem, "post"
    raise LookupError(f"the database is at revision {revision!r}, which no migration here has")


def verify(migrations_dir: Path, url: URL) -> tuple[str | None, str, list[runtime.CheckResult]]:
    """Run the validation SQL for the database's current revision; failures are returned."""

    def go(conn: Connection) -> tuple[str | None, str, list[runtime.CheckResult]]:
        revision = runtime.current_revision(conn)
        change, phase = change_for(migrations_dir, revision)
        script = migrations_dir / "versions" / f"{change}.py"
        file = runtime.validation_file(script, conn.dialect.name, change, phase)
        return revision, f"{change}.{phase}", runtime.evaluate(conn, file, change, phase)

    return with_connection(url, go)
