"""`schemagen plan` prints, offline, exactly the statements a real run executes."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from support import ROOT, cli

from generator import db, migrate
from generator.cli import Exit

MIGRATIONS = ROOT / "generated_migrations"
CHANGES = sorted(p.stem[:4] for p in (MIGRATIONS / "versions").glob("0*.py"))
# What a real run executes besides the change's own SQL: its checks and snapshots, the
# runtime's catalogue look-ups, transaction control, the version stamp (bound parameters
# online, literals in the plan), and the runner's session settings and retry savepoints
# (generator.guard: the lock_timeout it sets is the shorter of --lock-timeout and the spec's,
# which the plan shows).
NOT_DDL = (
    "SELECT",
    "WITH",
    "PRAGMA",
    "CREATE TEMP TABLE",
    'DROP TABLE IF EXISTS "schemagen_',
    "BEGIN",
    "COMMIT",
    "SET ",
    "SHOW ",
    "RESET ",
    "SAVEPOINT ",
    "ROLLBACK TO SAVEPOINT ",
    "UPDATE alembic_version SET version_num = version_num WHERE 0",
)


def _canonical(statement: str) -> str:
    """A statement with the items of its outer parentheses sorted. Alembic's SQLite batch mode
    walks sets of constraints and indexes, so the order of a rebuilt table's constraints, and
    of its index re-creations, varies from one process to the next; the statements do not."""
    head, sep, rest = statement.partition("(")
    if not sep or not statement.startswith("CREATE TABLE"):
        return statement
    items, depth, current = [], 0, ""
    body, tail = rest[: rest.rindex(")")], rest[rest.rindex(")") :]
    for ch in body:
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        current += ch
    items.append(current.strip())
    return head + "(" + ", ".join(sorted(items)) + tail


def _ddl(statements: list[str]) -> list[str]:
    out = []
    for statement in statements:
        text = " ".join(statement.split())
        if text.startswith(NOT_DDL) or "alembic_version" in text:
            continue
        out.append(text)
    return out


@pytest.mark.db
@pytest.mark.parametrize("revision", CHANGES)
def test_plan_is_what_a_real_run_executes(
    db_url: str, dialect: str, revision: str, monkeypatch: Any
) -> None:
    # The plan prints the online type change's statements by shadow columns; by shadow table
    # (the default) they are read from the catalogue at run time, and the plan names them
    # only (docs/online.md): this test compares the method whose statements it prints.
    monkeypatch.setenv("SCHEMAGEN_ONLINE_METHOD", "columns")
    url = sa.make_url(db_url)
    before = "base" if revision == "0000" else f"{int(revision) - 1:04d}"
    if before != "base":
        migrate.upgrade(MIGRATIONS, url, before)
    engine = db.make_engine(url)
    if revision == "0003":  # with rows: an online type change on PostgreSQL (empty: blocking)
        from marketdata import demo

        with engine.begin() as conn:
            demo.seed(conn, ticks=50, alerts=20)
    executed: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        executed.append(statement)

    with engine.connect() as conn:
        migrate.upgrade(MIGRATIONS, url, revision, connection=conn)
        upgrade_run = _ddl(executed)
        executed.clear()
        migrate.downgrade(MIGRATIONS, url, before, connection=conn)
        downgrade_run = _ddl(executed)
    engine.dispose()

    for direction, run in (("upgrade", upgrade_run), ("downgrade", downgrade_run)):
        planned = _ddl(
            migrate.statements(migrate.plan_sql(MIGRATIONS, dialect, direction, revision))
        )
        if dialect == "sqlite":
            planned = sorted(map(_canonical, planned))
            run = sorted(map(_canonical, run))
        if revision == "0003" and dialect == "postgresql":
            # online: the batches (and their progress rows) depend on the data; the DDL of
            # the application's tables is what the plan shows, in its order
            planned, run = _online_ddl(planned), _online_ddl(run)
        assert planned == run, direction
        assert planned, "a change with no SQL"


ONLINE_DDL = (
    'ALTER TABLE "',
    "CREATE OR REPLACE FUNCTION",
    "CREATE TRIGGER",
    "DROP TRIGGER",
    "DROP FUNCTION",
    "CREATE INDEX CONCURRENTLY",
    "ALTER INDEX",
)


def _online_ddl(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith(ONLINE_DDL)]


def test_plan_cli_annotates_locks_and_rewrites() -> None:
    # Each unit's SQL under its lock and whether it rewrites: the unit's Risk, which the
    # migration states where the unit starts (runtime.unit); nothing reads the SQL back.
    result = cli("plan", "0003", "--dialect", "postgresql", "--direction", "upgrade", root=ROOT)
    assert result.exit_code == Exit.OK, result.output
    # 0003 is online: its units are brief catalogue changes at expand and contract, nothing
    # rewrites the table; the phases are listed with their locks
    assert "REWRITES THE TABLE" not in result.stdout
    assert "(online_type_change)" in result.stdout
    assert "-- phase backfill [ROW EXCLUSIVE per batch]" in result.stdout
    out = cli("plan", "optimize_market_data_indexes", "--dialect", "postgresql", root=ROOT).stdout
    assert "-- lock: SHARE UPDATE EXCLUSIVE (concurrent_indexes)\n\nCOMMIT;" in out
    assert "-- ==== 0001_optimize_market_data_indexes downgrade on postgresql ====" in out


def test_plan_of_an_unknown_change_is_a_usage_error() -> None:
    result = cli("plan", "0999", root=ROOT)
    assert result.exit_code == Exit.USAGE
    assert "no change '0999'" in result.stderr
