"""Helpers of the constraint-operation tests (set_default, add_check, set_nullable, ...):
render a golden case into a scratch project, read rows and storage, watch pg_locks."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from support import GOLDEN, ROOT

from generator import db, files
from generator.load import Change, load_changes
from generator.render import generate


def render_case(case: str, tmp_path: Path) -> tuple[list[Change], Path]:
    """The golden case ``case`` rendered into ``tmp_path/generated_migrations``."""
    return render_project(GOLDEN / "render" / case, tmp_path)


def render_project(root: Path, tmp_path: Path) -> tuple[list[Change], Path]:
    """The changes of ``root/changes`` rendered into ``tmp_path/generated_migrations``."""
    changes = load_changes(root / "changes", display_base=root)
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(changes), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    return changes, out_dir


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def storage(url: str, table: str) -> object:
    """Where the table's rows live: a new value means the table was rewritten or rebuilt."""
    query = (
        f"SELECT relfilenode FROM pg_class WHERE relname = '{table}'"
        if url.startswith("postgresql")
        else f"SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
    )
    return rows(url, query)[0][0]


def pg_locks_during(
    url: str, table: str, setup: Sequence[str], statements: Sequence[str]
) -> set[str]:
    """The lock modes on ``table`` that a transaction running ``statements`` holds, read by a
    second connection while that transaction is still open."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for sql in setup:
                conn.exec_driver_sql(sql)
        working, watcher = engine.connect(), engine.connect()
        try:
            tx = working.begin()
            pid = working.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            for sql in statements:
                working.exec_driver_sql(sql)
            modes = set(
                watcher.exec_driver_sql(
                    "SELECT l.mode FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
                    f"WHERE l.pid = {pid} AND c.relname = '{table}' AND l.granted"
                ).scalars()
            )
            tx.commit()
        finally:
            working.close()
            watcher.close()
    finally:
        engine.dispose()
    return modes


# PostgreSQL's lock names (Explicit Locking) as pg_locks spells them.
PG_LOCK_MODE = {
    "ACCESS EXCLUSIVE": "AccessExclusiveLock",
    "SHARE UPDATE EXCLUSIVE": "ShareUpdateExclusiveLock",
    "SHARE ROW EXCLUSIVE": "ShareRowExclusiveLock",
    "SHARE": "ShareLock",
}


def declared_mode(lock: str) -> str:
    return PG_LOCK_MODE[lock.removesuffix(" (brief)")]
