"""The ``schemagen`` command line: a thin layer over the library functions.

Exit codes: 0 success; 1 stale generated files, a failed validation check, a generated file
that differs from schemagen.sum, or (status) changes pending; 2 usage error (bad option,
unknown target revision, unusable URL or driver, no env.py); 3 invalid specs; 4 database or
migration error, a lock not obtained within the bounded retries, a database at a revision the
project does not know or past its head, a missing SQLite file, or an unexpected error (one
line; the traceback with SCHEMAGEN_DEBUG=1); 5 another migration runner holds the runner lock.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from generator import files, revision_files
from generator.config import ConfigError, Project, find_project
from generator.errors import SpecErrors

if TYPE_CHECKING:  # imported where used: a warm `generate --check` loads no spec (cache.py)
    from generator.cache import Cache
    from generator.load import Change


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID_SPEC = 3
    DATABASE = 4
    RUNNER_BUSY = 5


def _redact(text: str) -> str:
    """``redact.redact``, without importing generator.redact (and SQLAlchemy with it) first:
    only that module registers passwords, so until something imported it there are none."""
    module = sys.modules.get("generator.redact")
    return text if module is None else cast(str, module.redact(text))


class _RedactingFormatter(logging.Formatter):
    """Masks the whole formatted record (a traceback too), like ``redact.RedactingFormatter``."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return _redact(self.inner.format(record))


class _RedactingFilter(logging.Filter):
    """``redact.RedactingFilter`` once generator.redact is imported (no password before)."""

    def filter(self, record: logging.LogRecord) -> bool:
        module = sys.modules.get("generator.redact")
        return True if module is None else bool(module.RedactingFilter().filter(record))


def echo(text: str = "", err: bool = False) -> None:
    click.echo(_redact(text), err=err)


def fail(code: Exit, message: str) -> NoReturn:
    echo(message, err=True)
    sys.exit(int(code))


# ---------------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    """One JSON object per finished step, for the application's structured logs."""

    FIELDS = ("change", "step", "dialect", "duration_ms", "checks", "failing_rows", "result")

    def format(self, record: logging.LogRecord) -> str:
        data = {k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)}
        if not data:
            data = {"message": record.getMessage()}
        data["level"] = record.levelname.lower()
        return json.dumps(data, sort_keys=True)


class OnlyFinishedSteps(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "event", None) != "start"


def setup_logging(fmt: str) -> None:
    logger = logging.getLogger("schemagen")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_RedactingFilter())
    if fmt == "json":
        handler.setFormatter(_RedactingFormatter(JsonFormatter()))
        handler.addFilter(OnlyFinishedSteps())
    else:
        handler.setFormatter(_RedactingFormatter(logging.Formatter("%(message)s")))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


# ------------------------------------------------------------------------ paths


def find_root(start: Path | None = None) -> Path:
    """The directory of the project holding ``start`` (generator.config); ConfigError if none."""
    return find_project(start).root


DEBUG_VARIABLE = "SCHEMAGEN_DEBUG"


