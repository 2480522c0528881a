"""What a rendered migration calls at run time: dispatch on the dialect, run the change's
pre- and post-checks around its DDL, and log every step with its duration.

Rendered migrations import this module and generator.ddl (the DDL elements they run), nothing
else from the project, never the models.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

from generator import ddl, guard, integrity, version_table

log = logging.getLogger("schemagen")
# The checks of a validation file are data (generator.checks.Check), rendered as JSON beside
# its .sql text (validation/<dialect>/<change>.<phase>.json); each has one of these kinds:
#   check       a query returning the rows that break it (run by migrations and `verify`)
#   snapshot    CREATE TEMP TABLE <name> ... run before a change's DDL
#   data-check  like check, but reads a snapshot: only a migration run can evaluate it
#   fit-check   the rows a narrowing conversion could not keep unchanged; run by migrations
#               before the DDL (not by `verify`: a widened column may hold such values)
KINDS = ("check", "snapshot", "data-check", "fit-check")
MAX_ROWS_SHOWN = 20
# The validation texts of the running change, as checked against schemagen.sum at its start:
# what runs is what was checked, not a second read of the file.
_verified: dict[Path, str] = {}


@dataclass(frozen=True)
class Check:
    """A check as the runtime runs it: one dialect's object of a validation .json file."""

    name: str
    sql: str
    kind: str = "check"
    table: str = ""
    proves: str = ""


@dataclass
class CheckResult:
    check: Check
    columns: list[str]
    rows: list[tuple[Any, ...]]

    @property
    def passed(self) -> bool:
        return not self.rows


class UnsupportedDialect(RuntimeError):
    pass


class CheckFailed(RuntimeError):
    """A validation check returned rows: the state is not what the change expects.

    ``before_ddl``: the checks of the state before the change failed, so no step of it ran.
    ``before_commit``: its data checks failed on what its steps did before a commit in their
    middle (see ``_Attempt.check_so_far``); that transaction was rolled back."""

    def __init__(
        self,
        change: str,
        phase: str,
        dialect: str,
        failures: Sequence[CheckResult],
        before_ddl: bool = False,
        before_commit: bool = False,
    ):
        self.change, self.phase, self.dialect, self.failures = change, phase, dialect, failures
        self.before_ddl = before_ddl
        self.before_commit = before_commit
        if before_commit:
            lines = [
                f"{phase}-checks of {change} failed on {dialect} on what its steps did before "
                "their first commit (refused before that commit):"
            ]
        else:
            lines = [f"{phase}-checks of {change} failed on {dialect}:"]
        for result in failures:
            lines.append(f"  check {result.check.name}: {len(result.rows)} failing row(s)")
            lines.extend("    " + line for line in format_rows(result.columns, result.rows))
        super().__init__("\n".join(lines))


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    shown = [tuple("NULL" if v is None else str(v) for v in row) for row in rows[:MAX_ROWS_SHOWN]]
    widths = [max([len(c), *(len(r[i]) for r in shown)]) for i, c in enumerate(columns)]
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in shown]
    if len(rows) > MAX_ROWS_SHOWN:
        out.append(f"... and {len(rows) - MAX_ROWS_SHOWN} more")
    return out


_CHECK_FIELDS = tuple(f.name for f in dataclasses.fields(Check))


class BadChecksFile(ValueError):
    """A validation .json file that is not a list of checks (hand-made, or not JSON)."""


def load_checks(file: Path) -> list[Check]:
    """The checks of a validation .json file (verified against the sum when the caller set
    them with :func:`use_verified`): read as data, no SQL text is split."""
    try:
        records = json.loads(read_validation(file))["checks"]
        # by the fields' names (runtime.Check's are those of checks.Check.record)
        found = [Check(**{f: r[f] for f in _CHECK_FIELDS if f in r}) for r in records]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadChecksFile(f"{file}: not a validation checks file ({exc})") from exc
    for c in found:
        if c.kind not in KINDS:
            raise BadChecksFile(f"{file}: check {c.name!r} has an unknown kind {c.kind!r}")
    return found


def _driver_sql(connection: Connection, sql: str) -> str:
    # Drivers with %-style placeholders parse '%' even without parameters; double it there.
    percent = connection.dialect.paramstyle in ("format", "pyformat")
    return sql.replace("%", "%%") if percent else sql


def run_checks(connection: Connection, checks: Sequence[Check]) -> list[CheckResult]:
    """Every check's rows. With psycopg (PostgreSQL) all of them in one round trip: the
    post-checks run inside the change's transaction, while its DDL's lock is held, and a
    statement each cost a round trip each (20 checks: 40-120 ms on a loaded 2-core machine,
    writers waiting all along; benchmarks/experiments/ops_subset.py)."""
    if connection.dialect.driver == "psycopg" and len(checks) > 1:
        return _run_checks_at_once(connection, checks)
    return run_checks_one_by_one(connection, checks)


def run_checks_one_by_one(connection: Connection, checks: Sequence[Check]) -> list[CheckResult]:
    results = []
    for check in checks:
        result = connection.exec_driver_sql(_driver_sql(connection, check.sql))
        results.append(CheckResult(check, list(result.keys()), [tuple(r) for r in result]))
    return results


