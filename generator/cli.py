"""The ``schemagen`` command line: a thin layer over the library functions.

Exit codes: 0 success; 1 stale generated files or a failed validation check; 2 usage error;
3 invalid specs; 4 database or migration error (a lock not obtained within the bounded
retries included); 5 another migration runner holds the runner lock.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn, cast

import click

from generator import files, lint, spec
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.render import generate as render_all


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
        handler.setFormatter(JsonFormatter())
        handler.addFilter(OnlyFinishedSteps())
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


# ------------------------------------------------------------------------ paths


def find_root(start: Path | None = None) -> Path:
    """The nearest directory holding ``changes/``, else the project this package came from."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "changes").is_dir() and (candidate / "generated_migrations").is_dir():
            return candidate
    return Path(__file__).resolve().parents[1]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project directory holding changes/ and generated_migrations/ (default: found from cwd).",
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
    ctx.obj = {"root": (root or find_root()).resolve()}


def _root(ctx: click.Context) -> Path:
    return Path(ctx.obj["root"])


def _load(root: Path) -> dict[str, str]:
    try:
        changes = load_changes(root / "changes", display_base=root)
    except SpecErrors as exc:
        for error in exc.errors:
            echo(str(error), err=True)
        n = len(exc.errors)
        fail(Exit.INVALID_SPEC, f"{n} error{'s' if n != 1 else ''} in specs; nothing was written")
    return render_all(changes)


@main.command()
@click.option("--check", is_flag=True, help="Write nothing; fail if any generated file is stale.")
@click.pass_context
def generate(ctx: click.Context, check: bool) -> None:
    """Render every spec under changes/ into generated_migrations/."""
    root = _root(ctx)
    out_dir = root / "generated_migrations"
    rendered = _load(root)
    if check:
        drift = files.compare(rendered, out_dir)
        integrity = files.sum_problems(out_dir, drift, rendered)
        for problem in integrity:
            echo(f"integrity: {problem}", err=True)
        if drift.clean and not integrity:
            echo(f"generated files are current ({len(rendered)} files)")
            return
        for line in drift.diff:
            click.echo(_redact(line), nl=not line.endswith("\n"))
        for label, paths in (
            ("stale or edited", drift.changed),
            ("missing", drift.missing),
            ("orphaned (its spec is gone)", drift.orphaned),
        ):
            for path in paths:
                echo(f"{label}: generated_migrations/{path}", err=True)
        fail(
            Exit.FAILED,
            "generated files differ from the specs or their sums; run `schemagen generate`",
        )
    written, deleted = files.write(rendered, out_dir)
    for path in written:
        echo(f"wrote generated_migrations/{path}")
    for path in deleted:
        echo(f"deleted generated_migrations/{path} (its spec is gone)")
    echo(f"{len(rendered)} files generated, {len(written)} written, {len(deleted)} deleted")


@main.command(name="lint")
@click.pass_context
def lint_command(ctx: click.Context) -> None:
    """Report every lint finding; exit 1 while an error is not acknowledged."""
    root = _root(ctx)
    try:
        changes = load_changes(root / "changes", display_base=root, lint=False)
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


SCHEMA_FILE = "changes/change.schema.json"
NEW_CHANGE = """\
# yaml-language-server: $schema=change.schema.json
id: {id}
description: |
  Why: what this change is for, and what breaks or stays slow without it.
  Cost: locks, table rewrites or rebuilds on each dialect, and how long on the largest table.
  Roll back: `schemagen downgrade --to {previous}`; say what the downgrade cannot restore.
operations:
  # One or more of (see docs/authoring.md):
  # - {{op: create_index, table: t, name: ix_t_c, columns: [c]}}
  # - {{op: drop_index, table: t, name: ix_t_c}}
  # - {{op: alter_column_type, table: t, column: c, from: integer, to: bigint}}
  # - op: add_column
  #   table: t
  #   column: {{name: c, type: timestamptz, nullable: true}}
  # - {{op: swap_fk_action, table: t, column: parent_id, from: cascade, to: restrict}}
  # - op: create_table
  #   name: t
  #   columns: [{{name: id, type: bigint, primary_key: true}}]
# postgresql:
#   lock_timeout: 5s
#   statement_timeout: 30min
"""


