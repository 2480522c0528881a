"""Run the schemagen CLI and SIGKILL the process right after the Nth statement containing
KILL_AFTER: a migration dying at an exact point, as a crash or an OOM kill would leave it."""

import os
import signal
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

MARKER = os.environ["KILL_AFTER"]
NTH = int(os.environ.get("KILL_NTH", "1"))
_seen = 0


@event.listens_for(Engine, "after_cursor_execute")
def _kill(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    global _seen
    if MARKER in statement:
        _seen += 1
        if _seen == NTH:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    from generator.cli import main

    main()