def _run_checks_at_once(connection: Connection, checks: Sequence[Check]) -> list[CheckResult]:
    """The checks as one multi-statement text through SQLAlchemy (so the runner's cursor
    events, its lock guard among them, see it), one result set per statement read with the
    driver cursor's ``nextset``. It opens with a SELECT so that SQLAlchemy keeps the cursor
    open. A check's SQL is one statement; a check that fails to run fails the batch, as it
    would alone."""
    text = ";\n".join(
        ["SELECT 1 AS schemagen_checks", *(c.sql.strip().rstrip(";") for c in checks)]
    )
    result = connection.exec_driver_sql(_driver_sql(connection, text))
    try:
        cursor: Any = result.context.cursor
        results = []
        for check in checks:
            if not cursor.nextset():
                raise RuntimeError(f"no result for check {check.name!r}")
            description = cursor.description
            columns = [d.name for d in description] if description else []
            rows = [tuple(r) for r in cursor.fetchall()] if description else []
            results.append(CheckResult(check, columns, rows))
        return results
    finally:
        result.close()


def use_verified(script_file: str | Path, texts: Mapping[str, str]) -> None:
    """Run these texts (``{path under generated_migrations/: text}``) of the validation files,
    as checked against schemagen.sum; every caller sets them before it evaluates a file."""
    out_dir = Path(script_file).resolve().parent.parent
    _verified.clear()
    _verified.update({(out_dir / path).resolve(): text for path, text in texts.items()})


def read_validation(file: Path) -> str:
    text = _verified.get(file.resolve())
    return text if text is not None else file.read_text(encoding="utf-8")


def allow_modified(op: Any) -> str | None:
    """The operator's logged reason to run files that differ from schemagen.sum, if any."""
    config = op.get_context().config
    return integrity.override(config.attributes if config is not None else None)


def validation_file(script_file: str | Path, dialect: str, change: str, phase: str) -> Path:
    """The checks the runtime runs: the .json beside the change's .sql validation file."""
    out_dir = Path(script_file).resolve().parent.parent
    return out_dir / "validation" / dialect / f"{change}.{phase}.json"


@dataclass
class StepRecord:
    change: str
    step: str
    dialect: str
    result: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)
    depth: int = 0  # the steps open around this one (0: a phase of the change)


# The innermost step open in this context (a step inside a step is logged as such).
_open_step: contextvars.ContextVar[StepRecord | None] = contextvars.ContextVar(
    "schemagen_open_step", default=None
)


@contextmanager
def step(change: str, name: str, dialect: str) -> Iterator[StepRecord]:
    """Log a step as it starts and as it ends, with its duration and result."""
    outer = _open_step.get()
    record = StepRecord(change, name, dialect, depth=0 if outer is None else outer.depth + 1)
    enclosing = guard.CURRENT_STEP[0]
    guard.note_step(name)
    token = _open_step.set(record)
    log.info(
        "%s: %s ...",
        change,
        name,
        extra={"event": "start", "change": change, "step": name, "dialect": dialect},
    )
    started = time.perf_counter()
    try:
        yield record
        # A lock timeout after a step that ended is the enclosing step's (one that raises
        # leaves its own name for the retry's message).
        guard.note_step(enclosing)
    except BaseException:
        record.result = "failed"
        raise
    finally:
        _open_step.reset(token)
        result = record.result
        ms = round((time.perf_counter() - started) * 1000, 1)
        detail = "".join(f", {k.replace('_', ' ')}: {v}" for k, v in record.extra.items())
        log.log(
            logging.INFO if result == "ok" else logging.ERROR,
            "%s: %s %s (%.1f ms%s)",
            change,
            name,
            result,
            ms,
            detail,
            extra={
                "event": "end",
                "change": change,
                "step": name,
                "dialect": dialect,
                "duration_ms": ms,
                "result": result,
                "depth": record.depth,  # 0: a phase of the change; more: inside one (online)
                **record.extra,
            },
        )


def evaluate(
    connection: Connection, file: Path, change: str, phase: str, kinds: Sequence[str] = ("check",)
) -> list[CheckResult]:
    """Run the checks of one validation file as a logged step; returns every result."""
    dialect = connection.dialect.name
    sections = load_checks(file)
    with step(change, f"{phase}-checks", dialect) as rec:
        results = run_checks(connection, [c for c in sections if c.kind in kinds])
        failing = [r for r in results if not r.passed]
        rec.extra.update(checks=len(results), failing_rows=sum(len(r.rows) for r in failing))
        if failing:
            rec.result = "failed"
    return results


def verify(
    connection: Connection, file: Path, change: str, phase: str, kinds: Sequence[str] = ("check",)
) -> None:
    """Like :func:`evaluate`, but a failing check raises :class:`CheckFailed`."""
    results = evaluate(connection, file, change, phase, kinds)
    failing = [r for r in results if not r.passed]
    if failing:
        raise CheckFailed(change, phase, connection.dialect.name, failing)


