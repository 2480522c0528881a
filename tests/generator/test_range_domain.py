"""PostgreSQL: change 0003's range checks are the columns' type, one domain per bound set
(float_within_1e8, state.Domain), its CHECK added NOT VALID. The online path adds its shadow
columns without rewriting either table (the domain loses its CHECK for the ADD COLUMN and gets
it back in the same transaction), the blocking path (`online: false`) converts with the
domain; out-of-range and non-finite values are refused at head; the downgrade gives the data
back and drops the domain once no column uses it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from ops_support import render_project, rows, storage
from support import ROOT, db_revision, dump
from test_online_type_change import _run
from test_resume import _run_killed

from generator import db, migrate
from marketdata import demo

MIGRATIONS = ROOT / "generated_migrations"
DOMAIN = "float_within_1e8"
pytestmark = [pytest.mark.db]

BAD = ["'NaN'", "'Infinity'", "'-Infinity'", "1e8", "-1e8", "1e300"]


@pytest.fixture
def pg_url(pg_database: str) -> str:
    from conftest import pg_url_for

    return pg_url_for(pg_database)


def _plain(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _seed(url: str, migrations: Path, revision: str) -> None:
    u = sa.make_url(url)
    migrate.upgrade(migrations, u, revision)
    engine = db.make_engine(u)
    with engine.begin() as conn:
        demo.seed(conn, ticks=1500, alerts=300)
    engine.dispose()


def _domain(url: str) -> list[tuple[Any, ...]]:
    """(constraint, validated, its definition) of the domain's CHECKs."""
    return rows(
        url,
        "SELECT c.conname::text, c.convalidated, pg_get_constraintdef(c.oid) FROM pg_constraint "
        "AS c JOIN pg_type AS t ON t.oid = c.contypid "
        f"WHERE t.typname = '{DOMAIN}' AND t.typnamespace = to_regnamespace(current_schema())",
    )


def _typed(url: str) -> list[tuple[Any, ...]]:
    """(table, column) of the columns of the domain's type."""
    return rows(
        url,
        "SELECT c.relname::text, a.attname::text FROM pg_attribute AS a "
        "JOIN pg_class AS c ON c.oid = a.attrelid "
        f"WHERE a.atttypid = to_regtype('{DOMAIN}') AND NOT a.attisdropped AND c.relkind = 'r' "
        "ORDER BY 1, 2",
    )


CONVERTED = [
    ("alert_logs", "threshold_value"),
    ("alert_logs", "trigger_value"),
    ("market_data", "ask"),
    ("market_data", "bid"),
    ("market_data", "high_price"),
    ("market_data", "low_price"),
    ("market_data", "open_price"),
    ("market_data", "price"),
]


def _assert_refused(url: str) -> None:
    """Every converted column refuses each bad value (an UPDATE and an INSERT), and takes the
    largest value its decimal held."""
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        for table, column in CONVERTED:
            for value in BAD:
                with pytest.raises(psycopg.errors.CheckViolation, match=f"{DOMAIN}_check"):
                    conn.execute(
                        f"UPDATE {table} SET {column} = {value} "
                        f"WHERE id = (SELECT min(id) FROM {table})"
                    )
            conn.execute(
                f"UPDATE {table} SET {column} = 99999999.9999 "
                f"WHERE id = (SELECT min(id) FROM {table})"
            )
        for value in BAD:
            with pytest.raises(psycopg.errors.CheckViolation, match=f"{DOMAIN}_check"):
                conn.execute(
                    "INSERT INTO market_data (instrument_id, timestamp, price) "
                    f"SELECT instrument_id, timestamp + interval '1 day', {value} "
                    "FROM market_data WHERE id = (SELECT min(id) FROM market_data)"
                )


@pytest.mark.parametrize("method", ["table", "columns"])
def test_online_upgrade_rewrites_nothing_refuses_bad_values_and_round_trips(
    pg_url: str, method: str, monkeypatch: Any
) -> None:
    monkeypatch.setenv("SCHEMAGEN_ONLINE_METHOD", method)
    _seed(pg_url, MIGRATIONS, "0002")
    original = dump(pg_url)
    files = {t: storage(pg_url, t) for t in ("market_data", "alert_logs")}
    migrate.upgrade(MIGRATIONS, sa.make_url(pg_url), "0003")
    assert db_revision(pg_url) == "0003"
    # online (a non-empty table): shadow columns of the domain added without a rewrite; or
    # a new table of the domain, filled by batches and swapped in
    if method == "columns":
        assert {t: storage(pg_url, t) for t in files} == files
    else:
        assert all(storage(pg_url, t) != f for t, f in files.items())
    assert _typed(pg_url) == CONVERTED
    ((name, validated, definition),) = _domain(pg_url)
    assert name == f"{DOMAIN}_check"
    assert not validated  # NOT VALID: see state.Domain (the backfill proved the rows)
    assert definition == (
        "CHECK (((VALUE > ('-100000000'::integer)::double precision) "
        "AND (VALUE < (100000000)::double precision))) NOT VALID"
    )
    # no table CHECK of the range left on PostgreSQL
    assert (
        rows(pg_url, "SELECT conname FROM pg_constraint WHERE right(conname, 6) = '_range'") == []
    )
    _assert_refused(pg_url)  # (it sets the first rows to the largest value on purpose)
    migrate.downgrade(MIGRATIONS, sa.make_url(pg_url), "0002")
    assert db_revision(pg_url) == "0002"
    assert {t: len(r) for t, r in dump(pg_url).items()} == {t: len(r) for t, r in original.items()}
    assert _typed(pg_url) == []
    assert rows(pg_url, f"SELECT to_regtype('{DOMAIN}')") == [(None,)]


