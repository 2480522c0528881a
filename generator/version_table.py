"""The table that records where the database stands: Alembic's ``alembic_version``, or the
project's own (``version_table`` in the configuration) when another owner's Alembic history
keeps ``alembic_version`` and must not see it move.

One setting for the process: the CLI sets it from the project, env.py from the caller's
attributes or the project, and everything that reads or writes the version row asks here.
"""

from __future__ import annotations

import re

DEFAULT = "alembic_version"
PATTERN = r"[a-z_][a-z0-9_]{0,62}"
_current = DEFAULT


def get() -> str:
    return _current


def use(name: str) -> None:
    global _current
    if not re.fullmatch(PATTERN, name):
        raise ValueError(f"not a table name: {name!r}")
    _current = name
