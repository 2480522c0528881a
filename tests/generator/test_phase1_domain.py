"""After 0003 the float price columns keep the domain decimal(12,4) enforced for free."""

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
    with pytest.raises(sa.exc.IntegrityError, match=r"ck_market_data_price_range|CHECK"):
        _insert(at_0003, value)
    with pytest.raises(sa.exc.IntegrityError, match=r"ck_market_data_bid_range|CHECK"):
        _insert(at_0003, 1.0, value)
    assert _count(at_0003) == 0


def test_the_largest_decimal_values_are_accepted(at_0003: sa.Engine) -> None:
    for value in (99999999.9999, -99999999.9999, 0.0001, 0.0):
        _insert(at_0003, value, value)
    assert _count(at_0003) == 4


def test_nan(at_0003: sa.Engine, dialect: str) -> None:
    if dialect == "postgresql":
        # NaN sorts above every number in PostgreSQL, so `price < 1e8` is false: refused.
        with pytest.raises(sa.exc.IntegrityError, match="ck_market_data_price_range"):
            _insert(at_0003, math.nan)
        with pytest.raises(sa.exc.IntegrityError, match="ck_market_data_bid_range"):
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
