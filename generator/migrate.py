"""Run the generated migrations with Alembic, and verify a database against its revision."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection

from generator import db, dialects, guard, runtime

T = TypeVar("T")


def alembic_config(migrations_dir: Path, url: URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Passed as an attribute, not an option: ConfigParser would choke on a '%' in a password.
    config.attributes["url"] = url.render_as_string(hide_password=False)
    return config


def _config(
    migrations_dir: Path,
    url: URL,
    connection: Connection | None,
    settings: guard.Settings | None = None,
) -> Config:
    config = alembic_config(migrations_dir, url)
    if connection is not None:
        config.attributes["connection"] = connection
    if settings is not None:
        config.attributes["guard"] = settings
    return config


def upgrade(
    migrations_dir: Path,
    url: URL,
    to: str = "head",
    connection: Connection | None = None,
    settings: guard.Settings | None = None,
) -> None:
    """Upgrade to ``to``; with ``connection``, on that connection (env.py still switches
    SQLite's foreign-key enforcement off around the run and back on after it). ``settings``:
    lock waits and the runner lock (default: from the environment, generator.guard)."""
    command.upgrade(_config(migrations_dir, url, connection, settings), to)


def downgrade(
    migrations_dir: Path,
    url: URL,
    to: str,
    connection: Connection | None = None,
    settings: guard.Settings | None = None,
) -> None:
    command.downgrade(_config(migrations_dir, url, connection, settings), to)


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


def plan_sql(migrations_dir: Path, dialect: str, direction: str, revision: str) -> str:
    """The SQL one change runs in one direction, rendered offline (no database needed)."""
    number = int(revision)
    before = "base" if number == 0 else f"{number - 1:04d}"
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    buffer = io.StringIO()
    config.attributes.update(dialect=dialect, output_buffer=buffer)
    if direction == "upgrade":
        command.upgrade(config, f"{before}:{revision}" if number else revision, sql=True)
    else:
        command.downgrade(config, f"{revision}:{before}", sql=True)
    return buffer.getvalue()


_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]*\$")


def _in_dollar_quote(line: str, quoted: bool) -> bool:
    """Whether a ``$tag$ ... $tag$`` body (a DO block) is still open after ``line``: its
    semicolons end no statement."""
    for _ in _DOLLAR_TAG.finditer(line):
        quoted = not quoted
    return quoted


def statements(plan_text: str) -> list[str]:
    """The statements of a plan, without comments, in order."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for line in plan_text.splitlines():
        if not current and (not line.strip() or line.startswith("--")):
            continue
        current.append(line)
        quoted = _in_dollar_quote(line, quoted)
        if not quoted and line.rstrip().endswith(";"):
            out.append("\n".join(current).strip().rstrip(";").strip())
            current = []
    return [s for s in out if s]


def annotate(plan_text: str, dialect: str) -> str:
    """The plan with each statement preceded by the lock it takes and whether it rewrites."""
    out: list[str] = []
    statement: list[str] = []
    quoted = False
    for line in plan_text.splitlines():
        if not statement and (not line.strip() or line.startswith("--")):
            out.append(line)
            continue
        statement.append(line)
        quoted = _in_dollar_quote(line, quoted)
        if not quoted and line.rstrip().endswith(";"):
            lock, rewrites = dialects.statement_lock("\n".join(statement), dialect)
            if lock != "none":
                out.append(f"-- lock: {lock}{'; REWRITES THE TABLE' if rewrites else ''}")
            out.extend(statement)
            statement = []
    return "\n".join(out + statement) + "\n"
