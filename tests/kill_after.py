"""Run the schemagen CLI and SIGKILL the process right after the Nth statement containing
KILL_AFTER: a migration dying at an exact point, as a crash or an OOM kill would leave it.

With RUN_SQL set, the process is not killed: that SQL runs instead, at the same point, on a
connection of its own to KILL_URL (another session changing the schema under a running
migration), and the migration goes on."""

import os
import signal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

MARKER = os.environ["KILL_AFTER"]
NTH = int(os.environ.get("KILL_NTH", "1"))
RUN_SQL = os.environ.get("RUN_SQL")
_seen = 0


@event.listens_for(Engine, "after_cursor_execute")
def _kill(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    global _seen
    if MARKER in statement:
        _seen += 1
        if _seen == NTH:
            if RUN_SQL is None:
                os.kill(os.getpid(), signal.SIGKILL)
            other = sa.create_engine(os.environ["KILL_URL"], isolation_level="AUTOCOMMIT")
            with other.connect() as session:
                session.exec_driver_sql(RUN_SQL)
            other.dispose()


if __name__ == "__main__":
    from generator.cli import main

    main()
