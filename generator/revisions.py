"""Where a database stands against this project's revision graph: at head, behind, ahead,
or at a revision the project does not know.

Revisions are compared through Alembic's graph (``ScriptDirectory``), never as strings or
file names: hand-written revisions in ``versions/`` count like generated ones, and a
revision id the graph lacks is reported, not mistaken for "at head". (The chain as files,
read without importing them, for ``generate``: :mod:`generator.revision_files`.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import Connection

from generator import version_table

# The states `schemagen status --json` reports (docs/rollback.md says what each one means).
EMPTY, BEHIND, AT_HEAD, AHEAD, UNKNOWN = "empty", "behind", "at_head", "ahead", "unknown_revision"
# Generated revisions are numbered; an unknown one numbered past head was most likely
# written by a newer checkout of the same project, which is worth saying.
_NUMBERED = re.compile(r"[0-9]{4}")


class ProjectError(RuntimeError):
    """The project directory cannot run migrations (no env.py, no versions/)."""


class DatabaseStateError(RuntimeError):
    """The database is at a revision this project cannot move it from."""

    def __init__(self, state: DatabaseState) -> None:
        self.state = state
        super().__init__(state.message)


@dataclass(frozen=True)
class DatabaseState:
    state: str
    revisions: tuple[str, ...]  # as recorded in alembic_version; () for none
    heads: tuple[str, ...]
    pending: tuple[str, ...]  # revision ids still to apply, oldest first
    message: str

    @property
    def revision(self) -> str | None:
        return ", ".join(self.revisions) if self.revisions else None

    @property
    def head(self) -> str | None:
        return ", ".join(self.heads) if self.heads else None

    @property
    def healthy(self) -> bool:
        """The graph knows where the database is: upgrade and downgrade can move it."""
        return self.state in (EMPTY, BEHIND, AT_HEAD)


def check_project(migrations_dir: Path) -> None:
    """Fail with one sentence when the migrations directory cannot be run."""
    env = migrations_dir / "env.py"
    if not env.is_file():
        from generator.scaffold import INIT_DIR

        raise ProjectError(
            f"{env} is missing: no Alembic environment at {env} for the migrations to run in "
            "(is --root the project directory? `schemagen init` writes it in a new project; in "
            f"an existing one restore it from version control, or copy {INIT_DIR / 'env.py'})"
        )
    if not (migrations_dir / "versions").is_dir():
        raise ProjectError(f"no directory {migrations_dir / 'versions'} (run `schemagen generate`)")


def script_directory(migrations_dir: Path) -> ScriptDirectory:
    check_project(migrations_dir)
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    return ScriptDirectory.from_config(config)


def all_revisions(script: ScriptDirectory) -> dict[str, Script]:
    """Every revision of the graph by its exact id (Alembic's lookups also accept prefixes)."""
    return {s.revision: s for s in script.walk_revisions()}


def read_revisions(connection: Connection) -> tuple[str, ...]:
    table = version_table.get()
    if not sa.inspect(connection).has_table(table):
        return ()
    rows = connection.exec_driver_sql(f"SELECT version_num FROM {table}").scalars()
    return tuple(sorted(str(r) for r in rows))


def classify(script: ScriptDirectory, revisions: Sequence[str]) -> DatabaseState:
    """The state of a database whose alembic_version holds ``revisions``."""
    known = all_revisions(script)
    heads = tuple(script.get_heads())
    current = tuple(revisions)
    head_text = ", ".join(heads) or "none"
    unknown = [r for r in current if r not in known]
    if unknown:
        numbers = [int(r) for r in known if _NUMBERED.fullmatch(r)]
        ahead = all(_NUMBERED.fullmatch(r) for r in unknown) and all(
            int(r) > max(numbers, default=-1) for r in unknown
        )
        what = ", ".join(repr(r) for r in unknown)
        if ahead:
            return DatabaseState(
                AHEAD,
                current,
                heads,
                (),
                f"the database is at revision {what}, past this project's head ({head_text}): "
                "it was migrated by a newer version of the changes; run that version, or "
                "downgrade with it, before using this one",
            )
        return DatabaseState(
            UNKNOWN,
            current,
            heads,
            (),
            f"the database is at revision {what}, which this project's revision graph "
            f"(head {head_text}) does not contain; find the code that wrote it, or "
            "correct alembic_version by hand once the schema is known",
        )
    lower: str | tuple[str, ...] = current or "base"
    pending = tuple(s.revision for s in reversed(list(script.iterate_revisions("heads", lower))))
    if not current:
        state = EMPTY
        message = f"no revision recorded; {len(pending)} change(s) pending"
    elif pending:
        state = BEHIND
        message = f"behind head ({head_text}): {len(pending)} change(s) pending"
    else:
        state = AT_HEAD
        message = f"at head ({head_text})"
    return DatabaseState(state, current, heads, pending, message)


def database_state(migrations_dir: Path, connection: Connection) -> DatabaseState:
    return classify(script_directory(migrations_dir), read_revisions(connection))