def foreign_key_check(connection: Connection, change: str) -> None:
    """SQLite runs migrations with enforcement off; prove no row was orphaned meanwhile."""
    with step(change, "foreign_key_check", "sqlite") as rec:
        result = connection.exec_driver_sql("PRAGMA foreign_key_check")
        rows = [tuple(r) for r in result]
        rec.extra.update(checks=1, failing_rows=len(rows))
        if rows:
            rec.result = "failed"
            failure = CheckResult(
                Check("foreign_key_check", "PRAGMA foreign_key_check"), list(result.keys()), rows
            )
            raise CheckFailed(change, "post", "sqlite", [failure])


def _offline(op: Any) -> bool:
    """True while `schemagen plan` (Alembic's --sql mode) prints SQL instead of running it."""
    return bool(op.get_context().as_sql)


def _note(op: Any, text: str) -> None:
    op.get_context().impl.static_output(f"-- {text}")


def unit(op: Any, kind: str, lock: str, rewrites: bool) -> None:
    """Where a plan unit starts, with its Risk (``Unit.risk``, rendered by ``generate``): the
    plan (``schemagen plan``) prints it above the unit's SQL; a real run does nothing here."""
    if _offline(op):
        _note(op, f"lock: {lock}{'; REWRITES THE TABLE' if rewrites else ''} ({kind})")


