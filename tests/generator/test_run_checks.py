"""runtime.run_checks sends a file's checks in one round trip on PostgreSQL (psycopg): the same
results as one statement each, in order, with the SQLAlchemy cursor events firing (the lock
guard listens to them), and a check that fails to run fails as it would alone."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from generator import runtime

CHECKS = [
    runtime.Check("none", "SELECT 1 AS x WHERE 1 = 0"),
    runtime.Check("percent", "SELECT 'a%b' AS z, 2 AS y"),
    runtime.Check("rows", "SELECT 7 AS v UNION ALL SELECT 8 ORDER BY v;"),
]


@pytest.mark.db
def test_one_round_trip_gives_what_a_statement_each_gives(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    seen: list[str] = []
    try:
        with engine.begin() as conn:
            sa.event.listen(conn, "before_cursor_execute", lambda *a: seen.append(a[2]))
            batch = runtime.run_checks(conn, CHECKS)
            alone = runtime.run_checks_one_by_one(conn, CHECKS)
        got = [(r.check.name, r.columns, r.rows) for r in batch]
        assert got == [(r.check.name, r.columns, r.rows) for r in alone]
        assert got[1][2] == [("a%b", 2)] and got[2][2] == [(7,), (8,)]
        batched = engine.dialect.driver == "psycopg"
        assert len(seen) == (1 + len(CHECKS) if batched else 2 * len(CHECKS))
        with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="nope"):
            runtime.run_checks(conn, [CHECKS[0], runtime.Check("bad", "SELECT nope")])
    finally:
        engine.dispose()
