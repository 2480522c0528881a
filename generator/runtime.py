"""What a rendered migration calls at run time: dispatch on the dialect, run the change's
pre- and post-checks around its DDL, and log every step with its duration.

Rendered migrations import this module and nothing else from the project, never the models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from generator import guard

log = logging.getLogger("schemagen")
# A validation file is a series of sections, each opened by one of these markers:
#   check       a query returning the rows that break it (run by migrations and `verify`)
#   snapshot    CREATE TEMP TABLE <name> ... run before a change's DDL
#   data-check  like check, but reads a snapshot: only a migration run can evaluate it
MARKERS = {"-- check: ": "check", "-- snapshot: ": "snapshot", "-- data-check: ": "data-check"}
MAX_ROWS_SHOWN = 20


@dataclass(frozen=True)
class Check:
    name: str
    sql: str
    kind: str = "check"


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
    """A validation check returned rows: the state is not what the change expects."""

    def __init__(self, change: str, phase: str, dialect: str, failures: Sequence[CheckResult]):
        self.change, self.phase, self.dialect, self.failures = change, phase, dialect, failures
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


def parse_checks(text: str) -> list[Check]:
    """Split a validation file into its sections (see MARKERS)."""
    checks: list[Check] = []
    name: str | None = None
    kind = "check"
    body: list[str] = []

    def flush() -> None:
        if name is not None:
            sql = "\n".join(body).strip().rstrip(";").strip()
            checks.append(Check(name, sql, kind))

    for line in text.splitlines():
        marker = (
            next((m for m in MARKERS if line.startswith(m)), None)
            if line.startswith("-- ")
            else None
        )
        if marker is not None:
            flush()
            name, kind, body = line[len(marker) :].strip(), MARKERS[marker], []
        elif name is not None:
            body.append(line)
    flush()
    return checks


def _driver_sql(connection: Connection, sql: str) -> str:
    # Drivers with %-style placeholders parse '%' even without parameters; double it there.
    percent = connection.dialect.paramstyle in ("format", "pyformat")
    return sql.replace("%", "%%") if percent else sql


def run_checks(connection: Connection, checks: Sequence[Check]) -> list[CheckResult]:
    results = []
    for check in checks:
        result = connection.exec_driver_sql(_driver_sql(connection, check.sql))
        results.append(CheckResult(check, list(result.keys()), [tuple(r) for r in result]))
    return results


def validation_file(script_file: str | Path, dialect: str, change: str, phase: str) -> Path:
    return (
        Path(script_file).resolve().parent.parent / "validation" / dialect / f"{change}.{phase}.sql"
    )


@dataclass
class StepRecord:
    change: str
    step: str
    dialect: str
    result: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def step(change: str, name: str, dialect: str) -> Iterator[StepRecord]:
    """Log a step as it starts and as it ends, with its duration and result."""
    record = StepRecord(change, name, dialect)
    guard.note_step(name)
    log.info(
        "%s: %s ...",
        change,
        name,
        extra={"event": "start", "change": change, "step": name, "dialect": dialect},
    )
    started = time.perf_counter()
    try:
        yield record
    except BaseException:
        record.result = "failed"
        raise
    finally:
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
                **record.extra,
            },
        )


def evaluate(
    connection: Connection, file: Path, change: str, phase: str, kinds: Sequence[str] = ("check",)
) -> list[CheckResult]:
    """Run the checks of one validation file as a logged step; returns every result."""
    dialect = connection.dialect.name
    sections = parse_checks(file.read_text(encoding="utf-8"))
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


def drop_invalid_index(op: Any, name: str) -> None:
    """Drop an INVALID index left by an interrupted ``CREATE INDEX CONCURRENTLY``.

    ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` would otherwise keep the broken one.
    """
    if _offline(op):
        _note(op, f'if "{name}" is INVALID: DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
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
        op.execute(sa.text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))


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


def _checks_before(
    connection: Connection, file: Path, change: str, phase: str, resumable: Sequence[str]
) -> None:
    """Checks of the state before the DDL; failures of ``resumable`` checks are tolerated."""
    results = evaluate(connection, file, change, phase)
    failing = [r for r in results if not r.passed]
    if failing and all(r.check.name in resumable for r in failing):
        names = ", ".join(r.check.name for r in failing)
        log.warning(
            "%s: %s differ from the expected state; resuming an interrupted run "
            "(the post-checks decide)",
            change,
            names,
        )
    elif failing:
        raise CheckFailed(change, phase, connection.dialect.name, failing)


def run_change(
    op: Any,
    script_file: str,
    direction: str,
    functions: Mapping[str, Callable[[], None]],
    resumable: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Run one direction of a change: checks of the state before, DDL, checks of the state after.

    ``resumable`` names, per dialect, the checks of objects that a non-transactional step
    changes: an interrupted run leaves them half-done, and running the change again repairs
    them, so they may fail before the DDL (never after it).
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
    if dialect == "sqlite" and connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "SQLite foreign-key enforcement is on inside the migration transaction, so a table "
            "rebuild could cascade-delete rows; run migrations through generated_migrations/env.py "
            "(schemagen upgrade, or alembic with alembic.ini), which switches it off first"
        )
    # Lock waits are bounded and retried (generator.guard): a retry runs the change again.
    guard.retrying(
        connection,
        change,
        lambda from_start: _run_once(
            connection, script_file, direction, fn, resumable, change, dialect, from_start
        ),
    )


def _run_once(
    connection: Connection,
    script_file: str,
    direction: str,
    fn: Callable[[], None],
    resumable: Mapping[str, Sequence[str]] | None,
    change: str,
    dialect: str,
    from_start: bool,
) -> None:
    """One attempt at a change; ``from_start`` False: a CONCURRENTLY block of it committed
    already, so the state before differs by design and the snapshots are kept from then."""
    before, after = ("pre", "post") if direction == "upgrade" else ("post", "pre")
    before_file = validation_file(script_file, dialect, change, before)
    if from_start:
        _checks_before(connection, before_file, change, before, (resumable or {}).get(dialect, ()))
    snapshots = [c for c in parse_checks(before_file.read_text("utf-8")) if c.kind == "snapshot"]
    if snapshots and from_start:
        with step(change, "snapshot", dialect) as rec:
            for snap in snapshots:
                connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{snap.name}"')
                connection.exec_driver_sql(_driver_sql(connection, snap.sql))
            rec.extra.update(tables=len(snapshots))
    with step(change, direction, dialect):
        fn()
    if dialect == "sqlite":
        foreign_key_check(connection, change)
    after_file = validation_file(script_file, dialect, change, after)
    verify(connection, after_file, change, after, ("check", "data-check"))
    # On failure the rollback takes the snapshots with it (or the session ends); a re-run
    # drops any left by a committed autocommit block before taking new ones.
    for snap in snapshots:
        connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{snap.name}"')


def timeouts(op: Any, lock_timeout: str, statement_timeout: str) -> None:
    """A change's ``postgresql:`` settings, at the start of its DDL: ``lock_timeout`` is a
    ceiling on the runner's ``--lock-timeout`` (see :func:`guard.set_change_timeouts`)."""
    if _offline(op):
        _note(op, f"lock_timeout: the shorter of this and --lock-timeout ({lock_timeout} at most)")
        op.execute(sa.text(f"SET lock_timeout = '{lock_timeout}'"))
        op.execute(sa.text(f"SET statement_timeout = '{statement_timeout}'"))
        return
    guard.set_change_timeouts(op.get_bind(), lock_timeout, statement_timeout)


def current_revision(connection: Connection) -> str | None:
    inspector = sa.inspect(connection)
    if not inspector.has_table("alembic_version"):
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
