"""Plain ``alembic upgrade head`` (through generated_migrations/env.py): one clear line and an
exit code for a failure, never a traceback, as ``schemagen upgrade`` does.

Only the ``alembic`` command line gets this (its Config carries the parsed options); a
program that calls Alembic itself (``schemagen``, pytest-alembic) gets the exception, to
handle in its own way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

DEBUG_VARIABLE = "SCHEMAGEN_DEBUG"


def run(main: Callable[[], None], config: Any) -> None:
    """Run env.py's ``main``; from the ``alembic`` command line, a failure is one line on
    stderr and the exit code ``schemagen`` uses for it (2 usage, 4 database, 1 a failed
    check, 5 another runner); SCHEMAGEN_DEBUG=1 keeps the traceback."""
    if getattr(config, "cmd_opts", None) is None or os.environ.get(DEBUG_VARIABLE, "") not in (
        "",
        "0",
    ):
        main()
        return
    try:
        main()
    except Exception as exc:
        code, message = describe(exc)
        if code is None:
            raise
        from generator import redact

        print(redact.redact(message), file=sys.stderr)
        raise SystemExit(code) from None


def describe(exc: BaseException) -> tuple[int | None, str]:
    """(exit code, message) for a failure of a run; (None, "") for one that is a bug."""
    import sqlalchemy as sa

    from generator import db, guard, integrity, runtime
    from generator.config import ConfigError

    half = runtime.half_applied_of(exc)
    after = f"\n{half.describe()}" if half is not None else ""
    if half is None and (rolled_back := runtime.rolled_back_of(exc)) is not None:
        after = f"\n{rolled_back}"
    if isinstance(exc, db.UrlError | ConfigError | sa.exc.ArgumentError):
        return 2, f"error: {exc} (alembic: check DATABASE_URL or sqlalchemy.url)"
    if isinstance(exc, guard.RunnerBusy):
        return 5, f"error: {exc}"
    if isinstance(exc, runtime.CheckFailed | integrity.ModifiedFiles):
        return 1, f"error: {exc}{after}"
    if isinstance(exc, sa.exc.DBAPIError) and _connect(exc):
        detail = " ".join(str(exc.orig or exc).split())[:300]
        return 4, f"error: cannot connect to the database: {detail}"
    if isinstance(exc, sa.exc.SQLAlchemyError):
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        return 4, f"database error: {type(exc).__name__}: {detail}{after}"
    if isinstance(
        exc,
        guard.LockTimeout
        | guard.ReplicaLagging
        | guard.DatabaseBusy
        | guard.CommitFailed
        | runtime.HalfAppliedElsewhere
        | db.NoDatabase
        | ModuleNotFoundError,
    ):
        return 4, f"error: {exc}{after}"
    return None, ""


def _connect(exc: BaseException) -> bool:
    """A failure to open the connection (no statement was run)."""
    return getattr(exc, "statement", None) is None
