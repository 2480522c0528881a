"""Run the generated migrations with Alembic, and verify a database against its revision."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection

from generator import db, dialects, integrity, revisions, runtime

T = TypeVar("T")


def alembic_config(migrations_dir: Path, url: URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Passed as an attribute, not an option: ConfigParser would choke on a '%' in a password.
    config.attributes["url"] = url.render_as_string(hide_password=False)
    return config


def _config(
    migrations_dir: Path, url: URL, connection: Connection | None, allow_modified: str | None
) -> Config:
    config = alembic_config(migrations_dir, url)
    if connection is not None:
        config.attributes["connection"] = connection
    if allow_modified:
        config.attributes["allow_modified"] = allow_modified
    return config


def _checked(config: Config, preflight_done: bool) -> Config:
    config.attributes["integrity_checked"] = preflight_done
    return config


def upgrade(
    migrations_dir: Path,
    url: URL,
    to: str = "head",
    connection: Connection | None = None,
    allow_modified: str | None = None,
    preflight_done: bool = False,
) -> None:
    """Upgrade to ``to``; with ``connection``, on that connection (env.py still switches
    SQLite's foreign-key enforcement off around the run and back on after it).

    ``allow_modified`` is the operator's reason to run generated files that differ from
    schemagen.sum (see generator.integrity); without it they are refused. ``preflight_done``
    says the caller checked every file already (env.py then does not check them again)."""
    config = _checked(_config(migrations_dir, url, connection, allow_modified), preflight_done)
    command.upgrade(config, to)


def downgrade(
    migrations_dir: Path,
    url: URL,
    to: str,
    connection: Connection | None = None,
    allow_modified: str | None = None,
    preflight_done: bool = False,
) -> None:
    config = _checked(_config(migrations_dir, url, connection, allow_modified), preflight_done)
    command.downgrade(config, to)


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


def change_for(migrations_dir: Path, revision: str | None) -> tuple[str, str, str | None]:
    """(change name, phase, note) whose checks describe a database at ``revision``.

    At a hand-written revision they are the post-checks of its nearest generated ancestor,
    and the note says so."""
    versions = sorted((migrations_dir / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    if revision is None:
        if not versions:
            raise LookupError("no generated migrations found")
        return versions[0].stem, "pre", None
    chain = revisions.read(migrations_dir)
    ancestor = revisions.nearest_generated(chain, revision)
    own = next((r for r in chain if r.revision == revision), None)
    if own is None or ancestor is None:
        raise LookupError(
            f"the database is at revision {revision!r}, which no migration here has"
            if own is None
            else f"the database is at hand-written revision {revision!r} ({own.path}), "
            "which follows no generated revision: there are no checks to run"
        )
    if own.generated:
        return ancestor.name, "post", None
    return (
        ancestor.name,
        "post",
        f"revision {revision} is hand-written ({own.path}); these are the checks of its "
        f"nearest generated ancestor {ancestor.revision}, which it may have changed",
    )


def verify(
    migrations_dir: Path, url: URL, allow_modified: str | None = None
) -> tuple[str | None, str, list[runtime.CheckResult], str | None]:
    """Run the validation SQL for the database's current revision; failures are returned,
    with a note when the revision is hand-written. The validation file must match the sum
    (see generator.integrity) unless ``allow_modified`` gives the reason to run it anyway."""

    def go(conn: Connection) -> tuple[str | None, str, list[runtime.CheckResult], str | None]:
        revision = runtime.current_revision(conn)
        change, phase, note = change_for(migrations_dir, revision)
        script = migrations_dir / "versions" / f"{change}.py"
        dialect = conn.dialect.name
        rel = f"validation/{dialect}/{change}.{phase}.sql"
        runtime.use_verified(script, integrity.check(migrations_dir, [rel], allow_modified))
        file = runtime.validation_file(script, dialect, change, phase)
        results = runtime.evaluate(conn, file, change, phase)
        return revision, f"{change}.{phase}", results, note

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


def statements(plan_text: str) -> list[str]:
    """The statements of a plan, without comments, in order."""
    out: list[str] = []
    current: list[str] = []
    for line in plan_text.splitlines():
        if not current and (not line.strip() or line.startswith("--")):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(current).strip().rstrip(";").strip())
            current = []
    return [s for s in out if s]


def annotate(plan_text: str, dialect: str) -> str:
    """The plan with each statement preceded by the lock it takes and whether it rewrites."""
    out: list[str] = []
    statement: list[str] = []
    for line in plan_text.splitlines():
        if not statement and (not line.strip() or line.startswith("--")):
            out.append(line)
            continue
        statement.append(line)
        if line.rstrip().endswith(";"):
            lock, rewrites = dialects.statement_lock("\n".join(statement), dialect)
            if lock != "none":
                out.append(f"-- lock: {lock}{'; REWRITES THE TABLE' if rewrites else ''}")
            out.extend(statement)
            statement = []
    return "\n".join(out + statement) + "\n"
