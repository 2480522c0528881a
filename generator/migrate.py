"""Run the generated migrations with Alembic, and verify a database against its revision."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection

from generator import db, guard, integrity, revisions, runtime, version_table

T = TypeVar("T")


def alembic_config(migrations_dir: Path, url: URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Passed as an attribute, not an option: ConfigParser would choke on a '%' in a password.
    config.attributes["url"] = url.render_as_string(hide_password=False)
    config.attributes["version_table"] = version_table.get()
    return config


def _config(
    migrations_dir: Path,
    url: URL,
    connection: Connection | None,
    allow_modified: str | None = None,
    settings: guard.Settings | None = None,
) -> Config:
    config = alembic_config(migrations_dir, url)
    if connection is not None:
        config.attributes["connection"] = connection
    if allow_modified:
        config.attributes["allow_modified"] = allow_modified
    if settings is not None:
        config.attributes["guard"] = settings
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
    settings: guard.Settings | None = None,
) -> None:
    """Upgrade to ``to``; with ``connection``, on that connection (env.py still switches
    SQLite's foreign-key enforcement off around the run and back on after it).

    ``allow_modified`` is the operator's reason to run generated files that differ from
    schemagen.sum (see generator.integrity); without it they are refused. ``preflight_done``
    says the caller checked every file already (env.py then does not check them again).
    ``settings``: lock waits and the runner lock (default: from the environment,
    generator.guard)."""
    config = _checked(
        _config(migrations_dir, url, connection, allow_modified, settings), preflight_done
    )
    _locked(config, url, connection, settings, "upgrade", to)


def downgrade(
    migrations_dir: Path,
    url: URL,
    to: str,
    connection: Connection | None = None,
    allow_modified: str | None = None,
    preflight_done: bool = False,
    settings: guard.Settings | None = None,
) -> None:
    config = _checked(
        _config(migrations_dir, url, connection, allow_modified, settings), preflight_done
    )
    _locked(config, url, connection, settings, "downgrade", to)


def _locked(
    config: Config,
    url: URL,
    connection: Connection | None,
    settings: guard.Settings | None,
    direction: str,
    to: str,
) -> None:
    """Take the runner lock, then take up a half-applied change and run Alembic, all on one
    connection under that lock: two runners never both move a half-applied change (env.py
    takes the lock again on the same connection, which is then a no-op)."""

    def go(conn: Connection) -> None:
        with guard.runner(conn, settings or config.attributes.get("guard")):
            _take_up_half_applied(config, conn, direction, to)
            config.attributes["connection"] = conn
            if direction == "upgrade":
                command.upgrade(config, to)
            else:
                _refuse_irreversible_on_the_way(config, conn, to)
                command.downgrade(config, to)

    if connection is not None:
        try:
            go(connection)
        except BaseException:
            # The caller's connection stays usable: a change refused before a commit was
            # rolled back on the driver's connection (runtime), which leaves SQLAlchemy's
            # transaction to be rolled back here.
            connection.rollback()  # a no-op without a transaction
            raise
    else:
        with_connection(url, go, bounded=False)


def _take_up_half_applied(config: Config, conn: Connection, direction: str, to: str) -> None:
    """Point alembic_version at the side of a half-applied change from which ``direction``
    runs it: its upgrade runs from the revision before it, its downgrade from its own.

    A half-applied change C sits at the revision before it after an interrupted upgrade and at
    C after an interrupted downgrade. Alembic alone would then skip C (an upgrade from C, a
    downgrade "to" the revision before C) and leave it half-done; moved to the other side, it
    runs C again, whose checks tolerate exactly what the interruption left (runtime.run_change).
    """

    began = not conn.in_transaction()
    note = runtime.half_applied(conn)
    if note is None:
        if began:
            conn.rollback()
        return
    revision, down = note["revision"], note["down_revision"]
    at = runtime.current_revision(conn) or "base"
    script = ScriptDirectory.from_config(config)
    wanted: str | None = None
    table = version_table.get()
    if direction == "upgrade" and at == revision:
        wanted = down
    elif direction == "downgrade" and at == down and _below(script, to, revision):
        wanted = revision
    if wanted is not None:
        runtime.log.warning(
            "%s is half-applied (an interrupted %s): its %s runs from revision %s "
            "(alembic_version %s -> %s)",
            note["change"],
            note.get("direction"),
            direction,
            wanted,
            at,
            wanted,
        )
        if wanted == "base":
            conn.exec_driver_sql(f"DELETE FROM {table}")
        elif at == "base":
            conn.execute(
                sa.text(f"INSERT INTO {table} (version_num) VALUES (:v)"),
                {"v": wanted},
            )
        else:
            conn.execute(
                sa.text(f"UPDATE {table} SET version_num = :v WHERE version_num = :at"),
                {"v": wanted, "at": at},
            )
        # the record says what the database now is: the change, half-done, before a run
        # in this direction (its own run rewrites it the same way)
        runtime.mark_half_applied(conn, note["change"], direction, (revision, down))
    if began:
        conn.commit()


def _refuse_irreversible_on_the_way(config: Config, conn: Connection, to: str) -> None:
    """Refuse a downgrade whose path passes an irreversible change (``purge``, irreversible
    ``sql``) before any change of it runs: otherwise the changes above it would be downgraded
    and committed first, and the refusal leave the database between where it was and where
    it was asked to go. The refusal is the change's own (its first ``runtime.irreversible``)."""
    began = not conn.in_transaction()
    at = runtime.current_revision(conn)
    if began:
        conn.rollback()
    if at is None:
        return
    script = ScriptDirectory.from_config(config)
    try:
        path = list(script.iterate_revisions(at, to))
    except Exception:  # an unknown or upward target: Alembic reports it in its own words
        return
    # the first change of the path refuses by itself (runtime.irreversible, in its transaction)
    for rev in path[1:]:
        if rev.revision == to or rev.path is None:
            continue
        message = _irreversible_message(Path(rev.path))
        if message is not None:
            raise runtime.Irreversible(
                f"{message}. The downgrade to {to} passes it: refused before any change ran, "
                f"the database stays at {at}"
            )


def _irreversible_message(path: Path) -> str | None:
    """The message of the first ``runtime.irreversible(op, "...")`` of a migration file."""
    import ast

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "irreversible"
            and len(node.args) == 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            return node.args[1].value
    return None


def _below(script: ScriptDirectory, target: str, revision: str) -> bool:
    """True when ``target`` is an ancestor of ``revision`` (or base): a downgrade to it passes
    through ``revision``'s downgrade."""
    if target == "base":
        return True
    try:
        wanted = script.get_revision(target)
    except Exception:  # an unknown target: Alembic reports it in its own words
        return False
    if wanted is None:
        return True
    return any(
        r.revision == wanted.revision
        for r in script.iterate_revisions(revision, "base")
        if r.revision != revision
    )


def heads(migrations_dir: Path) -> list[str]:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    return list(ScriptDirectory.from_config(config).get_heads())


def with_connection(url: URL, fn: Callable[[Connection], T], bounded: bool = True) -> T:
    """Call ``fn`` with a connection of either flavour of URL (async URLs via run_sync).

    ``bounded``: its waits for locks and its statements are bounded (generator.guard.bounded,
    settings from the SCHEMAGEN_* environment); a migration run bounds its own (guard.runner).
    """

    def call(conn: Connection) -> T:
        if not bounded:
            return fn(conn)
        with guard.bounded(conn, "reading the database"):
            return fn(conn)

    sqlite_bound = bounded and url.get_backend_name() == "sqlite"
    if sqlite_bound:  # the driver's own wait, for the pragmas of a new connection (5 s)
        timeout = guard.read_bound_ms() / 1000
        connect_url = url.update_query_dict({"timeout": f"{timeout:g}"})
    else:
        connect_url = url
    try:
        if db.is_async(url):

            async def go() -> T:
                engine = db.make_async_engine(connect_url)
                try:
                    async with engine.connect() as conn:
                        return await conn.run_sync(call)
                finally:
                    await engine.dispose()

            return asyncio.run(go())
        engine = db.make_engine(connect_url)
        try:
            with engine.connect() as conn:
                return call(conn)
        finally:
            engine.dispose()
    except sa.exc.OperationalError as exc:
        if sqlite_bound and guard.is_sqlite_busy(exc):
            path = db.sqlite_file(url)
            busy = guard.sqlite_busy("reading the database", guard.read_bound_ms(), path)
            raise busy from exc
        raise


def change_for(migrations_dir: Path, revision: str | None) -> tuple[str, str, str | None]:
    """(change name, phase, note) whose checks describe a database at ``revision``, found through
    the revision graph (revisions.py): at base, the pre-checks of the first change; else the
    post-checks of ``revision``. A database the graph cannot place raises
    revisions.DatabaseStateError. At a hand-written revision they are the post-checks of its
    nearest generated ancestor, and the note says so."""
    script = revisions.script_directory(migrations_dir)
    state = revisions.classify(script, () if revision is None else (revision,))
    if not state.healthy:
        raise revisions.DatabaseStateError(state)
    if revision is None:
        bases = script.get_bases()
        if not bases:
            raise LookupError(f"no migrations found in {migrations_dir / 'versions'}")
        return Path(revisions.all_revisions(script)[bases[0]].path).stem, "pre", None
    # A hand-written revision has no validation files: check the nearest generated revision
    # below it (what the hand-written ones changed on top of it is not checked).
    scripts = revisions.all_revisions(script)
    current: str | None = revision
    while current is not None:
        stem = Path(scripts[current].path).stem
        if any((migrations_dir / "validation").glob(f"*/{stem}.post.sql")):
            note = (
                None
                if current == revision
                else f"revision {revision} is hand-written ({Path(scripts[revision].path).name}); "
                f"these are the checks of its nearest generated ancestor {current}, which it "
                "may have changed"
            )
            return stem, "post", note
        down = scripts[current].down_revision
        current = down if down is None or isinstance(down, str) else down[0]
    # Below the baseline, in an existing history it continues (`after:`): the baseline's
    # pre-checks describe the schema at exactly the revision it names.
    for script_rev in scripts.values():
        stem = Path(script_rev.path).stem
        if script_rev.down_revision == revision and any(
            (migrations_dir / "validation").glob(f"*/{stem}.pre.sql")
        ):
            return stem, "pre", None
    raise LookupError(
        f"no checks describe revision {revision!r}: neither it nor a revision below it is "
        "generated, and no baseline continues it"
    )


def verify(
    migrations_dir: Path, url: URL, allow_modified: str | None = None
) -> tuple[str | None, str, list[runtime.CheckResult], str | None]:
    """Run the validation SQL for the database's current revision; failures are returned,
    with a note when the revision is hand-written. The validation file must match the sum
    (see generator.integrity) unless ``allow_modified`` gives the reason to run it anyway."""

    def go(conn: Connection) -> tuple[str | None, str, list[runtime.CheckResult], str | None]:
        current = revisions.read_revisions(conn)
        state = revisions.classify(revisions.script_directory(migrations_dir), current)
        if not state.healthy:
            raise revisions.DatabaseStateError(state)
        if len(current) > 1:
            raise LookupError(f"the database records several revisions ({state.revision})")
        revision = current[0] if current else None
        change, phase, note = change_for(migrations_dir, revision)
        script = migrations_dir / "versions" / f"{change}.py"
        dialect = conn.dialect.name
        rels = integrity.validation_files(dialect, change, (phase,))
        runtime.use_verified(script, integrity.check(migrations_dir, rels, allow_modified))
        file = runtime.validation_file(script, dialect, change, phase)
        results = runtime.evaluate(conn, file, change, phase)
        return revision, f"{change}.{phase}", results, note

    return with_connection(url, go)


def plan_sql(migrations_dir: Path, dialect: str, direction: str, revision: str) -> str:
    """The SQL one change runs in one direction, rendered offline (no database needed)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    found = ScriptDirectory.from_config(config).get_revision(revision)
    down = found.down_revision if found is not None else None
    before = down if isinstance(down, str) else "base"  # a baseline may continue a history
    buffer = io.StringIO()
    config.attributes.update(dialect=dialect, output_buffer=buffer)
    if direction == "upgrade":
        command.upgrade(config, f"{before}:{revision}" if down else revision, sql=True)
    else:
        command.downgrade(config, f"{revision}:{before}", sql=True)
    return buffer.getvalue()


@dataclass(frozen=True)
class Stamped:
    before: tuple[str, ...]  # what alembic_version held
    target: str
    checks: str | None  # "<change>.<phase>" whose checks describe the target, if any
    results: list[runtime.CheckResult]
    note: str | None
    stamped: bool  # False: the checks failed (or it was there already), nothing written


def baseline_revision(migrations_dir: Path) -> str:
    """The first generated revision of the chain (the baseline)."""
    from generator import revision_files

    chain = revision_files.chain(revision_files.read(migrations_dir))
    first = next((r for r in chain if r.generated), None)
    if first is None:
        raise LookupError(f"no generated revision in {migrations_dir / 'versions'}")
    return first.revision


def stamp(
    migrations_dir: Path,
    url: URL,
    target: str | None = None,
    allow_modified: str | None = None,
    settings: guard.Settings | None = None,
) -> Stamped:
    """Record ``target`` (default: the baseline) in alembic_version without running any
    migration, once the checks describing the schema at ``target`` pass on the database.

    A database at a revision the graph lacks, or a ``target`` it lacks, raises
    revisions.DatabaseStateError / LookupError: nothing is written."""
    script = revisions.script_directory(migrations_dir)
    known = revisions.all_revisions(script)
    wanted = target or baseline_revision(migrations_dir)
    if wanted not in known:
        raise UnknownRevision(
            f"revision {wanted!r} is not in this project's revision graph "
            f"({', '.join(sorted(known)) or 'no revisions'}); nothing was stamped"
        )

    def check(conn: Connection) -> Stamped:
        current = revisions.read_revisions(conn)
        state = revisions.classify(script, current)
        if not state.healthy:
            raise revisions.DatabaseStateError(state)
        if current == (wanted,):
            return Stamped(current, wanted, None, [], "already at this revision", False)
        try:
            change, phase, note = change_for(migrations_dir, wanted)
        except LookupError as exc:
            return Stamped(current, wanted, None, [], str(exc), True)
        rels = integrity.validation_files(conn.dialect.name, change, (phase,))
        runtime.use_verified(
            migrations_dir / "versions" / f"{change}.py",
            integrity.check(migrations_dir, rels, allow_modified),
        )
        file = runtime.validation_file(
            migrations_dir / "versions" / f"{change}.py", conn.dialect.name, change, phase
        )
        results = runtime.evaluate(conn, file, change, phase)
        conn.rollback()
        ok = all(r.passed for r in results)
        return Stamped(current, wanted, f"{change}.{phase}", results, note, ok)

    found = with_connection(url, check)
    if not found.stamped:
        return found
    config = _checked(_config(migrations_dir, url, None, allow_modified, settings), True)
    command.stamp(config, wanted)
    return found


class UnknownRevision(LookupError):
    """A revision the project's graph does not contain (a usage error)."""


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