def test_round_trip_keeps_every_value(pg_url: str) -> None:
    _seed(pg_url, MIGRATIONS, "0002")
    original = dump(pg_url)
    u = sa.make_url(pg_url)
    migrate.upgrade(MIGRATIONS, u, "0003")
    migrate.downgrade(MIGRATIONS, u, "0002")
    assert dump(pg_url) == original
    assert rows(pg_url, f"SELECT to_regtype('{DOMAIN}')") == [(None,)]
    # and again: the domain is created afresh, the second table's expand re-adds its CHECK
    migrate.upgrade(MIGRATIONS, u, "0003")
    assert len(_domain(pg_url)) == 1
    _assert_refused(pg_url)


def test_the_expand_holds_no_lock_on_the_other_table_using_the_domain(pg_url: str) -> None:
    """alert_logs' expand drops and re-adds the domain's CHECK while market_data already uses
    the domain: market_data's writers never wait, and never see the domain without its
    CHECK (one transaction)."""
    _seed(pg_url, MIGRATIONS, "0002")
    u = sa.make_url(pg_url)
    migrate.upgrade(MIGRATIONS, u, "0003")
    with psycopg.connect(_plain(pg_url)) as ddl, psycopg.connect(_plain(pg_url)) as app:
        ddl.execute(f'ALTER DOMAIN "{DOMAIN}" DROP CONSTRAINT IF EXISTS "{DOMAIN}_check"')
        ddl.execute("ALTER TABLE alert_logs ADD COLUMN probe_shadow " + DOMAIN)
        ddl.execute(
            f'ALTER DOMAIN "{DOMAIN}" ADD CONSTRAINT "{DOMAIN}_check" '
            "CHECK (VALUE > -100000000 AND VALUE < 100000000) NOT VALID"
        )
        held = ddl.execute(
            "SELECT c.relname::text, l.mode FROM pg_locks AS l JOIN pg_class AS c "
            "ON c.oid = l.relation WHERE l.pid = pg_backend_pid() AND c.relname = 'market_data'"
        ).fetchall()
        assert held == []
        # the open transaction's DROP is invisible to the application: still refused
        app.execute("SET lock_timeout = '2s'")
        with pytest.raises(psycopg.errors.CheckViolation):
            app.execute("UPDATE market_data SET price = 'NaN' WHERE id = 1")
        app.rollback()
        app.execute("UPDATE market_data SET price = 1 WHERE id = 1")  # no wait on the DDL
        app.commit()
        ddl.rollback()


def test_online_false_converts_with_the_domain_and_back(pg_url: str, tmp_path: Path) -> None:
    """The blocking path (alter_table.j2 with the domain created before the ALTER TABLE and
    dropped after the downgrade's once unused)."""
    root = tmp_path / "project"
    changes = root / "changes"
    changes.mkdir(parents=True)
    for name in ("0000_baseline.yaml", "0001_optimize_market_data_indexes.yaml"):
        shutil.copy(ROOT / "changes" / name, changes)
    (changes / "0002_convert.yaml").write_text(
        "id: convert\ndescription: x\nacknowledge: {SG102: x}\noperations:\n"
        "  - {op: alter_column_type, table: market_data, column: price, "
        'from: "decimal(12,4)", to: float, range_check: true, online: false}\n',
        encoding="utf-8",
    )
    _, out = render_project(root, tmp_path)
    _seed(pg_url, out, "0001")
    original = dump(pg_url)
    before = storage(pg_url, "market_data")
    migrate.upgrade(out, sa.make_url(pg_url), "0002")
    assert storage(pg_url, "market_data") != before  # the blocking ALTER rewrites
    assert _typed(pg_url) == [("market_data", "price")]
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        for value in BAD:
            with pytest.raises(psycopg.errors.CheckViolation, match=f"{DOMAIN}_check"):
                conn.execute(f"UPDATE market_data SET price = {value} WHERE id = 1")
    migrate.downgrade(out, sa.make_url(pg_url), "0001")
    assert dump(pg_url) == original
    assert rows(pg_url, f"SELECT to_regtype('{DOMAIN}')") == [(None,)]


def test_killed_between_dropping_and_adding_back_the_domains_check(pg_url: str) -> None:
    """alert_logs' expand is killed after dropping the domain's CHECK (for the ADD COLUMN),
    before adding it back: the transaction dies, the domain keeps its CHECK (market_data's
    columns stay guarded), and a re-run finishes."""
    _seed(pg_url, MIGRATIONS, "0002")
    killed = _run_killed(
        pg_url, f'ALTER DOMAIN "{DOMAIN}" ADD CONSTRAINT', 2, "upgrade", "--to", "0003"
    )
    assert killed.returncode == -9, (killed.stdout, killed.stderr)
    assert [r[0] for r in _domain(pg_url)] == [f"{DOMAIN}_check"]
    with (
        psycopg.connect(_plain(pg_url), autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation, match=f"{DOMAIN}_check"),
    ):
        conn.execute("UPDATE market_data SET price = 'NaN' WHERE id = 1")
    again = _run(pg_url, "upgrade", "--to", "0003")
    assert again.returncode == 0, again.stderr
    assert db_revision(pg_url) == "0003"
    assert _typed(pg_url) == CONVERTED
    _assert_refused(pg_url)