@main.command()
@click.argument("change_id")
@click.pass_context
def new(ctx: click.Context, change_id: str) -> None:
    """Scaffold the next numbered change file, changes/NNNN_<CHANGE_ID>.yaml."""
    changes_dir = _root(ctx) / "changes"
    if not re.fullmatch(spec.IDENTIFIER_PATTERN, change_id):
        fail(Exit.USAGE, f"error: invalid id {change_id!r} (expected {spec.IDENTIFIER_HELP})")
    numbers = [int(p.name[:4]) for p in changes_dir.glob("[0-9][0-9][0-9][0-9]_*.yaml")]
    number = max(numbers, default=-1) + 1
    target = changes_dir / f"{number:04d}_{change_id}.yaml"
    previous = f"{number - 1:04d}" if number else "base"
    target.write_text(NEW_CHANGE.format(id=change_id, previous=previous), encoding="utf-8")
    echo(f"wrote changes/{target.name}: fill in its operations, then run `schemagen generate`")


@main.command()
@click.option("--check", is_flag=True, help="Write nothing; fail if the committed schema is stale.")
@click.pass_context
def schema(ctx: click.Context, check: bool) -> None:
    """Write the JSON Schema of the spec format for editors (changes/change.schema.json)."""
    target = _root(ctx) / SCHEMA_FILE
    text = json.dumps(spec.json_schema(), indent=2, sort_keys=True) + "\n"
    if check:
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            echo(f"{SCHEMA_FILE} is current")
            return
        fail(Exit.FAILED, f"{SCHEMA_FILE} is stale or missing; run `schemagen schema`")
    target.write_text(text, encoding="utf-8")
    echo(f"wrote {SCHEMA_FILE}")


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
    every change when omitted. Each statement is preceded by the lock it takes.
    """
    from generator import migrate  # lazily: `generate` starts faster

    out_dir = _root(ctx) / "generated_migrations"
    names = sorted(p.stem for p in (out_dir / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    if change is not None:
        names = [n for n in names if change in (n, n[:4], n[5:])]
        if not names:
            fail(Exit.USAGE, f"error: no change {change!r} in generated_migrations/versions")
    chosen = ["postgresql", "sqlite"] if dialect == "all" else [dialect]
    directions = ["upgrade", "downgrade"] if direction == "both" else [direction]
    for name in names:
        for d in chosen:
            for way in directions:
                echo(f"-- ==== {name} {way} on {d} ====")
                with database_errors():
                    text = migrate.plan_sql(out_dir, d, way, name[:4])
                click.echo(migrate.annotate(text, d))


url_option = click.option(
    "--url",
    default=None,
    help="SQLAlchemy URL, sync or async (default: $DATABASE_URL, else sqlite:///marketdata.db).",
)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn database and migration failures into a clean message and an exit code."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from generator import db, guard, runtime

    try:
        yield
    except guard.RunnerBusy as exc:
        fail(Exit.RUNNER_BUSY, f"error: {exc}")
    except runtime.CheckFailed as exc:
        fail(Exit.FAILED, f"error: {exc}\nthe failing change's transaction was rolled back")
    except db.UrlError as exc:
        fail(Exit.USAGE, f"error: {exc}")
    except CommandError as exc:
        fail(Exit.USAGE, f"error: {exc}")
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        fail(Exit.DATABASE, f"database error: {type(exc).__name__}: {' '.join(detail[:3])}")
    except (OSError, RuntimeError, LookupError) as exc:
        fail(Exit.DATABASE, f"error: {type(exc).__name__}: {exc}")


def _with_url(url: str | None, fn: Callable[[Any], None]) -> None:
    from generator import db  # lazily: `generate` starts faster

    with database_errors():
        fn(db.resolve_url(url))


def _guard_settings(options: dict[str, Any]) -> Any:
    """The lock-wait and runner settings: these options, else SCHEMAGEN_* variables."""
    from generator import guard

    try:
        return guard.Settings.from_environment().with_options(**options)
    except ValueError as exc:
        fail(Exit.USAGE, f"error: {exc}")


def guard_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--lock-timeout, --lock-retries, --statement-timeout, --wait-for-runner."""
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
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _migrate(
    ctx: click.Context, url: str | None, to: str, direction: str, options: dict[str, Any]
) -> None:
    from generator import migrate, redact, runtime  # lazily: `generate` starts faster

    out_dir = _root(ctx) / "generated_migrations"
    run = migrate.upgrade if direction == "upgrade" else migrate.downgrade
    settings = _guard_settings(options)

    def go(u: Any) -> None:
        echo(f"{direction[:-1]}ing {redact.safe_url(u)} to {to}")
        run(out_dir, u, to, settings=settings)
        revision = migrate.with_connection(u, runtime.current_revision)
        echo(f"database is at revision {revision or 'base'}")

    _with_url(url, go)