class GuardedGroup(click.Group):
    """Every command ends with a message and an exit code, never a bare traceback: an
    exception no command turned into one is a bug, reported in one line with exit 4; the
    (redacted) traceback is printed only when SCHEMAGEN_DEBUG is set."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return self._invoke(ctx)
        finally:
            from generator import version_table

            version_table.use(version_table.DEFAULT)  # the next project in this process

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`schemagen status | head`): nothing more can be shown, and
            # Python would print its own error at exit unless stdout points somewhere valid.
            devnull = os.open(os.devnull, os.O_WRONLY)
            with contextlib.suppress(OSError, ValueError):  # not a file (a test runner)
                os.dup2(devnull, sys.stdout.fileno())
            sys.exit(int(Exit.DATABASE))
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
                echo(traceback.format_exc().rstrip(), err=True)
                hint = ""
            else:
                hint = f" (set {DEBUG_VARIABLE}=1 for the traceback)"
            detail = str(exc).strip().splitlines()
            message = f"{type(exc).__name__}: {detail[0][:300]}" if detail else type(exc).__name__
            fail(Exit.DATABASE, f"error: unexpected {message}{hint}")


@click.group(cls=GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="schemagen", prog_name="schemagen")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to look for the project (default: the working directory); the project is "
    "found there or in a directory above it.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How migration steps are logged.",
)
@click.pass_context
def main(ctx: click.Context, root: Path | None, log_format: str) -> None:
    """Declarative YAML schema changes -> Alembic migrations and validation SQL."""
    setup_logging(log_format)
    # Found when a command needs it, so `--help` and `init` work outside a project.
    ctx.obj = {"start": root}


def _project(ctx: click.Context) -> Project:
    obj = ctx.find_root().obj
    if "project" not in obj:
        try:
            obj["project"] = find_project(obj["start"])
        except ConfigError as exc:
            fail(Exit.USAGE, f"error: {exc}")
        from generator import version_table

        version_table.use(obj["project"].version_table)
    return cast(Project, obj["project"])


def _root(ctx: click.Context) -> Path:
    return _project(ctx).root


def _out(ctx: click.Context) -> Path:
    return _project(ctx).output_dir


def _alembic_dir(ctx: click.Context) -> Path:
    """The output folder, when it holds the Alembic environment the migrations run in."""
    from generator import revisions  # one check for every command (env.py, versions/)

    project = _project(ctx)
    try:
        revisions.check_project(project.output_dir)
    except revisions.ProjectError as exc:
        fail(Exit.USAGE, f"error: {exc}")
    return project.output_dir


def _load_changes(project: Project, lint: bool = True) -> list[Change]:
    from generator.load import load_changes

    return load_changes(
        project.changes_dir,
        display_base=project.root,
        lint=lint,
        conventions=project.conventions,
    )


def render_all(changes: list[Change], project: Project) -> dict[str, str]:
    from generator.render import generate

    return generate(
        changes,
        output=project.output,
        version_table=project.version_table,
        foreign_tables=project.foreign_tables,
    )


def _load(
    project: Project, use_cache: bool = True, store: Cache | None = None, lazy: bool = False
) -> Mapping[str, files.Text]:
    from generator import cache

    try:
        return cache.render_project(project, use_cache, store, lazy)
    except SpecErrors as exc:
        for error in exc.errors:
            echo(str(error), err=True)
        n = len(exc.errors)
        fail(Exit.INVALID_SPEC, f"{n} error{'s' if n != 1 else ''} in specs; nothing was written")


@main.command()
@click.option("--check", is_flag=True, help="Write nothing; fail if any generated file is stale.")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Render every change afresh; neither read nor write .schemagen/cache "
    "(also SCHEMAGEN_NO_CACHE=1).",
)
@click.pass_context
def generate(ctx: click.Context, check: bool, no_cache: bool) -> None:
    """Render every spec under changes/ into generated_migrations/ (or the configured paths)."""
    with files.few_collections():
        _generate(ctx, check, no_cache)


def _generate(ctx: click.Context, check: bool, no_cache: bool) -> None:
    from generator import cache, warmcheck

    project = _project(ctx)
    out_dir, label = project.output_dir, project.output
    store = cache.open_cache(project) if not no_cache and cache.enabled() else None
    index: warmcheck.StatIndex | None = None
    if check and store is not None:
        # Every file provably current by hashes and the stat index: nothing to render, read
        # or report (generator.warmcheck); else the full check below decides.
        known = warmcheck.quick_check(project, store)
        if known is not None:
            echo(f"generated files are current ({known} files)")
            return
        store.hits.clear()
        index = warmcheck.StatIndex.load(store.directory, out_dir)
        index.take_stamp()  # before compare reads the files it records
    # Without a cache, the check compares the validation files with the blocks they are made
    # of, never joined (files.Parts); with one, the cache stores texts.
    rendered = _load(project, use_cache=not no_cache, store=store, lazy=check and store is None)
    stats: dict[str, tuple[os.stat_result, os.stat_result]] | None = (
        {} if index is not None else None
    )
    drift = files.compare(rendered, out_dir, label, stats) if check else None
    # Hand-written revisions on disk and the generated ones about to be written: one chain.
    on_disk = drift.on_disk if drift is not None else None
    chain = revision_files.problems(revision_files.read(out_dir, rendered, on_disk))
    for problem in chain:
        echo(f"revision chain: {label}/{problem}", err=True)
    if chain and not check:
        fail(Exit.FAILED, "the revisions would not form one chain; nothing was written")
    if drift is not None:
        integrity = files.sum_problems(out_dir, drift, rendered)
        for problem in integrity:
            echo(f"integrity: {problem}", err=True)
        if drift.clean and not integrity and not chain:
            if index is not None and stats is not None and store is not None and store.writable:
                warmcheck.record_compared(index, stats, rendered)
            echo(f"generated files are current ({len(rendered)} files)")
            return
        for line in drift.diff:
            click.echo(_redact(line), nl=not line.endswith("\n"))
        for kind, paths in (
            ("stale or edited", drift.changed),
            ("missing", drift.missing),
            ("orphaned (its spec is gone)", drift.orphaned),
        ):
            for path in paths:
                echo(f"{kind}: {label}/{path}", err=True)
        fail(
            Exit.FAILED,
            "generated files differ from the specs or their sums; run `schemagen generate`",
        )
    done = files.write({path: str(text) for path, text in rendered.items()}, out_dir)
    for path in done.written:
        echo(f"wrote {label}/{path}")
    for path in done.deleted:
        echo(f"deleted {label}/{path} (its spec is gone)")
    for path in done.kept:
        echo(
            f"kept {label}/{path}: it has the generated header but is not in "
            f"{files.SUM_FILE}, so this generator did not write it; delete it if it is stale",
            err=True,
        )
    echo(
        f"{len(rendered)} files generated, {len(done.written)} written, {len(done.deleted)} deleted"
    )


@main.command(name="lint")
@click.pass_context
def lint_command(ctx: click.Context) -> None:
    """Report every lint finding; exit 1 while an error is not acknowledged."""
    from generator import lint

    try:
        changes = _load_changes(_project(ctx), lint=False)
    except SpecErrors as exc:
        for error in exc.errors:
            echo(str(error), err=True)
        fail(Exit.INVALID_SPEC, f"{len(exc.errors)} error(s) in specs")
    findings = lint.lint(changes)
    for finding in findings:
        echo(str(finding))
    blocking = sum(f.blocks for f in findings)
    acknowledged = sum(f.acknowledged is not None for f in findings)
    echo(
        f"{len(findings)} finding(s): {blocking} blocking, {acknowledged} acknowledged, "
        f"{len(findings) - blocking - acknowledged} warning(s)"
    )
    if blocking:
        sys.exit(int(Exit.FAILED))


SCHEMA_NAME = "change.schema.json"
SCHEMA_FILE = f"changes/{SCHEMA_NAME}"  # where a project with the default layout keeps it
NEW_CHANGE = """\
# yaml-language-server: $schema=change.schema.json
id: {id}
description: |
  Why: what this change is for, and what breaks or stays slow without it.
  Cost: locks, table rewrites or rebuilds on each dialect, and how long on the largest table.
  Roll back: `schemagen downgrade --to {previous}`; say what the downgrade cannot restore.
