"""Run the schemagen CLI and SIGKILL the process right after the Nth statement containing
KILL_AFTER: a migration dying at an exact point, as a crash or an OOM kill would leave it.

With KILL_STEP set, only the statements run while the runtime's step of that name is open
count (e.g. ``backfill market_data``: an online phase), and when the step ends before its Nth
statement the process is killed at its end (after what it committed).

With RUN_SQL set, the process is not killed: that SQL runs instead, at the same point, on a
connection of its own to KILL_URL (another session changing the schema under a running
migration), and the migration goes on.

:func:`arm` and :func:`counting` are the same, for a process forked from the test's own
(tests/generator/test_online_type_change.py) and for counting a step's statements."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

_ARMED: list[Any] = []


@contextmanager
def counting(
    on_statement: Callable[[str, str | None], None],
    on_step_end: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """While open: ``on_statement(statement, innermost open step)`` after every statement any
    engine runs, ``on_step_end(step)`` when a step of the runtime ends without an error."""
    from generator import runtime

    opened: list[str] = []
    inner = runtime.step

    @contextmanager
    def watched(change: str, name: str, dialect: str) -> Iterator[Any]:
        with inner(change, name, dialect) as record:
            opened.append(name)
            try:
                yield record
            finally:
                opened.pop()
        if on_step_end is not None:
            on_step_end(name)

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        on_statement(statement, opened[-1] if opened else None)

    runtime.step = watched  # type: ignore[assignment]
    event.listen(Engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(Engine, "after_cursor_execute", after)
        runtime.step = inner  # type: ignore[assignment]


def arm(marker: str, nth: int, step: str | None = None, run_sql: str | None = None) -> None:
    """Kill this process (or run ``run_sql``) after the ``nth`` statement containing
    ``marker``; with ``step``, counting only that step's statements, and at its end at the
    latest. Stays armed for the life of the process."""
    seen = 0

    def fire() -> None:
        if run_sql is None:
            os.kill(os.getpid(), signal.SIGKILL)
        other = sa.create_engine(os.environ["KILL_URL"], isolation_level="AUTOCOMMIT")
        with other.connect() as session:
            session.exec_driver_sql(run_sql)
        other.dispose()

    def on_statement(statement: str, open_step: str | None) -> None:
        nonlocal seen
        if step is not None and open_step != step:
            return
        if marker in statement:
            seen += 1
            if seen == nth:
                fire()

    def on_step_end(name: str) -> None:
        if name == step and seen < nth and run_sql is None:
            fire()

    armed = counting(on_statement, on_step_end)
    armed.__enter__()
    _ARMED.append(armed)  # kept: a collected context would close, and disarm


if __name__ == "__main__":
    arm(
        os.environ["KILL_AFTER"],
        int(os.environ.get("KILL_NTH", "1")),
        os.environ.get("KILL_STEP"),
        os.environ.get("RUN_SQL"),
    )
    from generator.cli import main

    main()
