"""Deterministic demo data (instruments, rules, ticks, alerts) with the decimal edge values.

Written with plain SQL against the columns every revision has, so it can fill a database at
the baseline as well as at head.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, bindparam, inspect, text

from marketdata.types import UTCDateTime

# The values a decimal(12,4) column can hold at its limits, and a few with 4 decimals.
EDGE_PRICES = [
    Decimal("99999999.9999"),
    Decimal("-99999999.9999"),
    Decimal("0.0001"),
    Decimal("-0.0001"),
    Decimal("0.0000"),
    Decimal("12345678.9012"),
    Decimal("0.1234"),
    Decimal("1.0005"),
    Decimal("4567.8901"),
]
START = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class DemoCounts:
    instruments: int
    rules: int
    ticks: int
    alerts: int


def _price(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(1_0000, 5000_0000)) / 10_000


def _value(v: Decimal | None) -> str | None:
    # Passed as text: every driver and both affinities convert it without a float detour.
    return None if v is None else str(v)


def seed(conn: Connection, ticks: int = 2000, alerts: int = 500, seed: int = 7) -> DemoCounts:
    """Insert demo rows (ids from 1) and return how many of each were written."""
    rng = random.Random(seed)
    symbols = ["AAPL", "MSFT", "EURUSD", "BTCUSD", "ES1", "VOD"]
    conn.execute(
        text(
            "INSERT INTO instruments (id, symbol, name, exchange, currency, is_active) "
            "VALUES (:id, :symbol, :name, :exchange, :currency, :active)"
        ),
        [
            {
                "id": i,
                "symbol": s,
                "name": f"{s} demo",
                "exchange": None if i == 3 else "XNAS",
                "currency": "USD",
                "active": i != 6,
            }
            for i, s in enumerate(symbols, start=1)
        ],
    )
    conditions = ["price_above", "price_below", "spread_above", "pct_change_above"]
    rules = [
        {
            "id": r,
            "instrument_id": (r - 1) % len(symbols) + 1,
            "name": f"rule {r}",
            "condition": conditions[r % len(conditions)],
            "threshold": _value(_price(rng)),
            "severity": ["info", "warning", "critical"][r % 3],
        }
        for r in range(1, 13)
    ]
    conn.execute(
        text(
            "INSERT INTO alert_rules (id, instrument_id, name, condition, threshold, severity) "
            "VALUES (:id, :instrument_id, :name, :condition, :threshold, :severity)"
        ),
        rules,
    )
    tick_rows = []
    for n in range(1, ticks + 1):
        price = EDGE_PRICES[n - 1] if n <= len(EDGE_PRICES) else _price(rng)
        spread = Decimal(rng.randrange(1, 500)) / 10_000
        full = n % 5 != 0
        tick_rows.append(
            {
                "id": n,
                "instrument_id": (n - 1) % len(symbols) + 1,
                "ts": START + timedelta(seconds=n),
                "price": _value(price),
                "bid": _value(max(price - spread, Decimal("-99999999.9999"))) if full else None,
                "ask": _value(min(price + spread, Decimal("99999999.9999"))) if full else None,
                "open": _value(price) if full else None,
                "high": _value(min(price + 2 * spread, Decimal("99999999.9999"))) if full else None,
                "low": _value(max(price - 2 * spread, Decimal("-99999999.9999"))) if full else None,
                "volume": rng.randrange(1, 10**9) if full else None,
            }
        )
    conn.execute(
        text(
            "INSERT INTO market_data (id, instrument_id, timestamp, price, bid, ask, open_price, "
            "high_price, low_price, volume) VALUES (:id, :instrument_id, :ts, :price, :bid, "
            ":ask, :open, :high, :low, :volume)"
        ).bindparams(bindparam("ts", type_=UTCDateTime())),
        tick_rows,
    )
    alert_rows = []
    for n in range(1, alerts + 1):
        rule = rules[(n - 1) % len(rules)]
        value = EDGE_PRICES[-n] if n <= len(EDGE_PRICES) else _price(rng)
        acknowledged = n % 3 == 0
        alert_rows.append(
            {
                "id": n,
                "rule_id": rule["id"],
                "instrument_id": rule["instrument_id"],
                "ts": START + timedelta(seconds=7 * n),
                "trigger": _value(value),
                "threshold": rule["threshold"],
                "status": "acknowledged" if acknowledged else ["triggered", "resolved"][n % 2],
                "severity": rule["severity"],
                "message": None if n % 4 == 0 else f"alert {n}",
                "ack_at": START + timedelta(seconds=7 * n + 60) if acknowledged else None,
                "ack_by": "ops" if acknowledged else None,
            }
        )
    conn.execute(
        text(
            "INSERT INTO alert_logs (id, rule_id, instrument_id, timestamp, trigger_value, "
            "threshold_value, status, severity, message, acknowledged_at, acknowledged_by) "
            "VALUES (:id, :rule_id, :instrument_id, :ts, :trigger, :threshold, :status, "
            ":severity, :message, :ack_at, :ack_by)"
        ).bindparams(
            # Stored exactly as the models store them (on SQLite: UTC text with microseconds).
            bindparam("ts", type_=UTCDateTime()),
            bindparam("ack_at", type_=UTCDateTime()),
        ),
        alert_rows,
    )
    return DemoCounts(len(symbols), len(rules), ticks, alerts)


@dataclass(frozen=True)
class TableSummary:
    rows: int
    indexes: list[str]
    types: dict[str, str]  # price columns and deleted_at
    on_delete: list[str]


def summary(conn: Connection) -> dict[str, TableSummary]:
    """Per table: row count, indexes, the types of the price columns, foreign-key actions."""
    insp = inspect(conn)
    out: dict[str, TableSummary] = {}
    for table in ("instruments", "alert_rules", "market_data", "alert_logs"):
        shown = (*PRICE_COLUMNS.get(table, ()), "deleted_at")
        out[table] = TableSummary(
            rows=conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one(),
            indexes=sorted(i["name"] for i in insp.get_indexes(table) if i["name"]),
            types={
                c["name"]: c["type"].compile(dialect=conn.dialect)
                for c in insp.get_columns(table)
                if c["name"] in shown
            },
            on_delete=sorted(
                {
                    (f.get("options") or {}).get("ondelete", "NO ACTION")
                    for f in insp.get_foreign_keys(table)
                }
            ),
        )
    return out


PRICE_COLUMNS = {
    "market_data": ("price", "bid", "ask", "open_price", "high_price", "low_price"),
    "alert_logs": ("trigger_value", "threshold_value"),
}


def price_values(conn: Connection) -> dict[tuple[str, int, str], Decimal | None]:
    values: dict[tuple[str, int, str], Decimal | None] = {}
    for table, cols in PRICE_COLUMNS.items():
        quoted = ", ".join(f'"{c}"' for c in cols)
        for row in conn.execute(text(f'SELECT id, {quoted} FROM "{table}"')):
            for col, v in zip(cols, row[1:], strict=True):
                values[(table, row[0], col)] = None if v is None else Decimal(str(v))
    return values


def main() -> None:
    """Seed a baseline database, migrate it to head, verify, and print before and after."""
    import argparse
    from pathlib import Path

    from generator import db, migrate

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--url", default="sqlite:///demo.db")
    parser.add_argument("--ticks", type=int, default=5000)
    parser.add_argument("--alerts", type=int, default=2000)
    args = parser.parse_args()
    migrations = Path(__file__).resolve().parents[1] / "generated_migrations"
    url = db.resolve_url(args.url)
    migrate.upgrade(migrations, url, "0000")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        counts = seed(conn, ticks=args.ticks, alerts=args.alerts)
    with engine.connect() as conn:
        before, before_values = summary(conn), price_values(conn)
    print(f"\nseeded {counts}")
    migrate.upgrade(migrations, url, "head")
    with engine.connect() as conn:
        after, after_values = summary(conn), price_values(conn)
    engine.dispose()
    pairs = [(before_values[k], after_values[k]) for k in before_values]
    drift = max(
        (abs(x - y) for x, y in pairs if x is not None and y is not None), default=Decimal(0)
    )
    print("\nbefore (0000) -> after (head)")
    for table, b in before.items():
        a = after[table]
        print(f"\n{table}: rows {b.rows} -> {a.rows}")
        print(f"  indexes ({len(b.indexes)} -> {len(a.indexes)}): {', '.join(a.indexes)}")
        for col, t in a.types.items():
            print(f"  {col}: {b.types.get(col, '(none)')} -> {t}")
        if a.on_delete:
            print(f"  foreign keys ON DELETE: {', '.join(b.on_delete)} -> {', '.join(a.on_delete)}")
    lost = sum(before[t].rows - after[t].rows for t in before)
    print(f"\nrows lost: {lost}; worst price drift: {drift} (limit 0.0001)")
    if lost or drift >= Decimal("0.0001"):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