operations:
  # One or more of (see docs/authoring.md):
{examples}
# postgresql:
#   lock_timeout: 5s
#   statement_timeout: 30min
"""


def _examples() -> str:
    """One commented example per registered operation (its module's ``example``)."""
    from generator import ops

    return "\n".join("  # - " + op.spec.example.replace("\n", "\n  #   ") for op in ops.registry())


@main.command()
@click.argument("change_id")
@click.pass_context
def new(ctx: click.Context, change_id: str) -> None:
    """Scaffold the next numbered change file, changes/NNNN_<CHANGE_ID>.yaml."""
    from generator import spec

    project = _project(ctx)
    changes_dir = project.changes_dir
    if not re.fullmatch(spec.IDENTIFIER_PATTERN, change_id):
        fail(Exit.USAGE, f"error: invalid id {change_id!r} (expected {spec.IDENTIFIER_HELP})")
    from generator.specfiles import FILE_RE, NON_ASCII_NUMBER

    names = sorted(p.name for p in changes_dir.iterdir()) if changes_dir.is_dir() else []
    for name in names:
        odd = NON_ASCII_NUMBER.match(name)
        if odd and not FILE_RE.match(name):
            fail(
                Exit.INVALID_SPEC,
                f"{project.changes}/{name}:1:1: change number {odd['num']!r} must be written "
                "with ASCII "
                "digits 0-9; rename it before adding a change",
            )
    numbers = [int(m["num"]) for n in names if (m := FILE_RE.match(n))]
    number = max(numbers, default=-1) + 1
    target = changes_dir / f"{number:04d}_{change_id}.yaml"
    previous = f"{number - 1:04d}" if number else "base"
    if not changes_dir.is_dir():
        fail(Exit.USAGE, f"error: no directory {project.changes}/ in {project.root}")
    try:
        # "x": never overwrite a file that appeared meanwhile.
        with target.open("x", encoding="utf-8") as out:
            out.write(NEW_CHANGE.format(id=change_id, previous=previous, examples=_examples()))
    except FileExistsError:
        fail(Exit.USAGE, f"error: {project.changes}/{target.name} already exists")
    echo(
        f"wrote {project.changes}/{target.name}: fill in its operations, "
        "then run `schemagen generate`"
    )


@main.command()
@click.argument(
    "directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path)
)
@click.option("--changes", default="changes", show_default=True, help="Folder of change specs.")
@click.option(
    "--output", default="generated_migrations", show_default=True, help="Folder of output."
)
def init(directory: Path, changes: str, output: str) -> None:
    """Start a project in DIRECTORY: changes/, the output folder with the Alembic environment,
    alembic.ini, schemagen.toml and a CI job. Refuses to overwrite anything."""
    from generator import scaffold

    try:
        plan = scaffold.plan(directory, changes, output, schema_text())
        written = scaffold.write(plan)
    except scaffold.InitError as exc:
        fail(Exit.USAGE, f"error: {exc}")
    except OSError as exc:
        fail(Exit.USAGE, f"error: cannot write the project: {exc}")
    for path in written:
        echo(f"wrote {path}")
    echo(
        f"next: `schemagen new baseline` writes {changes}/0000_baseline.yaml; declare your "
        "tables in it, then `schemagen generate` and `schemagen upgrade --url URL`"
    )


@main.command()
@click.option("--check", is_flag=True, help="Write nothing; fail if the committed schema is stale.")
@click.pass_context
def schema(ctx: click.Context, check: bool) -> None:
    """Write the JSON Schema of the spec format for editors (changes/change.schema.json)."""
    project = _project(ctx)
    target = project.changes_dir / SCHEMA_NAME
    shown = f"{project.changes}/{SCHEMA_NAME}"
    text = schema_text()
    if check:
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            echo(f"{shown} is current")
            return
        fail(Exit.FAILED, f"{shown} is stale or missing; run `schemagen schema`")
    if not project.changes_dir.is_dir():
        fail(Exit.USAGE, f"error: no directory {project.changes}/ in {project.root}")
    target.write_text(text, encoding="utf-8")
    echo(f"wrote {shown}")


def schema_text() -> str:
    from generator import changespec

    return json.dumps(changespec.json_schema(), indent=2, sort_keys=True) + "\n"


@main.command()
@click.argument("change", required=False)
@click.option(
    "--dialect",
    type=click.Choice(["postgresql", "sqlite", "all"]),
    default="all",
    show_default=True,
)
@click.option(
    "--direction",
    type=click.Choice(["upgrade", "downgrade", "both"]),
    default="both",
    show_default=True,
)
@click.pass_context
def plan(ctx: click.Context, change: str | None, dialect: str, direction: str) -> None:
    """Print the SQL each change runs, per dialect, without a database.

    CHANGE is a revision (0003), an id (convert_decimal_to_float) or both (0003_convert_...);
    every change when omitted. The SQL of each plan unit is preceded by the lock it takes
    and whether it rewrites the table (the unit's Risk, as the review and lint state it).
    """
    from generator import migrate  # lazily: `generate` starts faster

    project = _project(ctx)
    out_dir = _alembic_dir(ctx)
    names = sorted(p.stem for p in (out_dir / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    if change is not None:
        names = [n for n in names if change in (n, n[:4], n[5:])]
        if not names:
            fail(Exit.USAGE, f"error: no change {change!r} in {project.output}/versions")
    chosen = list(project.dialects) if dialect == "all" else [dialect]
    directions = ["upgrade", "downgrade"] if direction == "both" else [direction]
    for name in names:
        for d in chosen:
            for way in directions:
                echo(f"-- ==== {name} {way} on {d} ====")
                with database_errors():
                    text = migrate.plan_sql(out_dir, d, way, name[:4])
                click.echo(text)


url_option = click.option(
    "--url",
    default=None,
    help="SQLAlchemy URL, sync or async (default: $DATABASE_URL, else the configured url).",
)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn database and migration failures into a clean message and an exit code."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from generator import db, guard, integrity, revisions, runtime

    try:
        yield
    except guard.RunnerBusy as exc:
        fail(Exit.RUNNER_BUSY, f"error: {exc}")
    except runtime.CheckFailed as exc:
        half = runtime.half_applied_of(exc)
        if half is not None:  # never "rolled back" about steps that had committed
            fail(Exit.FAILED, f"error: {exc}\n{half.describe()}")
        if exc.before_ddl:
            fail(Exit.FAILED, f"error: {exc}\nnothing was changed: no step of the change ran")
        fail(Exit.FAILED, f"error: {exc}\nthe failing change's transaction was rolled back")
    except runtime.HalfAppliedElsewhere as exc:
        fail(Exit.DATABASE, f"error: {exc}")
    except integrity.ModifiedFiles as exc:
        fail(Exit.FAILED, f"error: {exc}")
    except (db.UrlError, revisions.ProjectError) as exc:
        fail(Exit.USAGE, f"error: {exc}")
    except revisions.DatabaseStateError as exc:
        fail(Exit.DATABASE, f"error: {exc}")
    except db.NoDatabase as exc:
        fail(Exit.DATABASE, f"error: {exc}")
    except CommandError as exc:
        fail(Exit.USAGE, f"error: {exc}")
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        fail(
            Exit.DATABASE,
            f"database error: {type(exc).__name__}: {' '.join(detail[:3])}{_half(exc)}",
        )
    except (OSError, RuntimeError, LookupError) as exc:
        fail(Exit.DATABASE, f"error: {type(exc).__name__}: {exc}{_half(exc)}")


def _url(ctx: click.Context, url: str | None) -> str:
    """``--url``, else ``DATABASE_URL``, else the project's configured url; exit 2 if none."""
    project = _project(ctx)
    text = url or os.environ.get("DATABASE_URL") or project.url
    if not text:
        fail(
            Exit.USAGE,
            "error: no database URL: pass --url, set DATABASE_URL, or set url in the "
            f"configuration ({project.config_label})",
        )
    backend = text.split(":", 1)[0].split("+", 1)[0]
    if backend in ("sqlite", "postgresql") and backend not in project.dialects:
        fail(
            Exit.USAGE,
            f"error: this project targets {', '.join(project.dialects)} only, not {backend} "
            f"(dialects in {project.config_label})",
        )
    return text


def _half(exc: BaseException) -> str:
    """What a failed run of a change did and how to go on, or nothing."""
    from generator import guard, runtime

    half = runtime.half_applied_of(exc)
    if half is not None:
        return "\n" + half.describe()
    rolled_back = runtime.rolled_back_of(exc)
    if rolled_back is None or isinstance(exc, guard.LockTimeout | guard.DatabaseBusy):
        return ""  # those name the change and say that nothing of it was applied already
    return "\n" + rolled_back


def _with_url(
    url: str | None, fn: Callable[[Any], None], out_dir: Path, creates: bool = False
) -> None:
    """Resolve the URL and call ``fn`` with it, failures turned into messages. Only a
    command that ``creates`` the database may connect to a SQLite file that is missing
    (connecting would create it, empty)."""
    from generator import db, revisions  # lazily: `generate` starts faster

    with database_errors():
        u = db.resolve_url(url)
        revisions.check_project(out_dir)
        if not creates:
            db.require_existing(u)
        fn(u)


allow_modified_option = click.option(
    "--allow-modified",
    "allow_modified",
    metavar="REASON",
    default=None,
    help="Run generated files that differ from schemagen.sum anyway; REASON is logged "
    "(also $SCHEMAGEN_ALLOW_MODIFIED).",
)


def _guard_settings(options: dict[str, Any]) -> Any:
    """The lock-wait and runner settings: these options, else SCHEMAGEN_* variables."""
    from generator import guard

    try:
        return guard.Settings.from_environment().with_options(**options)
    except ValueError as exc:
        fail(Exit.USAGE, f"error: {exc}")


def guard_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--lock-timeout, --lock-retries, --statement-timeout, --wait-for-runner,
    --backfill-workers, --max-replica-lag, --replica-wait, --online-method."""
    options = [
        click.option(
            "--lock-timeout",
            default=None,
            metavar="DURATION",
            help="Longest wait for a lock per attempt, e.g. 50ms, 1s (default 50ms, or "
            "$SCHEMAGEN_LOCK_TIMEOUT); a change's postgresql.lock_timeout caps it.",
        ),
        click.option(
            "--lock-retries",
            default=None,
            metavar="N",
            help="Attempts after the first when a lock is not available, with exponential "
            "backoff and jitter (default 10, or $SCHEMAGEN_LOCK_RETRIES).",
        ),
        click.option(
            "--statement-timeout",
            default=None,
            metavar="DURATION",
            help="Longest statement of a check or step (default 30min, or "
            "$SCHEMAGEN_STATEMENT_TIMEOUT); a change's postgresql.statement_timeout replaces it.",
        ),
        click.option(
            "--wait-for-runner",
            default=None,
            metavar="SECONDS",
            help="How long to wait while another migration runs, then exit 5 "
            "(default 0, or $SCHEMAGEN_WAIT_FOR_RUNNER).",
        ),
        click.option(
            "--backfill-workers",
            default=None,
            metavar="N",
            help="PostgreSQL online type changes: backfill a table keyed by one integer "
            "column in N slices at once, each on its own connection (default 2, or "
            "$SCHEMAGEN_BACKFILL_WORKERS; 1: one loop).",
        ),
        click.option(
            "--max-replica-lag",
            default=None,
            metavar="DURATION",
            help="PostgreSQL backfills: pause the batches while a replica replays more than "
            "this far behind, until it has replayed what they wrote (default 2s, or "
            "$SCHEMAGEN_MAX_REPLICA_LAG; 0: do not look at replicas).",
        ),
        click.option(
            "--replica-wait",
            default=None,
            metavar="DURATION",
            help="Longest such pause; then the run stops, the batches done kept (default "
            "10min, or $SCHEMAGEN_REPLICA_WAIT).",
        ),
        click.option(
            "--online-method",
            default=None,
            type=click.Choice(["auto", "table", "columns"], case_sensitive=False),
            help="PostgreSQL online type changes: copy the rows into a new table and swap it "
            "in (table), or add shadow columns (columns); auto (the default, or "
            "$SCHEMAGEN_ONLINE_METHOD) takes the table unless something the swap cannot "
            "carry depends on it. A change already begun continues as it began.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _preflight(project: Project, dialect: str, reason: str | None) -> None:
    """Refuse, before the first change runs, a generated file that differs from the sum;
    show what differs from what the specs render where they still load."""
    from generator import integrity

    out_dir = project.output_dir
    try:
        integrity.preflight(out_dir, dialect, reason)
    except integrity.ModifiedFiles as exc:
        try:
            rendered = render_all(_load_changes(project), project)
        except SpecErrors:
            rendered = {}
        for problem in exc.problems:
            expected = rendered.get(problem.path)
            if expected is None or not (out_dir / problem.path).is_file():
                continue
            on_disk = (out_dir / problem.path).read_text(encoding="utf-8", errors="replace")
            label = f"{project.output}/{problem.path}"
            diff = difflib.unified_diff(
                expected.splitlines(True),
                on_disk.splitlines(True),
                f"{label} (rendered from the specs)",
                f"{label} (on disk)",
            )
            for line in list(diff)[:60]:
                click.echo(_redact(line), nl=not line.endswith("\n"), err=True)
        raise


def _reason(reason: str | None) -> str | None:
    from generator import integrity

    if reason is not None and not reason.strip():
        fail(Exit.USAGE, "error: --allow-modified needs a reason (it is logged)")
    return reason or integrity.override()


def _migrate(
    ctx: click.Context,
    url: str | None,
    to: str,
    direction: str,
    allow_modified: str | None,
    options: dict[str, Any],
) -> None:
    from generator import migrate, redact, revisions, runtime  # lazily: `generate` starts faster

    out_dir = _alembic_dir(ctx)
    run = migrate.upgrade if direction == "upgrade" else migrate.downgrade
    reason = _reason(allow_modified)
    settings = _guard_settings(options)

    def go(u: Any) -> None:
        # Where the database stands is checked first: Alembic would call a revision it
        # cannot find a usage error, though it is the database that is off the graph.
        state = migrate.with_connection(u, lambda c: revisions.database_state(out_dir, c))
        if not state.healthy:
            raise revisions.DatabaseStateError(state)
        echo(f"{direction[:-1]}ing {redact.safe_url(u)} to {to}")
        _preflight(_project(ctx), u.get_backend_name(), reason)
        run(out_dir, u, to, allow_modified=reason, preflight_done=True, settings=settings)
        revision = migrate.with_connection(u, runtime.current_revision)
        echo(f"database is at revision {revision or 'base'}")

    _with_url(_url(ctx, url), go, out_dir, creates=direction == "upgrade")


@main.command()
@url_option
@click.option("--to", "to", default="head", show_default=True, help="Target revision.")
@allow_modified_option
@guard_options
@click.pass_context
def upgrade(
    ctx: click.Context, /, url: str | None, to: str, allow_modified: str | None, **options: Any
) -> None:
    """Apply migrations up to a revision, running each change's checks."""
    _migrate(ctx, url, to, "upgrade", allow_modified, options)


@main.command()
@url_option
@click.option("--to", "to", required=True, help="Target revision (or 'base' for an empty schema).")
@allow_modified_option
@guard_options
@click.pass_context
def downgrade(
    ctx: click.Context, /, url: str | None, to: str, allow_modified: str | None, **options: Any
) -> None:
    """Revert migrations down to a revision, running each change's checks."""
    _migrate(ctx, url, to, "downgrade", allow_modified, options)


@main.command(name="check")
@click.option(
    "--url",
    default=None,
    help="An empty scratch database to build the specs' head in (default: a temporary SQLite "
    "file).",
)
@click.pass_context
def check_command(ctx: click.Context, url: str | None) -> None:
    """Compare the application's models (metadata in the configuration) with the schema the
    specs build at head; exit 1 while they differ (for CI)."""
    from generator import models

    project = _project(ctx)
    _alembic_dir(ctx)
    try:
        with database_errors():
            found = models.differences(project, url)
    except ConfigError as exc:
        fail(Exit.USAGE, f"error: {exc}")
    if not found:
        echo(f"the models ({project.metadata}) and the specs agree")
        return
    echo(f"the models ({project.metadata}) differ from the schema the specs build at head:")
    for line in found:
        echo(f"  {line.strip()}")
    fail(Exit.FAILED, "models and specs differ: write a change spec (`schemagen new`)")


@main.command(name="autogenerate")
@click.argument("change_id")
@click.option(
    "--url",
    default=None,
    help="An empty scratch database to build the specs' head in (default: a temporary SQLite "
    "file).",
)
@click.pass_context
def autogenerate_command(ctx: click.Context, change_id: str, url: str | None) -> None:
    """Write the next change spec, changes/NNNN_<CHANGE_ID>.yaml, from what differs between the
    models (metadata in the configuration) and the specs' head. Review it: renames and what a
    spec cannot say are questions in comments at its top."""
    from generator import introspect, models, spec
    from generator.specfiles import FILE_RE

    project = _project(ctx)
    _alembic_dir(ctx)
    if not re.fullmatch(spec.IDENTIFIER_PATTERN, change_id):
        fail(Exit.USAGE, f"error: invalid id {change_id!r} (expected {spec.IDENTIFIER_HELP})")
    try:
        with database_errors():
            operations, notes = models.autogenerate(project, url)
    except ConfigError as exc:
        fail(Exit.USAGE, f"error: {exc}")
    for note in notes:
        echo(f"note: {note}", err=True)
    if not operations:
        if notes:
            fail(Exit.FAILED, "nothing a spec can say: no spec was written")
        echo(f"the models ({project.metadata}) and the specs agree; no spec was written")
        return
    names = sorted(p.name for p in project.changes_dir.iterdir())
    numbers = [int(m["num"]) for n in names if (m := FILE_RE.match(n))]
    number = max(numbers, default=-1) + 1
    target = project.changes_dir / f"{number:04d}_{change_id}.yaml"
    data = {
        "id": change_id,
        "description": (
            "Why: (written by schemagen autogenerate from the models; say why).\n"
            "Cost: locks and rewrites per dialect (see `schemagen plan`).\n"
            f"Roll back: `schemagen downgrade --to {max(numbers, default=0):04d}`.\n"
        ),
        "operations": operations,
    }
    text = introspect.to_yaml(data)
    if notes:
        questions = "".join(f"# autogenerate: {note}\n" for note in notes)
        text = text.replace("\nid: ", f"\n{questions}id: ", 1)
    try:
        with target.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        fail(Exit.USAGE, f"error: {project.changes}/{target.name} already exists")
    echo(
        f"wrote {project.changes}/{target.name}: {len(operations)} operation(s); review it, "
        "then `schemagen generate`"
    )


@main.command(name="inspect")
@url_option
@click.option("--id", "change_id", default="baseline", show_default=True, help="The spec's id.")
@click.option(
    "--after", default=None, metavar="REVISION", help="The Alembic revision the baseline continues."
)
@click.option(
    "-o",
    "--output",
    "target",
    default=None,
    help="Where to write the spec (default: changes/0000_<ID>.yaml; - for standard output).",
)
@click.option(
    "--set-naming",
    is_flag=True,
    help="Write the naming convention the database follows into schemagen.toml.",
)
@click.pass_context
def inspect_command(
    ctx: click.Context,
    url: str | None,
    change_id: str,
    after: str | None,
    target: str | None,
    set_naming: bool,
) -> None:
    """Write the baseline spec of a live database (PostgreSQL or SQLite): its tables, columns,
    keys, foreign keys and indexes, and the naming convention its constraint names follow.
    Exit 4, writing nothing, when the spec cannot say something the database holds."""
    from generator import introspect, migrate, revisions, spec

    project = _project(ctx)
    if not re.fullmatch(spec.IDENTIFIER_PATTERN, change_id):
        fail(Exit.USAGE, f"error: invalid id {change_id!r} (expected {spec.IDENTIFIER_HELP})")
    path: Path | None = None
    if target != "-":
        path = Path(target) if target else project.changes_dir / f"0000_{change_id}.yaml"
        existing = sorted(project.changes_dir.glob("[0-9][0-9][0-9][0-9]_*.y*ml"))
        if path.exists() or (target is None and existing):
            fail(
                Exit.USAGE,
                f"error: refusing to write {path}: "
                + ("it exists" if path.exists() else f"{existing[0].name} is a baseline already"),
            )
    found: dict[str, Any] = {}

    def read(conn: Any) -> None:
        found["inspected"] = introspect.inspect_database(
            conn, project.conventions, project.foreign_tables
        )
        found["revisions"] = revisions.read_revisions(conn)

    from generator import db

    try:
        with database_errors():
            u = db.resolve_url(_url(ctx, url))
            db.require_existing(u)
            migrate.with_connection(u, read)
    except introspect.InspectError as exc:
        for problem in exc.problems:
            echo(f"  {problem}", err=True)
        n = len(exc.problems)
        fail(
            Exit.DATABASE,
            f"{n} thing{'s' if n != 1 else ''} the spec cannot declare; nothing was written",
        )
    inspected = found["inspected"]
    recorded = found["revisions"]
    # A database at a hand-written revision of this project: the baseline continues it.
    in_graph = revision_files.read(project.output_dir)
    known = {r.revision for r in in_graph}
    hand_written = {r.revision for r in in_graph if not r.generated}
    continues = after is None and len(recorded) == 1 and recorded[0] in hand_written
    if continues:
        after = recorded[0]
    text = introspect.to_yaml(inspected.spec(change_id, after))
    if path is None:
        click.echo(text, nl=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        echo(f"wrote {path}: {len(inspected.tables)} table(s)")
    out = sys.stderr if path is None else None
    differ = {k: v for k, v in inspected.naming.items() if getattr(project.conventions, k) != v}
    if differ and set_naming:
        config = project.config_file
        if config is None or config.name != "schemagen.toml":
            fail(Exit.USAGE, "error: --set-naming writes schemagen.toml; this project has none")
        config.write_text(_with_naming(config.read_text(encoding="utf-8"), differ), "utf-8")
        for key, value in differ.items():
            echo(f'set naming.{key} = "{value}" in {config.name}')
        differ = {}
    if differ:
        echo(
            f"naming: the database names its constraints by another convention than "
            f"{project.config_label}'s; set these before `schemagen generate`:",
            err=out is not None,
        )
        pyproject = project.config_file is not None and project.config_file.name == "pyproject.toml"
        echo("[tool.schemagen.naming]" if pyproject else "[naming]", err=out is not None)
        for key, value in differ.items():
            echo(f'{key} = "{value}"', err=out is not None)
    if continues:
        echo(
            f"the database is at revision {after} of {project.output}/versions: the baseline "
            f"continues it (after: {after}); it runs no DDL, its checks say the tables are there",
            err=out is not None,
        )
    elif recorded and not after and not set(recorded) & known:
        echo(
            f"note: the database records revision {', '.join(recorded)}: to continue that "
            f"history, put its revisions under {project.output}/versions and add "
            f"`after: {recorded[0]}` to the spec (or `--after`); to stand beside it, set "
            "version_table",
            err=out is not None,
        )


def _with_naming(text: str, naming: dict[str, str]) -> str:
    """``text`` of a schemagen.toml with these keys of its [naming] table set."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "[naming]"), None)
    if start is None:
        lines += ["", "[naming]"]
        start = len(lines) - 1
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
        len(lines),
    )
    todo = dict(naming)
    for i in range(start + 1, end):
        key = lines[i].split("=", 1)[0].strip()
        if key in todo:
            lines[i] = f'{key} = "{todo.pop(key)}"'
    lines[end:end] = [f'{key} = "{value}"' for key, value in todo.items()]
    return "\n".join(lines) + "\n"


@main.command()
@click.argument("revision", required=False)
@url_option
@allow_modified_option
@click.pass_context
def stamp(
    ctx: click.Context, revision: str | None, url: str | None, allow_modified: str | None
) -> None:
    """Record that the database is at REVISION (default: the baseline) without running any
    migration: for a database built before schemagen managed it. The checks describing the
    schema at REVISION run first; if one fails, nothing is written (exit 1)."""
    from generator import migrate, redact, revisions, runtime  # lazily: `generate` starts faster

    out_dir = _alembic_dir(ctx)
    reason = _reason(allow_modified)
    failed = False

    def go(u: Any) -> None:
        nonlocal failed
        try:
            done = migrate.stamp(out_dir, u, revision, reason, _guard_settings({}))
        except migrate.UnknownRevision as exc:
            fail(Exit.USAGE, f"error: {exc}")
        was = ", ".join(done.before) or "base (no revision recorded)"
        where = redact.safe_url(u)
        if done.before == (done.target,):
            echo(f"{where} is at revision {done.target} already; nothing was written")
            return
        echo(f"stamping {where} at revision {done.target} (it records {was})")
        if done.checks is None:
            echo(f"no checks: {done.note}")
        else:
            echo(f"checks of the schema at {done.target} ({done.checks}.sql):")
            if done.note:
                echo(f"note: {done.note}")
            for result in done.results:
                echo(f"  {'passed' if result.passed else 'FAILED'}  {result.check.name}")
                if not result.passed:
                    for line in runtime.format_rows(result.columns, result.rows):
                        echo(f"          {line}")
            bad = sum(not r.passed for r in done.results)
            echo(f"{len(done.results) - bad} passed, {bad} failed")
        if not done.stamped:
            failed = True
            echo(
                f"not stamped: the schema is not what revision {done.target} describes; "
                "alembic_version is unchanged and no DDL ran",
                err=True,
            )
            return
        after = migrate.with_connection(u, revisions.read_revisions)
        echo(
            f"database is at revision {', '.join(after) or 'base'}: only alembic_version "
            "was written, no migration ran"
        )

    _with_url(_url(ctx, url), go, out_dir)
    if failed:
        sys.exit(int(Exit.FAILED))


@main.command()
@url_option
@allow_modified_option
@click.pass_context
def verify(ctx: click.Context, url: str | None, allow_modified: str | None) -> None:
    """Run the validation SQL for the database's current revision."""
    from generator import migrate, redact, runtime  # lazily: `generate` starts faster

    out_dir = _out(ctx)
    failed = 0
    reason = _reason(allow_modified)

    def go(u: Any) -> None:
        nonlocal failed
        revision, source, results, note = migrate.verify(out_dir, u, reason)
        echo(f"verifying {redact.safe_url(u)} at revision {revision or 'base'} ({source}.sql)")
        if note:
            echo(f"note: {note}")
        for result in results:
            if result.passed:
                echo(f"  passed  {result.check.name}")
            else:
                failed += 1
                echo(f"  FAILED  {result.check.name}")
                for line in runtime.format_rows(result.columns, result.rows):
                    echo(f"          {line}")
        echo(f"{len(results) - failed} passed, {failed} failed")
        half = migrate.with_connection(u, runtime.half_applied)
        if half is not None:
            echo(f"half-applied: {half.get('note', half['change'])}")
        _record_verify(_root(ctx), u, revision, len(results) - failed, failed)

    _with_url(_url(ctx, url), go, out_dir)
    if failed:
        sys.exit(int(Exit.FAILED))


VERIFY_LOG = ".schemagen/verify.json"


def _verified_at(item: tuple[str, Any]) -> str:
    return str(item[1].get("at", "")) if isinstance(item[1], dict) else ""


def _record_verify(root: Path, url: Any, revision: str | None, passed: int, failed: int) -> None:
    """Keep the last verify result per database (password-free URL) for `schemagen status`."""
    from generator import redact

    path = root / VERIFY_LOG
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    # Earlier versions kept `?password=` values and raw-@ passwords in these keys: mask them
    # on the next write (two spellings of one database merge, the newer record wins).
    data = {redact.safe_url_text(k): v for k, v in sorted(data.items(), key=_verified_at)}
    data[redact.safe_url(url)] = {
        "revision": revision,
        "passed": passed,
        "failed": failed,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError:
        pass  # a read-only checkout still verifies; only status loses the record


@main.command()
@url_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for health endpoints.")
@click.pass_context
def status(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """The database's revision, pending changes and their risk, file currency, last verify.

    Exit code 0 at head, 1 when changes are pending, 4 when the database is at a revision
    this project does not know or past its head (state "unknown_revision" or "ahead").
    """
    from generator import migrate, redact, review, revisions  # lazily: `generate` starts faster

    project = _project(ctx)
    root, out_dir = project.root, project.output_dir
    report: dict[str, Any] = {}

    def go(u: Any) -> None:
        script = revisions.script_directory(out_dir)
        state = revisions.classify(script, migrate.with_connection(u, revisions.read_revisions))
        scripts = revisions.all_revisions(script)
        pending = [Path(scripts[r].path).stem for r in state.pending]
        # The risk of each pending change, from the risk model (the same Risk objects the
        # review and lint read), never from the rendered files.
        risks: dict[str, str] = {}
        units: dict[str, dict[str, list[dict[str, object]]]] = {}
        try:
            changes = _load_changes(project)
            risks = {c.name: review.change_risk(c) for c in changes}
            units = {c.name: review.change_risks(c) for c in changes}
            drift = files.compare(
                render_all(changes, project),
                out_dir,
            )
            current: bool | None = drift.clean and not files.sum_problems(out_dir)
        except SpecErrors:
            current = None
        for name in pending:
            risks.setdefault(name, "unknown (no spec for it: a hand-written revision?)")
        online: list[dict[str, Any]] = []
        if u.get_backend_name() == "postgresql":
            from generator import online as online_changes

            online = migrate.with_connection(u, online_changes.progress)
        try:
            last = json.loads((root / VERIFY_LOG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            last = {}
        report.update(
            database=redact.safe_url(u),
            state=state.state,
            message=state.message,
            revision=state.revision,
            head=state.head,
            at_head=state.state == revisions.AT_HEAD,
            pending=[
                {"change": n, "risk": risks[n], **({"units": units[n]} if n in units else {})}
                for n in pending
            ],
            files_current=current,
            last_verify=last.get(redact.safe_url(u)),
            online=online,
        )

    _with_url(_url(ctx, url), go, out_dir)
    healthy = report["state"] not in (revisions.AHEAD, revisions.UNKNOWN)
    if as_json:
        echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        echo(f"database: {report['database']}")
        echo(f"revision: {report['revision'] or 'base'} (head: {report['head']})")
        echo(f"state:    {report['state']}: {report['message']}")
        for item in report["pending"]:
            echo(f"pending:  {item['change']}: {item['risk']}")
            for unit in item.get("units", {}).get("postgresql", []):
                if unit["unit"] == "online_type_change":
                    from generator.ops.alter_column_type import online_locks

                    echo(f"          online type change of {', '.join(unit['tables'])}:")
                    for phase, lock in online_locks():
                        echo(f"            {phase}: {lock}")
        for run in report["online"]:
            echo(
                f"online:   {run['change']} ({run['direction']}) {run['table']} by "
                f"{run['method']}: {run['phase']}"
                + (
                    f", {run['batches']} batches, {run['rows']} rows, last key {run['last_key']}"
                    if "batches" in run
                    else ""
                )
                + (f", {run['slices']}" if run.get("slices") else "")
            )
        if healthy and not report["pending"]:
            echo("pending:  none")
        elif not healthy:
            echo("pending:  unknown (the database is not on this project's revision graph)")
        current = report["files_current"]
        echo(
            "generated files: "
            + {True: "current", False: "STALE (run schemagen generate)", None: "specs invalid"}[
                current
            ]
        )
        last = report["last_verify"]
        echo(
            f"last verify: {last['passed']} passed, {last['failed']} failed at revision "
            f"{last['revision'] or 'base'} ({last['at']})"
            if last
            else "last verify: none recorded"
        )
    if not healthy:
        sys.exit(int(Exit.DATABASE))
    if report["pending"]:
        sys.exit(int(Exit.FAILED))