@main.command()
@url_option
@click.option("--to", "to", default="head", show_default=True, help="Target revision.")
@guard_options
@click.pass_context
def upgrade(ctx: click.Context, /, url: str | None, to: str, **options: Any) -> None:
    """Apply migrations up to a revision, running each change's checks."""
    _migrate(ctx, url, to, "upgrade", options)


@main.command()
@url_option
@click.option("--to", "to", required=True, help="Target revision (or 'base' for an empty schema).")
@guard_options
@click.pass_context
def downgrade(ctx: click.Context, /, url: str | None, to: str, **options: Any) -> None:
    """Revert migrations down to a revision, running each change's checks."""
    _migrate(ctx, url, to, "downgrade", options)


@main.command()
@url_option
@click.pass_context
def verify(ctx: click.Context, url: str | None) -> None:
    """Run the validation SQL for the database's current revision."""
    from generator import migrate, redact, runtime  # lazily: `generate` starts faster

    out_dir = _root(ctx) / "generated_migrations"
    failed = 0

    def go(u: Any) -> None:
        nonlocal failed
        revision, source, results = migrate.verify(out_dir, u)
        echo(f"verifying {redact.safe_url(u)} at revision {revision or 'base'} ({source}.sql)")
        for result in results:
            if result.passed:
                echo(f"  passed  {result.check.name}")
            else:
                failed += 1
                echo(f"  FAILED  {result.check.name}")
                for line in runtime.format_rows(result.columns, result.rows):
                    echo(f"          {line}")
        echo(f"{len(results) - failed} passed, {failed} failed")
        _record_verify(_root(ctx), u, revision, len(results) - failed, failed)

    _with_url(url, go)
    if failed:
        sys.exit(int(Exit.FAILED))


VERIFY_LOG = ".schemagen/verify.json"


def _record_verify(root: Path, url: Any, revision: str | None, passed: int, failed: int) -> None:
    """Keep the last verify result per database (password-free URL) for `schemagen status`."""
    from generator import redact

    path = root / VERIFY_LOG
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
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

    Exit code 0 when the database is at head, 1 when changes are pending.
    """
    from generator import migrate, redact, runtime  # lazily: `generate` starts faster

    root = _root(ctx)
    out_dir = root / "generated_migrations"
    names = sorted(p.stem for p in (out_dir / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    report: dict[str, Any] = {}

    def go(u: Any) -> None:
        revision = migrate.with_connection(u, runtime.current_revision)
        pending = [n for n in names if revision is None or n[:4] > revision]
        risks = {}
        for name in pending:
            review = out_dir / "review" / f"{name}.md"
            text = review.read_text(encoding="utf-8") if review.is_file() else ""
            line = next((ln for ln in text.splitlines() if ln.startswith("**Risk:**")), "")
            risks[name] = line.removeprefix("**Risk:**").strip().rstrip(".")
        try:
            changes = load_changes(root / "changes", display_base=root)
            drift = files.compare(render_all(changes), out_dir)
            current: bool | None = drift.clean and not files.sum_problems(out_dir)
        except SpecErrors:
            current = None
        try:
            last = json.loads((root / VERIFY_LOG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            last = {}
        report.update(
            database=redact.safe_url(u),
            revision=revision,
            head=names[-1][:4] if names else None,
            at_head=not pending,
            pending=[{"change": n, "risk": risks[n]} for n in pending],
            files_current=current,
            last_verify=last.get(redact.safe_url(u)),
        )

    _with_url(url, go)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        echo(f"database: {report['database']}")
        echo(f"revision: {report['revision'] or 'base'} (head: {report['head']})")
        for item in report["pending"]:
            echo(f"pending:  {item['change']}: {item['risk']}")
        if not report["pending"]:
            echo("pending:  none")
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
    if not report["at_head"]:
        sys.exit(int(Exit.FAILED))
