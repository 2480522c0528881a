"""The baseline migration builds exactly the SCHEMA.md baseline, and downgrades to nothing.

The expectation below is written from ../shared/design/SCHEMA.md by hand, not derived from the
generator, so a generator bug cannot hide behind its own output.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from support import ROOT, inspect_schema

from generator import migrate

MIGRATIONS = ROOT / "generated_migrations"

# portable type -> (PostgreSQL, SQLite) as SQLAlchemy compiles the reflected type
TYPES = {
    "integer": ("INTEGER", "INTEGER"),
    "bigint": ("BIGINT", "BIGINT"),
    "pk_bigint": ("BIGINT", "INTEGER"),
    "decimal": ("NUMERIC(12, 4)", "NUMERIC(12, 4)"),
    "timestamptz": ("TIMESTAMP WITH TIME ZONE", "DATETIME"),
    "boolean": ("BOOLEAN", "BOOLEAN"),
    "text": ("TEXT", "TEXT"),
}
NOW = "CURRENT_TIMESTAMP"
STAMPS = [("created_at", "timestamptz", False, NOW), ("updated_at", "timestamptz", False, NOW)]

BASELINE = {
    "instruments": {
        "columns": [
            ("id", "integer", False, None),
            ("symbol", "varchar(32)", False, None),
            ("name", "varchar(128)", False, None),
            ("exchange", "varchar(32)", True, None),
            ("currency", "varchar(3)", False, "USD"),
            ("is_active", "boolean", False, True),
            *STAMPS,
        ],
        "unique": [("uq_instruments_symbol", ("symbol",))],
        "indexes": [],
        "foreign_keys": [],
    },
    "alert_rules": {
        "columns": [
            ("id", "integer", False, None),
            ("instrument_id", "integer", False, None),
            ("name", "varchar(128)", False, None),
            ("condition", "varchar(32)", False, None),
            ("threshold", "decimal", False, None),
            ("severity", "varchar(16)", False, "warning"),
            ("is_active", "boolean", False, True),
            *STAMPS,
        ],
        "unique": [],
        "indexes": [("ix_alert_rules_instrument", ("instrument_id",))],
        "foreign_keys": [
            ("fk_alert_rules_instrument_id_instruments", ("instrument_id",), "instruments")
        ],
    },
    "market_data": {
        "columns": [
            ("id", "pk_bigint", False, None),
            ("instrument_id", "integer", False, None),
            ("timestamp", "timestamptz", False, None),
            ("price", "decimal", False, None),
            ("bid", "decimal", True, None),
            ("ask", "decimal", True, None),
            ("open_price", "decimal", True, None),
            ("high_price", "decimal", True, None),
            ("low_price", "decimal", True, None),
            ("volume", "bigint", True, None),
            *STAMPS,
        ],
        "unique": [],
        "indexes": [
            ("ix_market_data_timestamp", ("timestamp",)),
            ("ix_market_data_instrument", ("instrument_id",)),
            ("ix_market_data_price", ("price",)),
            ("ix_market_data_latest", ("instrument_id", "timestamp", "price", "bid", "ask")),
            ("ix_market_data_timestamp_instrument", ("timestamp", "instrument_id")),
        ],
        "foreign_keys": [
            ("fk_market_data_instrument_id_instruments", ("instrument_id",), "instruments")
        ],
    },
    "alert_logs": {
        "columns": [
            ("id", "pk_bigint", False, None),
            ("rule_id", "integer", False, None),
            ("instrument_id", "integer", False, None),
            ("timestamp", "timestamptz", False, None),
            ("trigger_value", "decimal", False, None),
            ("threshold_value", "decimal", False, None),
            ("status", "varchar(16)", False, "triggered"),
            ("severity", "varchar(16)", False, None),
            ("message", "text", True, None),
            ("acknowledged_at", "timestamptz", True, None),
            ("acknowledged_by", "varchar(64)", True, None),
            *STAMPS,
        ],
        "unique": [],
        "indexes": [
            ("ix_alert_logs_timestamp", ("timestamp",)),
            ("ix_alert_logs_rule_timestamp", ("rule_id", "timestamp")),
            ("ix_alert_logs_instrument", ("instrument_id",)),
            ("ix_alert_logs_status", ("status",)),
            ("ix_alert_logs_rule", ("rule_id",)),
            ("ix_alert_logs_severity", ("severity",)),
            ("ix_alert_logs_instrument_timestamp", ("instrument_id", "timestamp")),
            ("ix_alert_logs_status_timestamp", ("status", "timestamp")),
            ("ix_alert_logs_trigger_value", ("trigger_value",)),
            ("ix_alert_logs_acknowledged_at", ("acknowledged_at",)),
            ("ix_alert_logs_created_at", ("created_at",)),
        ],
        "foreign_keys": [
            ("fk_alert_logs_rule_id_alert_rules", ("rule_id",), "alert_rules"),
            ("fk_alert_logs_instrument_id_instruments", ("instrument_id",), "instruments"),
        ],
    },
}


def _type(portable: str, dialect: str) -> str:
    if portable.startswith("varchar"):
        return portable.upper()
    pg, lite = TYPES[portable]
    return pg if dialect == "postgresql" else lite


def expected_baseline(dialect: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for table, spec in BASELINE.items():
        out[table] = {
            "columns": [
                (name, _type(t, dialect), nullable, default)
                for name, t, nullable, default in spec["columns"]
            ],
            "primary_key": ("id",),
            "indexes": sorted((name, cols, False) for name, cols in spec["indexes"]),
            "unique": sorted(
                (name if dialect == "postgresql" else None, cols) for name, cols in spec["unique"]
            ),
            "foreign_keys": sorted(
                (name, cols, parent, ("id",), "CASCADE")
                for name, cols, parent in spec["foreign_keys"]
            ),
            "checks": [],  # the baseline declares no CHECK
        }
    return out


@pytest.mark.db
def test_baseline_builds_schema_md_exactly_and_downgrades_to_empty(
    db_url: str, dialect: str
) -> None:
    url = sa.make_url(db_url)
    migrate.upgrade(MIGRATIONS, url, "0000")
    assert inspect_schema(db_url, by_name=False) == expected_baseline(dialect)
    migrate.downgrade(MIGRATIONS, url, "base")
    assert inspect_schema(db_url) == {}


def test_expectation_counts_match_schema_md() -> None:
    assert [len(t["indexes"]) for t in BASELINE.values()] == [0, 1, 5, 11]
    assert sum(len(t["foreign_keys"]) for t in BASELINE.values()) == 4
