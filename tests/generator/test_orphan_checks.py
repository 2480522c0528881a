"""The orphan checks (a row whose foreign-key column points at no parent) on PostgreSQL scan
a table only where no validated, enforced foreign key already proves there is none: under a
change's lock, the catalogue answers instead of a full scan. Where the key is dropped, NOT
VALID or has its triggers disabled, the scan runs and names the orphans."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ROOT, execute, seed_demo

from generator import runtime

pytestmark = pytest.mark.db
POST_0004 = (
    ROOT
    / "generated_migrations"
    / "validation"
    / "postgresql"
    / "0004_add_soft_delete_safety.post.json"
)
CHECK = "market_data.instrument_id.orphans"
FK = "fk_market_data_instrument_id_instruments"
ORPHAN = (
    "INSERT INTO market_data (id, instrument_id, timestamp, price) "
    "VALUES (990001, 4242, CURRENT_TIMESTAMP, 1)"
)


def _check(name: str) -> runtime.Check:
    (check,) = [c for c in runtime.load_checks(POST_0004) if c.name == name]
    return check


def _run(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def test_a_validated_key_spares_the_scan(pg_database: str) -> None:
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    seed_demo(url, "0004")
    plan = "\n".join(
        str(r[0]) for r in _run(url, "EXPLAIN (ANALYZE, COSTS OFF) " + _check(CHECK).sql)
    )
    assert "One-Time Filter" in plan, plan
    scan = next(line for line in plan.splitlines() if "Scan on market_data" in line)
    assert "never executed" in scan, plan
    assert _run(url, _check(CHECK).sql) == []


@pytest.mark.parametrize(
    "unenforce",
    [
        f"ALTER TABLE market_data DROP CONSTRAINT {FK}",
        "ALTER TABLE market_data DISABLE TRIGGER ALL",
        f"ALTER TABLE market_data DROP CONSTRAINT {FK}; "
        f"ALTER TABLE market_data ADD CONSTRAINT {FK} FOREIGN KEY (instrument_id) "
        "REFERENCES instruments (id) ON DELETE RESTRICT NOT VALID",
    ],
    ids=["dropped", "triggers-disabled", "not-valid"],
)
def test_an_unenforced_key_is_scanned_and_the_orphan_named(
    pg_database: str, unenforce: str
) -> None:
    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    seed_demo(url, "0004")
    if "NOT VALID" in unenforce:
        drop, add = unenforce.split("; ")
        execute(url, drop, ORPHAN, add)
    else:
        execute(url, unenforce, ORPHAN)
    assert _run(url, _check(CHECK).sql) == [(4242,)]


def test_sqlite_always_scans(tmp_path: Path) -> None:
    """SQLite runs migrations with enforcement off: its check has no catalogue shortcut."""
    sqlite_file = POST_0004.parent.parent / "sqlite" / POST_0004.name
    (check,) = [c for c in runtime.load_checks(sqlite_file) if c.name == CHECK]
    assert "pg_constraint" not in check.sql
    url = f"sqlite:///{tmp_path / 'x.db'}"
    seed_demo(url, "0004")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        conn.exec_driver_sql(ORPHAN)
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.exec_driver_sql(check.sql)] == [(4242,)]
    engine.dispose()
