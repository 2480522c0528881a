"""A change that fails inside its transaction says so: which change, that its transaction was
rolled back and nothing of it was kept, and what to do. Tried with failures that reach
production: a full disk (SQLite: its page limit reached in the middle of 0003's table
rebuild) and a lock another session keeps past the bounded retries (PostgreSQL, 0003's
rewrite). Every row
is kept, and the same command succeeds once the cause is gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import ROOT, cli, dump, seed_demo

from generator.cli import Exit

MIGRATIONS = ROOT / "generated_migrations"


@pytest.fixture
def sqlite_disk_limit() -> Iterator[dict[str, int]]:
    """Every SQLite connection opened meanwhile may grow its file to ``limit["pages"]``:
    beyond that SQLite answers SQLITE_FULL ("database or disk is full"), as on a full disk."""
    limit: dict[str, int] = {}

    def cap(dbapi_connection: Any, record: Any) -> None:
        if "pages" in limit and type(dbapi_connection).__module__.startswith("sqlite3"):
            dbapi_connection.execute(f"PRAGMA max_page_count = {limit['pages']}")

    sa.event.listen(sa.pool.Pool, "connect", cap)
    try:
        yield limit
    finally:
        sa.event.remove(sa.pool.Pool, "connect", cap)


def test_a_change_that_fails_inside_its_transaction_names_itself(
    db_url: str, dialect: str, sqlite_disk_limit: dict[str, int]
) -> None:
    url = sa.make_url(db_url)
    seed_demo(db_url, "0002", ticks=3000, alerts=1000)
    before = dump(db_url)
    options: tuple[str, ...] = ()
    holder = sa.create_engine(db_url).connect()
    if dialect == "sqlite":
        pages = Path(url.database or "").stat().st_size // 4096
        sqlite_disk_limit["pages"] = pages + 4  # no room for a second copy of market_data
    else:
        # reads go on (the snapshot), the rewrite's ACCESS EXCLUSIVE waits: past its bound
        holder.exec_driver_sql("LOCK TABLE market_data IN SHARE MODE")
        options = ("--lock-timeout", "50ms", "--lock-retries", "1")
    try:
        result = cli("upgrade", "--url", db_url, *options, root=ROOT)
    finally:
        holder.rollback()
        holder.close()
        holder.engine.dispose()
    assert result.exit_code == Exit.DATABASE, result.output
    assert "disk is full" in result.output or "lock" in result.output
    if dialect == "sqlite":
        assert "0003_convert_decimal_to_float: its upgrade failed in its " in result.output
        assert "its transaction was rolled back and nothing of it was kept" in result.output
    else:
        # 0003 runs online on PostgreSQL: its expand phase is the first to want the lock
        assert (
            "0003_convert_decimal_to_float: expand of market_data could not get its lock"
            in result.output
        )
        assert "to continue: schemagen upgrade" in result.output
    assert dump(db_url) == before
    sqlite_disk_limit.clear()  # the disk has room again
    again = cli("upgrade", "--url", db_url, root=ROOT)
    assert again.exit_code == Exit.OK, again.output
