"""Each phase-1 migration in isolation, with data: upgrade -> verify -> downgrade -> verify ->
upgrade, on SQLite and PostgreSQL, with every value identical after the round trip."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from support import ROOT, assert_prices_within, cli, counts, dump

from generator import db, migrate
from generator.cli import Exit
from marketdata import demo

MIGRATIONS = ROOT / "generated_migrations"
pytestmark = pytest.mark.db


def _verify_ok(url: str) -> None:
    result = cli("verify", "--url", url, root=ROOT)
    assert result.exit_code == Exit.OK, result.output


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004", "0005"])
def test_each_change_round_trips_with_data(db_url: str, revision: str) -> None:
    url = sa.make_url(db_url)
    previous = f"{int(revision) - 1:04d}"
    migrate.upgrade(MIGRATIONS, url, previous)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=600, alerts=200)
    engine.dispose()
    original = dump(db_url)

    migrate.upgrade(MIGRATIONS, url, revision)
    _verify_ok(db_url)
    upgraded = dump(db_url)
    assert counts(upgraded) == counts(original)
    assert_prices_within(original, upgraded, db_url)

    migrate.downgrade(MIGRATIONS, url, previous)
    _verify_ok(db_url)
    assert dump(db_url) == original  # exact, DECIMAL values included

    migrate.upgrade(MIGRATIONS, url, revision)
    _verify_ok(db_url)
    assert dump(db_url) == upgraded


def test_full_upgrade_with_foreign_keys_on_loses_no_row(db_url: str, dialect: str) -> None:
    """The connection comes in enforcing foreign keys, as the application's does; rebuilding
    alert_rules on SQLite would cascade-delete every alert log if enforcement stayed on."""
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, "0000")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=300, alerts=300)
    original = dump(db_url)
    with engine.connect() as conn:
        if dialect == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        conn.commit()
        migrate.upgrade(MIGRATIONS, url, "head", connection=conn)
        if dialect == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
    after = dump(db_url)
    assert counts(after) == counts(original)
    assert counts(after)["alert_logs"] == 300
    assert_prices_within(original, after, db_url)


def test_the_sqlite_hazard_is_real(tmp_path: Any) -> None:
    """What the SQLite path guards against: with enforcement on, dropping a parent table (as a
    batch recreation does) silently cascade-deletes every child row."""
    url = sa.make_url(f"sqlite:///{tmp_path}/hazard.db")
    migrate.upgrade(MIGRATIONS, url, "0000")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=10, alerts=50)
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        conn.exec_driver_sql("DROP TABLE alert_rules")
        assert conn.exec_driver_sql("SELECT count(*) FROM alert_logs").scalar() == 0
    engine.dispose()


def _fail_after(engine: sa.Engine, marker: str, action: str) -> None:
    """Once a statement containing ``marker`` has run, run ``action`` (SQL, or 'raise')."""
    done = []

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if marker in statement and not done:
            done.append(statement)
            if action == "raise":
                raise RuntimeError(f"injected failure after: {statement.splitlines()[0]}")
            cursor.execute(action)


# SQLite only: on PostgreSQL 0003 is online, with no whole-table drift check; its per-batch one
# is proven by test_online_type_change.py::test_a_drifting_shadow_fails_its_batch_naming_the_row
@pytest.mark.parametrize("dialect", ["sqlite"])
def test_a_tampered_value_fails_the_drift_check_and_rolls_back(db_url: str, dialect: str) -> None:
    from support import inspect_schema

    from generator.runtime import CheckFailed, current_revision

    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, "0002")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=200, alerts=20)
    original, schema = dump(db_url), inspect_schema(db_url)
    marker = (
        'ALTER TABLE "market_data"'
        if dialect == "postgresql"
        else "ALTER TABLE _alembic_tmp_market_data RENAME TO market_data"
    )
    _fail_after(engine, marker, "UPDATE market_data SET price = price + 0.0001 WHERE id = 42")
    with engine.connect() as conn:
        with pytest.raises(CheckFailed) as failure:
            migrate.upgrade(MIGRATIONS, url, "0003", connection=conn)
        assert current_revision(conn) == "0002"
    engine.dispose()
    message = str(failure.value)
    # one join for all six converted columns; the failing row shows each one's before / after
    assert "check market_data.drift: 1 failing row(s)" in message
    header, row = next(
        (lines[i + 1], lines[i + 2])
        for lines in [message.splitlines()]
        for i, line in enumerate(lines)
        if "check market_data.drift" in line
    )
    cells = dict(zip(header.split(" | "), row.split(" | "), strict=True))
    cells = {k.strip(): v.strip() for k, v in cells.items()}
    assert cells["id"] == "42"
    assert abs(float(cells["price_after"]) - float(cells["price_before"]) - 0.0001) < 1e-9
    assert cells["bid_before"] == cells["bid_after"] or cells["bid_before"] == "NULL"
    assert dump(db_url) == original
    assert inspect_schema(db_url) == schema


def _seeded_at(db_url: str, revision: str) -> sa.Engine:
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, revision)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=200, alerts=20)
    return engine


def _type_change_marker(dialect: str) -> str:
    if dialect == "postgresql":  # the expand of the shadow table (before its trigger)
        return 'ALTER TABLE "sg_up__market_data"'
    return "ALTER TABLE _alembic_tmp_market_data RENAME TO market_data"


def test_a_row_lost_during_the_change_fails_it(db_url: str, dialect: str) -> None:
    """A row that disappears between the snapshot and the data checks fails the row-count
    check (and the drift check: its value is gone); the change rolls back."""
    from support import inspect_schema

    from generator.runtime import CheckFailed, current_revision

    engine = _seeded_at(db_url, "0002")
    original, schema = dump(db_url), inspect_schema(db_url)
    _fail_after(engine, _type_change_marker(dialect), "DELETE FROM market_data WHERE id = 7")
    with engine.connect() as conn:
        with pytest.raises(CheckFailed) as failure:
            migrate.upgrade(MIGRATIONS, sa.make_url(db_url), "0003", connection=conn)
        assert current_revision(conn) == "0002"
    engine.dispose()
    assert "check row_counts: 1 failing row(s)" in str(failure.value)
    if dialect == "postgresql":
        # online: its phases commit on their own, so the change stops half-applied (the row
        # its own transaction deleted is counted all the same); its undo restores the schema
        migrate.downgrade(MIGRATIONS, sa.make_url(db_url), "0002")

        def by_name(found: dict[str, Any]) -> dict[str, Any]:  # columns move to the end
            return {t: {**v, "columns": sorted(v["columns"])} for t, v in found.items()}

        assert by_name(inspect_schema(db_url)) == by_name(schema)
        after = dump(db_url)["market_data"]
        assert len(after) == len(original["market_data"]) - 1
        assert all(r in original["market_data"] for r in after)  # values back exactly
        return
    assert dump(db_url) == original


def test_rows_written_during_the_change_do_not_fail_it(db_url: str, dialect: str) -> None:
    """An online change lets writers in: more rows after the DDL than in the snapshot is not
    a loss, and the change completes with the new row kept."""
    engine = _seeded_at(db_url, "0002")
    before = counts(dump(db_url))
    _fail_after(
        engine,
        _type_change_marker(dialect),
        "INSERT INTO market_data (id, instrument_id, timestamp, price, volume, created_at, "
        "updated_at) SELECT (SELECT max(id) + 1 FROM market_data), instrument_id, timestamp, "
        "price, volume, created_at, updated_at FROM market_data WHERE id = 7",
    )
    with engine.connect() as conn:
        migrate.upgrade(MIGRATIONS, sa.make_url(db_url), "0003", connection=conn)
    engine.dispose()
    after = counts(dump(db_url))
    assert after["market_data"] == before["market_data"] + 1
    assert {k: v for k, v in after.items() if k != "market_data"} == {
        k: v for k, v in before.items() if k != "market_data"
    }


def test_a_sqlite_migration_failing_half_way_changes_nothing(tmp_path: Any) -> None:
    from support import inspect_schema

    from generator.runtime import current_revision

    db_url = f"sqlite:///{tmp_path}/half.db"
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, "0003")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=200, alerts=100)
    original, schema = dump(db_url), inspect_schema(db_url)
    # 0004 rebuilds market_data, then alert_rules, then alert_logs: fail after the first.
    _fail_after(engine, "ALTER TABLE _alembic_tmp_market_data RENAME TO market_data", "raise")
    with engine.connect() as conn:
        with pytest.raises(RuntimeError, match="injected failure"):
            migrate.upgrade(MIGRATIONS, url, "0004", connection=conn)
        assert current_revision(conn) == "0003"
    engine.dispose()
    assert inspect_schema(db_url) == schema
    assert dump(db_url) == original
