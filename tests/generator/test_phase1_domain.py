"""After 0003 the float price columns keep the domain decimal(12,4) enforced for free: a table
CHECK on SQLite, the columns' type, domain float_within_1e8, on PostgreSQL (state.Domain)."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
from support import ROOT

from generator import db, migrate

MIGRATIONS = ROOT / "generated_migrations"
pytestmark = pytest.mark.db

BAD = [math.inf, -math.inf, 1e8, -1e8, 1e300]


@pytest.fixture
def at_0003(db_url: str) -> sa.Engine:
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, "0003")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO instruments (id, symbol, name) VALUES (1, 'AAA', 'A')")
    yield engine
    engine.dispose()


def _insert(engine: sa.Engine, price: float, bid: float | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO market_data (instrument_id, timestamp, price, bid) "
                "VALUES (1, CURRENT_TIMESTAMP, :price, :bid)"
            ),
            {"price": price, "bid": bid},
        )


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM market_data").scalar_one())


@pytest.mark.parametrize("value", BAD, ids=str)
def test_out_of_range_and_infinite_values_are_refused(at_0003: sa.Engine, value: float) -> None:
    with pytest.raises(
        sa.exc.IntegrityError, match=r"ck_market_data_price_range|float_within_1e8_check"
    ):
        _insert(at_0003, value)
    with pytest.raises(
        sa.exc.IntegrityError, match=r"ck_market_data_bid_range|float_within_1e8_check"
    ):
        _insert(at_0003, 1.0, value)
    assert _count(at_0003) == 0


def test_the_largest_decimal_values_are_accepted(at_0003: sa.Engine) -> None:
    for value in (99999999.9999, -99999999.9999, 0.0001, 0.0):
        _insert(at_0003, value, value)
    assert _count(at_0003) == 4


def test_nan(at_0003: sa.Engine, dialect: str) -> None:
    if dialect == "postgresql":
        # NaN sorts above every number in PostgreSQL, so `price < 1e8` is false: refused.
        with pytest.raises(sa.exc.IntegrityError, match="float_within_1e8_check"):
            _insert(at_0003, math.nan)
        with pytest.raises(sa.exc.IntegrityError, match="float_within_1e8_check"):
            _insert(at_0003, 1.0, math.nan)
        assert _count(at_0003) == 0
    else:
        # SQLite's driver binds NaN as NULL: a NOT NULL column refuses it, a nullable column
        # stores NULL (no NaN can ever be stored).
        with pytest.raises(sa.exc.IntegrityError, match="NOT NULL"):
            _insert(at_0003, math.nan)
        _insert(at_0003, 1.0, math.nan)
        with at_0003.connect() as conn:
            assert conn.exec_driver_sql("SELECT bid FROM market_data").scalar() is None


def test_downgrade_refuses_values_that_no_longer_fit_and_names_them(
    at_0003: sa.Engine, db_url: str, dialect: str
) -> None:
    from support import ROOT as root
    from support import cli

    from generator.cli import Exit

    _insert(at_0003, 12.5)
    # A DBA drops the range check and a value outside decimal(12,4) gets in.
    with at_0003.begin() as conn:
        if dialect == "postgresql":
            # the range check is the column's domain's (state.Domain)
            conn.exec_driver_sql(
                "ALTER DOMAIN float_within_1e8 DROP CONSTRAINT float_within_1e8_check"
            )
        else:
            conn.exec_driver_sql("PRAGMA writable_schema=ON")
            conn.exec_driver_sql(
                "UPDATE sqlite_master SET sql = replace(sql, "
                "'CONSTRAINT ck_market_data_price_range CHECK', 'CHECK') "
                "WHERE name = 'market_data'"
            )
    at_0003.dispose()
    with at_0003.begin() as conn:
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA ignore_check_constraints=ON")
        conn.exec_driver_sql("UPDATE market_data SET price = 123456789.5 WHERE id = 1")
    result = cli("downgrade", "--to", "0002", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED
    assert "check market_data.price.fits_decimal_12_4: 1 failing row(s)" in result.stderr
    assert "123456789.5" in result.stderr
    with at_0003.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"
        assert conn.exec_driver_sql("SELECT price FROM market_data").scalar() == 123456789.5


def test_the_fits_check_range_test_changes_no_answer(at_0003: sa.Engine, dialect: str) -> None:
    """The rendered fits check tests a cheap float range first and the exact rounding only
    outside it; it must flag exactly the rows the exact test alone flags, at the boundary too
    (99999999.99995 is inside the range CHECK but rounds to 100000000.0000)."""
    import random

    from generator.runtime import load_checks, validation_file

    rng = random.Random(3)
    edge = [99999999.9999, 99999999.99994, 99999999.99995, 99999999.99996, 99999999.9999999]
    prices = [*edge, *(-p for p in edge), 12.5, -0.00005, 0.0]
    prices += [
        rng.uniform(99999999.999, 99999999.99999999) * rng.choice([1, -1]) for _ in range(300)
    ]
    prices += [rng.uniform(-1e8, 1e8) for _ in range(300)]
    with at_0003.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO market_data (instrument_id, timestamp, price) "
                "VALUES (1, CURRENT_TIMESTAMP, :price)"
            ),
            [{"price": p} for p in prices],
        )
    path = validation_file(
        MIGRATIONS / "versions" / "x.py", dialect, "0003_convert_decimal_to_float", "post"
    )
    (check,) = [c for c in load_checks(path) if c.name == "market_data.price.fits_decimal_12_4"]
    assert "NOT (" in check.sql  # the range test is there
    exact = "SELECT id, price FROM market_data WHERE " + (
        "abs(round(price::numeric, 4)) >= 100000000 OR price::numeric = 'NaN'"
        if dialect == "postgresql"
        else "abs(round(price, 4)) >= 100000000"
    )
    with at_0003.connect() as conn:
        flagged = sorted(conn.exec_driver_sql(check.sql.rstrip().rstrip(";")).all())
        expected = sorted(conn.exec_driver_sql(exact).all())
    assert flagged == expected
    assert len(expected) >= 10  # the boundary is exercised: some values do not fit
    assert 0 < len(expected) < len(prices)