def drop_invalid_index(op: Any, name: str) -> None:
    """Drop an INVALID index left by an interrupted ``CREATE INDEX CONCURRENTLY``.

    ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` would otherwise keep the broken one.
    """
    if _offline(op):
        quoted = op.get_context().dialect.identifier_preparer.quote(name)
        _note(op, f"if {quoted} is INVALID: DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
        return
    connection: Connection = op.get_bind()
    invalid = connection.execute(
        sa.text(
            "SELECT 1 FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid "
            "JOIN pg_namespace AS n ON n.oid = i.relnamespace "
            "WHERE n.nspname = current_schema() AND i.relname = :name AND NOT x.indisvalid"
        ),
        {"name": name},
    ).first()
    if invalid:
        log.warning("index %s is INVALID (an interrupted concurrent build): rebuilding it", name)
        op.drop_index(name, postgresql_concurrently=True, if_exists=True)


def fk_action(op: Any, table: str, name: str) -> str | None:
    """The ON DELETE action of foreign key ``name`` on ``table`` (PostgreSQL), or None.

    Planned offline, the answer is "not yet swapped", so the plan shows the swap."""
    if _offline(op):
        _note(op, f"unless {name} already has the new action (a re-run):")
        return None
    connection: Connection = op.get_bind()
    code = connection.execute(
        sa.text(
            "SELECT con.confdeltype::text FROM pg_constraint AS con "
            "JOIN pg_class AS c ON c.oid = con.conrelid "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = :table "
            "AND con.conname = :name AND con.contype = 'f'"
        ),
        {"table": table, "name": name},
    ).scalar()
    actions = {
        "c": "CASCADE",
        "r": "RESTRICT",
        "a": "NO ACTION",
        "n": "SET NULL",
        "d": "SET DEFAULT",
    }
    return None if code is None else actions[str(code)]


# ------------------------------------------------------------ half-applied changes
#
# A change whose steps commit on their own (CONCURRENTLY, VALIDATE) is recorded as
# half-applied from before its first such commit until its revision stamp: a JSON note in the
# comment of the alembic_version table. The note is written inside the change's transaction, so
# it is committed with the first step that commits and never exists without one; it is
# cleared in the transaction that stamps the revision. A comment, not a table of our own: the
# application's schema (and every table check) stays exactly as the specs declare it.

_NOTE_KEY = "schemagen_half_applied"
# Tolerated rows, per check name: (problem, *values) as the check reports them.
Tolerance = Mapping[str, Sequence[Sequence[str | None]]]


def sql_checks(op: Any, change: str, checks: Sequence[tuple[str, str]]) -> None:
    """The ``checks`` of an ``sql`` operation, run after its SQL in the change's transaction:
    each query returns the rows that fail it; any row fails the change (rolled back)."""
    if _offline(op):
        for name, _ in checks:
            _note(op, f"sql check {name} must return no rows")
        return
    connection: Connection = op.get_bind()
    results = run_checks(connection, [Check(name, sql) for name, sql in checks])
    failed = [r for r in results if not r.passed]
    if failed:
        raise CheckFailed(change, "SQL", connection.dialect.name, failed)


class Irreversible(RuntimeError):
    """A downgrade past a change that cannot be undone (``purge``, irreversible ``sql``)."""


def irreversible(op: Any, message: str) -> None:
    """The first step of such a change's downgrade: refuse, before anything of it has run."""
    raise Irreversible(message)


class HalfAppliedElsewhere(RuntimeError):
    """Another change than the one about to run is half-applied."""


@dataclass(frozen=True)
class HalfApplied:
    """What an unfinished run of a change did and did not do, and how to go on or back."""

    change: str
    direction: str
    dialect: str
    revision: str  # the revision alembic_version holds while the change is half-applied
    down_revision: str  # the revision before the change ("base" for the first)
    done: tuple[str, ...]  # statements this run committed
    undone: tuple[str, ...]  # statements this run ran after its last commit (rolled back)
    earlier: bool  # the change was already half-applied when this run started
    # "before" (refused by its checks), "ddl" (a step failed), "commit" (the data checks before
    # a commit in the middle of its steps), "after" (post-checks)
    stage: str
    # False: no half-applied note was written (what committed are backfill batches only,
    # recorded in their own progress table; or SQLite, which has no table comments).
    noted: bool = True

    @property
    def continue_command(self) -> str:
        return _commands(self.direction, self.change.split("_", 1)[0], self.down_revision)[0]

    @property
    def undo_command(self) -> str:
        return _commands(self.direction, self.change.split("_", 1)[0], self.down_revision)[1]

    def describe(self) -> str:
        lines = [
            f"{self.change} is half-applied on {self.dialect}: its steps that run outside a "
            "transaction commit one by one and are not undone by a failure."
        ]
        if self.done:
            lines.append(f"done (committed) by this {self.direction}:")
            lines += [f"  {' '.join(sql.split())}" for sql in self.done]
        elif self.earlier:
            lines.append(
                f"done: by an earlier, interrupted run (this {self.direction} committed nothing)"
            )
        not_done = {
            "before": "not done: no step of this run (it was refused by the checks above)",
            "ddl": "not done: the statement that failed and every step after it",
            "commit": "not done: the steps since the last commit (rolled back: the data "
            "checks of what they did failed before their commit) and every step after them",
            "after": "not done: every step ran, but the checks of the result failed",
        }[self.stage]
        lines.append(f"{not_done}; the revision stamp was not written.")
        if self.undone:
            lines.append("run after the last commit and rolled back with the transaction:")
            lines += [f"  {' '.join(sql.split())}" for sql in self.undone]
        if not self.noted:
            lines += [
                f"the database is at revision {self.revision}; the batches of its backfill that "
                "committed are recorded in schemagen.backfill_progress.",
                f"to continue: {self.continue_command} (with the same --url: the backfill "
                "resumes after its last recorded batch)",
                "to undo: continue it first, then downgrade (docs/rollback.md, after a killed "
                "backfill)",
            ]
            return "\n".join(lines)
        lines += [
            f"the database is at revision {self.revision}, with {self.change} half-applied "
            "(recorded in the comment of the alembic_version table).",
            f"to continue: {self.continue_command}",
            f"to undo:     {self.undo_command}",
            "(with the same --url; each first checks that the database differs from its "
            "starting state only by this change's half-done steps, and refuses anything else)",
        ]
        return "\n".join(lines)


def rolled_back_of(exc: BaseException) -> str | None:
    """For a change that failed inside its transaction with nothing committed: one sentence
    saying so (see :func:`run_change`), else None."""
    info = getattr(exc, "schemagen_rolled_back", None)
    return info if isinstance(info, str) else None


def half_applied_of(exc: BaseException) -> HalfApplied | None:
    """The half-applied change an exception left behind, if any (see :func:`run_change`)."""
    info = getattr(exc, "schemagen_half_applied", None)
    return info if isinstance(info, HalfApplied) else None


def half_applied(connection: Connection) -> dict[str, str] | None:
    """The note of a half-applied change (PostgreSQL), or None."""
    if connection.dialect.name != "postgresql":
        return None
    text = connection.exec_driver_sql(
        f"SELECT obj_description(to_regclass('{version_table.get()}'), 'pg_class')"
    ).scalar()
    try:
        note = json.loads(text) if text else None
    except ValueError:
        return None
    found = note.get(_NOTE_KEY) if isinstance(note, dict) else None
    if not isinstance(found, dict) or not isinstance(found.get("change"), str):
        return None
    return {str(k): str(v) for k, v in found.items()}


def _comment(connection: Connection, text: str | None) -> None:
    literal = "NULL" if text is None else "'" + text.replace("'", "''") + "'"
    connection.exec_driver_sql(
        _driver_sql(connection, f"COMMENT ON TABLE {version_table.get()} IS {literal}")
    )


def _commands(direction: str, revision: str, down: str) -> tuple[str, str]:
    """(the command that finishes a half-applied change, the one that undoes it)."""
    up, back = "schemagen upgrade", f"schemagen downgrade --to {down}"
    return (up, back) if direction == "upgrade" else (back, f"{up} --to {revision}")


def mark_half_applied(
    connection: Connection, change: str, direction: str, revs: tuple[str, str]
) -> None:
    """Record ``change`` as half-applied by ``direction`` (revs: its revision, the one before)."""
    revision, down = revs
    finish, undo = _commands(direction, revision, down)
    at = down if direction == "upgrade" else revision
    note = {
        "change": change,
        "revision": revision,
        "down_revision": down,
        "direction": direction,
        "note": f"{change} {direction} interrupted at revision {at}: `{finish}` finishes it, "
        f"`{undo}` undoes it",
    }
    _comment(connection, json.dumps({_NOTE_KEY: note}, sort_keys=True))


def _revisions(op: Any, change: str) -> tuple[str, str]:
    """(this change's revision, the one before it or "base")."""
    revision = change.split("_", 1)[0]
    script = getattr(op.get_context(), "script", None)
    down: Any = None
    try:
        down = script.get_revision(revision).down_revision if script is not None else None
    except Exception:  # a script named otherwise than its revision: the number before it
        script = None
    if script is None and revision.isdigit() and int(revision) > 0:
        down = f"{int(revision) - 1:04d}"
    return revision, down if isinstance(down, str) else "base"


def _row_key(row: Sequence[Any]) -> tuple[str | None, ...]:
    return tuple(None if v is None else str(v) for v in row)


def _checks_before(
    connection: Connection, file: Path, change: str, phase: str, tolerated: Tolerance | None
) -> None:
    """Checks of the state before the DDL. ``tolerated``: the change is half-applied, and a
    failing row is accepted when it is one of these (one object in a state the change's own
    steps leave it in); every other failing row refuses the run before its first step."""
    dialect = connection.dialect.name
    allowed = {name: {_row_key(r) for r in rows} for name, rows in (tolerated or {}).items()}
    refused, accepted = [], []
    with step(change, f"{phase}-checks", dialect) as rec:
        sections = load_checks(file)
        # The fit-checks run here too and are never tolerated (no tolerance names them): a
        # row a narrowing conversion could not keep stops the change before its first DDL.
        chosen = [c for c in sections if c.kind in ("check", "fit-check")]
        results = run_checks(connection, chosen)
        for result in results:
            ok = allowed.get(result.check.name, set())
            bad = [r for r in result.rows if _row_key(r) not in ok]
            good = [r for r in result.rows if _row_key(r) in ok]
            if bad:
                refused.append(CheckResult(result.check, result.columns, bad))
            if good:
                accepted.append(CheckResult(result.check, result.columns, good))
        rec.extra.update(checks=len(results), failing_rows=sum(len(r.rows) for r in refused))
        if accepted:
            rec.extra.update(tolerated_rows=sum(len(r.rows) for r in accepted))
        if refused:
            rec.result = "failed"
    if refused:
        raise CheckFailed(change, phase, dialect, refused, before_ddl=True)
    if accepted:
        lines = [
            f"{change}: resuming an interrupted run; these rows are its half-done steps "
            "(tolerated; the checks after the change are strict):"
        ]
        for result in accepted:
            lines.append(f"  {result.check.name}:")
            lines += [f"    {line}" for line in format_rows(result.columns, result.rows)]
        log.warning("\n".join(lines))


class _Statements:
    """The statements a change's DDL function ran, and which ran outside a transaction."""

    # lookups, timeouts, the half-applied note, and the runner's savepoints (generator.guard)
    SKIPPED = ("SELECT", "SET", "SHOW", "COMMENT", "SAVEPOINT", "RELEASE", "ROLLBACK")

    def __init__(self) -> None:
        self.ran: list[tuple[str, bool]] = []

    def __call__(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if conn.info.get("schemagen.checking"):  # the runner's checks (_Attempt.check_so_far)
            return
        batches = conn.info.get("schemagen.batches")
        if batches:  # a backfill's batches: one line for all of them (generator.batches)
            if not self.ran or self.ran[-1][0] != batches:
                self.ran.append((batches, True))
            return
        words = statement.split(None, 1)
        if not words or words[0].upper() in self.SKIPPED:
            return
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        self.ran.append((statement, autocommit))

    def forget_uncommitted(self) -> None:
        """Drop what ran after the last statement outside a transaction (rolled back)."""
        last = max((i for i, (_, auto) in enumerate(self.ran) if auto), default=-1)
        del self.ran[last + 1 :]

    def split(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(committed, rolled back): everything up to the last statement run outside a
        transaction has committed (a transaction is committed when such a block starts)."""
        last = max((i for i, (_, auto) in enumerate(self.ran) if auto), default=-1)
        return (
            tuple(sql for sql, _ in self.ran[: last + 1]),
            tuple(sql for sql, _ in self.ran[last + 1 :]),
        )


def run_change(
    op: Any,
    script_file: str,
    direction: str,
    functions: Mapping[str, Callable[[], None]],
    resumable: Mapping[str, Tolerance] | None = None,
) -> None:
    """Run one direction of a change: checks of the state before, DDL, checks of the state after.

    ``resumable`` is given, per dialect, for a change with steps that commit on their own
    (CONCURRENTLY, VALIDATE): such a change can be left half-applied, is recorded as such
    while it runs (see :func:`half_applied`), and when it is, the checks before its DDL
    tolerate exactly the failing rows listed (generator.resume derives them from the plan).
    A failure after a commit leaves a :class:`HalfApplied` on the exception.
    """
    change = Path(script_file).stem
    if _offline(op):
        dialect = op.get_context().dialect.name
        before, after = ("pre", "post") if direction == "upgrade" else ("post", "pre")
        _note(op, f"{change} {direction} on {dialect}")
        _note(op, f"checks: validation/{dialect}/{change}.{before}.sql, snapshots taken")
        functions[dialect]()
        if dialect == "sqlite":
            _note(op, "PRAGMA foreign_key_check must return no rows")
        _note(op, f"checks: validation/{dialect}/{change}.{after}.sql, data checks")
        return
    connection: Connection = op.get_bind()
    dialect = connection.dialect.name
    fn = functions.get(dialect)
    if fn is None:
        raise UnsupportedDialect(
            f"change {change} supports {', '.join(sorted(functions))}, not {dialect!r}"
        )
    # Before anything runs: the script and the validation SQL must be the ones in the sum.
    texts = integrity.for_change(script_file, dialect, change, allow_modified(op))
    use_verified(script_file, texts)
    if dialect == "sqlite" and connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "SQLite foreign-key enforcement is on inside the migration transaction, so a table "
            "rebuild could cascade-delete rows; run migrations through generated_migrations/env.py "
            "(schemagen upgrade, or alembic with alembic.ini), which switches it off first"
        )
    note = half_applied(connection)
    if note is not None and note["change"] != change:
        raise HalfAppliedElsewhere(
            f"{note['change']} is half-applied (an interrupted {note.get('direction')}), so "
            f"{change} cannot run: finish it with `schemagen upgrade` or undo it with "
            f"`schemagen downgrade --to {note.get('down_revision')}` first"
        )
    attempt = _Attempt(
        connection=connection,
        script_file=script_file,
        direction=direction,
        fn=fn,
        change=change,
        dialect=dialect,
        tolerated=(resumable or {}).get(dialect),
        note=note,
        revs=_revisions(op, change),
    )
    counting = dialect == "postgresql"
    if counting:
        event.listen(connection, "commit", attempt.before_commit)
        event.listen(connection, "before_cursor_execute", _refuse_uncounted_row_changes)
    try:
        # Lock waits are bounded and retried (generator.guard): a retry runs the change again.
        guard.retrying(connection, change, attempt.run)
    except BaseException as exc:
        attempt.account(exc)
        raise
    finally:
        if counting:
            event.remove(connection, "commit", attempt.before_commit)
            event.remove(connection, "before_cursor_execute", _refuse_uncounted_row_changes)
    if attempt.tolerated is not None or note is not None:
        _comment(connection, None)  # committed with the revision stamp, or not at all


# PostgreSQL: the temp table into which the deletes of each transaction a change commits
# part-way are added (its data check, templates/validation/_data.sql.j2, reads it with the
# deletes of the transaction still open: pg_stat_xact_* forget a transaction at its end).
XACT_DELETED = "schemagen_xact_deleted"
_CARRY_SQL = (
    f"INSERT INTO {XACT_DELETED} (relid, deleted) "
    "SELECT relid, n_tup_del FROM pg_stat_xact_user_tables WHERE n_tup_del > 0 "
    f"ON CONFLICT (relid) DO UPDATE SET deleted = {XACT_DELETED}.deleted + excluded.deleted"
)
# Statements that change rows: refused outside a transaction during a change (in a
# CONCURRENTLY block), where no transaction's statistics would count what they delete.
_ROW_CHANGES = ("DELETE", "TRUNCATE", "UPDATE", "INSERT", "MERGE", "COPY", "WITH", "DO", "CALL")


class UncountedRowChange(RuntimeError):
    """A change ran a statement that can change rows outside a transaction (PostgreSQL)."""


def _refuse_uncounted_row_changes(
    conn: Connection, cursor: Any, statement: str, *args: Any
) -> None:
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        return
    if conn.info.get("schemagen.batches"):  # a backfill's own transactions (generator.batches)
        return
    if statement.startswith(ddl.SWAP_BLOCK):  # a foreign key's swap: no row changes
        return
    words = statement.split(None, 1)
    if words and words[0].upper() in _ROW_CHANGES:
        raise UncountedRowChange(
            f"refused to run {' '.join(statement.split())[:120]!r} outside the change's "
            "transaction (in a CONCURRENTLY / VALIDATE block): the rows it changed could not "
            "be checked; only index and constraint steps run there"
        )


@dataclass
class _Attempt:
    """One change run by :func:`guard.retrying`, attempt after attempt, and what it did."""

    connection: Connection
    script_file: str
    direction: str
    fn: Callable[[], None]
    change: str
    dialect: str
    tolerated: Tolerance | None  # the change's resume tolerance (it has steps that commit)
    note: dict[str, str] | None  # the half-applied note found before the first attempt
    revs: tuple[str, str]
    statements: _Statements = field(default_factory=lambda: _Statements())
    stage: str = "before"
    carrying: bool = False  # the snapshots made schemagen_xact_deleted (PostgreSQL)

    def before_commit(self, conn: Connection) -> None:
        """Before a transaction of the change commits in the middle of its steps (the one
        before a CONCURRENTLY / online block, and each after one): first the data checks of
        what ran so far (:meth:`check_so_far`), then its deletes per table are added to
        schemagen_xact_deleted."""
        if self.stage == "ddl" and conn.get_execution_options().get("isolation_level") != (
            "AUTOCOMMIT"
        ):
            self.check_so_far(conn)
        if not self.carrying:
            return
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            cursor.execute(_CARRY_SQL)
        finally:
            cursor.close()

    def check_so_far(self, conn: Connection) -> None:
        """The data checks of the state after the change (row counts: no row deleted, no
        table truncated or rewritten that the change does not rewrite; drift of converted
        values), run on what the change's steps did so far, before that transaction commits.

        Every data check only ever gets worse as a change goes on (deletes add up, a new
        file stays new, a converted value does not come back), so what fails here would fail
        after the change too; here it fails while everything the change did is still in its
        transaction. On failure that transaction is rolled back at once (the DBAPI
        connection's own rollback: SQLAlchemy's commit was refused in its ``commit`` event,
        after which its transaction object issues no rollback) and the checks' failure
        raised: nothing is committed, a hand-edited TRUNCATE before an online type change
        included."""
        after = "post" if self.direction == "upgrade" else "pre"
        file = validation_file(self.script_file, self.dialect, self.change, after)
        checks = [c for c in load_checks(file) if c.kind == "data-check"]
        if not checks:
            return
        conn.info["schemagen.checking"] = True
        try:
            with step(self.change, f"{after}-data-checks before a commit", self.dialect) as rec:
                results = run_checks(conn, checks)
                failing = [r for r in results if not r.passed]
                rec.extra.update(
                    checks=len(results), failing_rows=sum(len(r.rows) for r in failing)
                )
                if failing:
                    rec.result = "failed"
        finally:
            conn.info.pop("schemagen.checking", None)
        if not failing:
            return
        self.stage = "commit"
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        dbapi.rollback()
        raise CheckFailed(self.change, after, self.dialect, failing, before_commit=True)

    def run(self, from_start: bool) -> None:
        """One attempt; ``from_start`` False: a CONCURRENTLY block of it committed already,
        so the state before differs by design and the snapshots are kept from then."""
        connection, change, dialect = self.connection, self.change, self.dialect
        # A retry rolled back what the last attempt ran after its last commit.
        self.statements.forget_uncommitted()
        before, after = ("pre", "post") if self.direction == "upgrade" else ("post", "pre")
        before_file = validation_file(self.script_file, dialect, change, before)
        if from_start:
            self.stage = "before"
            tolerated = (self.tolerated or {}) if self.note else None
            _checks_before(connection, before_file, change, before, tolerated)
            if self.tolerated is not None:
                mark_half_applied(connection, change, self.direction, self.revs)
        snapshots = [c for c in load_checks(before_file) if c.kind == "snapshot"]
        if snapshots and from_start:
            with step(change, "snapshot", dialect) as rec:
                _lock_converted(connection, snapshots)
                for snap in snapshots:
                    connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{snap.name}"')
                    connection.exec_driver_sql(_driver_sql(connection, snap.sql))
                rec.extra.update(tables=len(snapshots))
            self.carrying = dialect == "postgresql" and any(
                snap.name == XACT_DELETED for snap in snapshots
            )
        self.stage = "ddl"
        event.listen(connection, "after_cursor_execute", self.statements)
        try:
            with step(change, self.direction, dialect):
                self.fn()
            finish_backfills(connection)
        finally:
            event.remove(connection, "after_cursor_execute", self.statements)
        self.stage = "after"
        if dialect == "sqlite":
            foreign_key_check(connection, change)
        after_file = validation_file(self.script_file, dialect, change, after)
        verify(connection, after_file, change, after, ("check", "data-check"))
        # On failure the rollback takes the snapshots with it (or the session ends); a re-run
        # drops any left by a committed autocommit block before taking new ones.
        self.carrying = False
        _drop_snapshots(connection, [snap.name for snap in snapshots])

    def account(self, exc: BaseException) -> None:
        """Leave on ``exc`` what a failed run committed and how to go on (a HalfApplied)."""
        done, undone = self.statements.split()
        if not done and self.note is None:
            at = "the revision before it" if self.direction == "upgrade" else "its revision"
            where = {
                "before": "its checks",
                "ddl": "its steps",
                "commit": "the data checks of its steps before their first commit",
                "after": "its checks after",
            }
            sentence = (
                f"{self.change}: its {self.direction} failed in {where[self.stage]} on "
                f"{self.dialect}; its transaction was rolled back and nothing of it was kept "
                f"(the database is still at {at}); fix the cause and run the same command again"
            )
            with contextlib.suppress(AttributeError, TypeError):
                exc.schemagen_rolled_back = sentence  # type: ignore[attr-defined]
            return
        revision, down = self.revs
        info = HalfApplied(
            change=self.change,
            direction=self.direction,
            dialect=self.dialect,
            revision=down if self.direction == "upgrade" else revision,
            down_revision=down,
            done=done,
            undone=undone,
            earlier=self.note is not None,
            noted=self.tolerated is not None or self.note is not None,
            stage=self.stage,
        )
        try:
            exc.schemagen_half_applied = info  # type: ignore[attr-defined]
        except (AttributeError, TypeError):  # an exception type without a __dict__
            log.error("%s", info.describe())


VALUES_SNAPSHOT = "schemagen_values_"  # the value snapshot of a table a change converts


def _lock_converted(connection: Connection, snapshots: list[Check]) -> None:
    """PostgreSQL: the tables whose values a blocking conversion snapshots are locked (ACCESS
    EXCLUSIVE, the lock its ALTER takes anyway; under the runner's lock_timeout, retried like
    any lock) before the first snapshot, so no other session changes a row between the
    snapshots (row counts, values) and the conversion: an UPDATE or DELETE the application
    commits in that gap would otherwise read as drift or lost rows and refuse a sound change.
    The online path takes no value snapshot (it checks each batch), so it locks nothing here."""
    tables = [s.table for s in snapshots if s.name.startswith(VALUES_SNAPSHOT) and s.table]
    if not tables or connection.dialect.name != "postgresql":
        return
    quote = connection.dialect.identifier_preparer.quote
    connection.exec_driver_sql(
        f"LOCK TABLE {', '.join(quote(t) for t in tables)} IN ACCESS EXCLUSIVE MODE"
    )


def _drop_snapshots(connection: Connection, names: list[str]) -> None:
    """The snapshots go before the commit: on PostgreSQL in one statement (this runs under the
    DDL's lock, where each round trip is a wait for every writer), SQLite one by one."""
    if connection.dialect.name == "postgresql" and names:
        tables = ", ".join(f'"{name}"' for name in names)
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {tables}")
        return
    for name in names:
        connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')


def backfill(op: Any, script_file: str, direction: str, **step: Any) -> None:
    """A backfill step's keyset batches, each committed on its own (generator.batches)."""
    from generator import batches

    batches.backfill(op, script_file, direction, **step)


def online_type_change(op: Any, script_file: str, direction: str, **unit: Any) -> None:
    """An online type change of one table's columns (PostgreSQL; generator.online)."""
    from generator import online

    online.online_type_change(op, script_file, direction, **unit)


def finish_backfills(connection: Connection) -> None:
    """The bookkeeping of the change's finished backfills goes, in its last transaction."""
    done = connection.info.pop("schemagen.backfills", None)
    if done:
        from generator import batches

        batches.finish(connection, list(done.values()))


def timeouts(op: Any, lock_timeout: str, statement_timeout: str) -> None:
    """A change's ``postgresql:`` settings, at the start of its DDL: ``lock_timeout`` is a
    ceiling on the runner's ``--lock-timeout`` (see :func:`guard.set_change_timeouts`)."""
    if _offline(op):
        _note(op, f"lock_timeout: the shorter of this and --lock-timeout ({lock_timeout} at most)")
        op.execute(sa.text(f"SET lock_timeout = '{lock_timeout}'"))
        op.execute(sa.text(f"SET statement_timeout = '{statement_timeout}'"))
        return
    guard.set_change_timeouts(op.get_bind(), lock_timeout, statement_timeout)


def queueing_lock_wait(op: Any, queues: bool) -> None:
    """Inside a CONCURRENTLY block, before a statement: ``queues`` True when its lock request
    makes other sessions queue behind it, so it waits only the runner's short lock_timeout
    (DROP INDEX CONCURRENTLY ends with ACCESS EXCLUSIVE on the index, and every INSERT into
    the table opens that index: while the drop waits for a long reader, the INSERTs wait behind
    it). False: the change's own wait (a concurrent build waits for old transactions without
    blocking anyone, and a retry would build the index again)."""
    if _offline(op):
        return
    guard.set_block_lock_wait(op.get_bind(), short=queues)


def current_revision(connection: Connection) -> str | None:
    inspector = sa.inspect(connection)
    table = version_table.get()
    if not inspector.has_table(table):
        return None
    return connection.exec_driver_sql(f"SELECT version_num FROM {table}").scalar()


def _enum_labels(op: Any, name: str) -> list[str] | None:
    """The labels of the enum type ``name`` in the current schema, or None when it has none."""
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT e.enumlabel FROM pg_type AS t "
                "JOIN pg_namespace AS n ON n.oid = t.typnamespace "
                "JOIN pg_enum AS e ON e.enumtypid = t.oid "
                "WHERE n.nspname = current_schema() AND t.typname = :name "
                "ORDER BY e.enumsortorder"
            ),
            {"name": name},
        )
        .scalars()
        .all()
    )
    return [str(r) for r in rows] or None


def create_enum_type(op: Any, name: str, labels: Sequence[str]) -> None:
    """PostgreSQL, before a change's DDL (a create_enum_type unit, generator.enum_types): an
    enum type its columns need. One that exists with the same labels is kept (a change resumed
    after its types were created); with other labels it is an error naming both."""
    from sqlalchemy.dialects import postgresql

    found = None if _offline(op) else _enum_labels(op, name)
    if found == list(labels):
        return
    if found is not None:
        raise RuntimeError(
            f"enum type {name} exists with the labels {', '.join(found)}, not {', '.join(labels)}"
        )
    op.execute(postgresql.CreateEnumType(postgresql.ENUM(*labels, name=name)))


def drop_enum_type(op: Any, name: str) -> None:
    """PostgreSQL, after a change's DDL (a drop_enum_type unit): a type no column uses any more."""
    from generator import ddl

    op.execute(ddl.DropType(name))
