"""A range check's domain (PostgreSQL, state.Domain) lives as long as a column of its type:
dropped with the last one however it goes (drop_table, drop_column with keep_data: false, a
purge of the archives that kept it, alter_column_type away from it), kept while an archive
(a table or a column set aside) holds it, and created again by the derived downgrade that
brings such a column back (generator/domains.py). Run upgrade -> downgrade -> upgrade on both
dialects: on PostgreSQL ``pg_type`` is read at each step; on both, the values come back
exactly and the range is enforced again (SQLite: the table CHECK)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from ops_support import render_project, rows, storage
from support import execute, inspect_schema

from generator import lint, migrate, plan
from generator.load import Change
from generator.ops.drop_table import DropTableStep
from generator.runtime import CheckFailed

DOMAIN = "float_within_1e8"

BASE = """id: base
description: Quotes and trades with decimal prices.
operations:
  - op: create_table
    name: quotes
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: bid, type: "decimal(12,4)", nullable: true}
      - {name: ask, type: "decimal(12,4)", nullable: false, default: 0}
  - op: create_table
    name: trades
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: price, type: "decimal(12,4)", nullable: true}
"""

FLOATS = """id: floats
description: The prices as floats in the decimal's range.
operations:
  - {op: alter_column_type, table: quotes, column: bid, from: "decimal(12,4)", to: float,
     range_check: true, online: false}
  - {op: alter_column_type, table: quotes, column: ask, from: "decimal(12,4)", to: float,
     range_check: true, online: false}
  - {op: alter_column_type, table: trades, column: price, from: "decimal(12,4)", to: float,
     range_check: true, online: false}
"""

# the change that takes every column of the domain away, and whether the domain stays after it
GONE = {
    "archived": (
        """id: gone
description: Every price column dropped, its values kept aside.
operations:
  - {op: drop_column, table: quotes, column: bid}
  - {op: drop_column, table: quotes, column: ask}
  - {op: drop_table, table: trades}
""",
        True,
    ),
    "destroyed": (
        """id: gone
description: Every price column dropped with its values.
acknowledge:
  SG111: test data
  SG113: test data
operations:
  - {op: drop_column, table: quotes, column: bid, keep_data: false}
  - {op: drop_column, table: quotes, column: ask, keep_data: false}
  - {op: drop_table, table: trades, keep_data: false}
""",
        False,
    ),
    "converted": (
        """id: gone
description: Every price column converted to a wider decimal.
acknowledge:
  SG103: the values are decimals of scale 4
operations:
  - {op: alter_column_type, table: quotes, column: bid, from: float, to: "decimal(14,4)"}
  - {op: alter_column_type, table: quotes, column: ask, from: float, to: "decimal(14,4)"}
  - {op: alter_column_type, table: trades, column: price, from: float, to: "decimal(14,4)"}
""",
        False,
    ),
}

PURGE = """id: purge
description: Destroys what 0002 kept.
acknowledge:
  SG112: test data
operations:
  - {op: purge, change: gone}
"""

VALUES = [(1, 12.5, -99999999.5), (2, None, 0.0001), (3, 99999999.9999, 7.0)]


def _project(tmp_path: Path, case: str) -> Path:
    changes = tmp_path / "project" / "changes"
    changes.mkdir(parents=True)
    specs = [BASE, FLOATS, GONE[case][0]] + ([PURGE] if case == "archived" else [])
    for number, text in enumerate(specs):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{number:04d}_{name}.yaml").write_text(text)
    _, out_dir = render_project(tmp_path / "project", tmp_path)
    return out_dir


def _has_domain(url: str) -> bool:
    found = rows(
        url,
        "SELECT t.typname::text FROM pg_type AS t WHERE t.typtype = 'd' AND t.typname = "
        f"'{DOMAIN}' AND t.typnamespace = to_regnamespace(current_schema())",
    )
    return bool(found)


def _values(url: str) -> list[tuple[object, ...]]:
    quotes = rows(url, "SELECT id, bid, ask FROM quotes ORDER BY id")
    trades = rows(url, "SELECT id, price FROM trades ORDER BY id")
    return [*quotes, *trades]


def _refused(url: str, statement: str) -> bool:
    try:
        execute(url, statement)
    except sa.exc.DBAPIError:
        return True
    return False


@pytest.mark.db
@pytest.mark.parametrize("case", sorted(GONE))
def test_the_domain_goes_with_its_last_column_and_comes_back_with_it(
    db_url: str, dialect: str, tmp_path: Path, case: str
) -> None:
    out_dir = _project(tmp_path, case)
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0001")
    execute(
        db_url,
        *(
            f"INSERT INTO quotes (id, bid, ask) VALUES ({i}, {b or 'NULL'}, {a})"
            for i, b, a in VALUES
        ),
        *(f"INSERT INTO trades (id, price) VALUES ({i}, {a})" for i, _, a in VALUES),
    )
    before = _values(db_url)
    pg = dialect == "postgresql"
    stays = GONE[case][1]
    for _ in range(2):  # upgrade -> downgrade -> upgrade -> downgrade
        migrate.upgrade(out_dir, url, "0002")
        if pg:
            assert _has_domain(db_url) is stays
        if case == "converted":  # a value out of the range: the way back lists it first
            execute(db_url, "INSERT INTO trades (id, price) VALUES (9, 5000000000)")
            schema = inspect_schema(db_url)
            with pytest.raises(CheckFailed, match=r"ck_trades_price_range\.failing_rows"):
                migrate.downgrade(out_dir, url, "0001")
            assert inspect_schema(db_url) == schema
            execute(db_url, "DELETE FROM trades WHERE id = 9")
        migrate.downgrade(out_dir, url, "0001")
        if pg:
            assert _has_domain(db_url)
        if case != "destroyed":  # the archived or converted values come back exactly
            assert _values(db_url) == before
        # the range holds again on the restored columns (PostgreSQL: the domain's CHECK)
        assert _refused(db_url, "INSERT INTO quotes (id, bid, ask) VALUES (9, 1e8, 0)")
        assert _refused(db_url, "INSERT INTO trades (id, price) VALUES (9, -1e8)")
    if case == "archived":  # the purge destroys the last columns of the domain: it goes
        migrate.upgrade(out_dir, url, "head")
        if pg:
            assert not _has_domain(db_url)


UNCHECKED = """id: unchecked
description: The prices without their range checks.
operations:
  - {op: drop_check, table: quotes, name: ck_quotes_bid_range}
  - {op: drop_check, table: quotes, name: ck_quotes_ask_range}
  - {op: drop_check, table: trades, name: ck_trades_price_range,
     expression: "price > -100000000 AND price < 100000000"}
"""


def _unchecked(tmp_path: Path) -> tuple[list[Change], Path]:
    changes = tmp_path / "project" / "changes"
    changes.mkdir(parents=True)
    for number, text in enumerate((BASE, FLOATS, UNCHECKED)):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{number:04d}_{name}.yaml").write_text(text)
    return render_project(tmp_path / "project", tmp_path)


def test_drop_check_of_a_range_check_releases_the_domain(tmp_path: Path) -> None:
    changes, _ = _unchecked(tmp_path)
    change = changes[-1]
    after = change.after
    assert after.domains() == {}
    assert [c.name for c in after.get("quotes").checks] == []
    assert {c.name: c.domain for c in after.get("quotes").columns} == {
        "id": None,
        "bid": None,
        "ask": None,
    }
    assert change.steps[0].describe() == (
        "drop check `ck_quotes_bid_range` on `quotes` (PostgreSQL: `quotes.bid` from domain "
        "`float_within_1e8` to double precision)"
    )
    assert {(f.rule.id, f.blocks) for f in lint.lint_change(change)} == {("SG120", False)}
    # the derived downgrade gives back the very schema (the columns of the domain, the checks)
    schema = after
    for step in change.inverse_steps:
        schema = step.apply(schema)
    for name in ("quotes", "trades"):  # the checks come back in the reverse order
        back, was = schema.get(name), change.before.get(name)
        assert back.columns == was.columns and set(back.checks) == set(was.checks)
    pg = [s.risk("postgresql") for s in change.steps]
    assert [r.rewrites for r in pg] == [False] * 3
    assert [s.risk("postgresql").rewrites for s in change.inverse_steps] == [True] * 3


@pytest.mark.db
def test_drop_check_of_a_range_check_up_down_up(db_url: str, dialect: str, tmp_path: Path) -> None:
    _, out_dir = _unchecked(tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "0001")
    execute(
        db_url,
        *(
            f"INSERT INTO quotes (id, bid, ask) VALUES ({i}, {b or 'NULL'}, {a})"
            for i, b, a in VALUES
        ),
        *(f"INSERT INTO trades (id, price) VALUES ({i}, {a})" for i, _, a in VALUES),
    )
    before = _values(db_url)
    pg = dialect == "postgresql"
    for _ in range(2):
        stored = storage(db_url, "quotes")
        migrate.upgrade(out_dir, url, "0002")
        if pg:  # catalogue only: domain -> double precision; the unused domain dropped
            assert storage(db_url, "quotes") == stored
            assert not _has_domain(db_url)
        assert _values(db_url) == before
        # out of the range is accepted now; the way back lists it before any DDL
        execute(db_url, "INSERT INTO trades (id, price) VALUES (9, 1e300)")
        schema = inspect_schema(db_url)
        with pytest.raises(CheckFailed, match=r"trades\.ck_trades_price_range\.failing_rows"):
            migrate.downgrade(out_dir, url, "0001")
        assert inspect_schema(db_url) == schema
        execute(db_url, "DELETE FROM trades WHERE id = 9")
        migrate.downgrade(out_dir, url, "0001")
        if pg:
            assert _has_domain(db_url)
        assert _values(db_url) == before
        assert _refused(db_url, "INSERT INTO quotes (id, bid, ask) VALUES (9, 1e8, 0)")
        assert _refused(
            db_url,
            "INSERT INTO trades (id, price) VALUES (9, 'NaN')"
            if pg
            else "INSERT INTO trades (id, price) VALUES (9, -1e8)",
        )


RENAMES = """id: renames
description: The columns and a table of the domain renamed.
operations:
  - {op: rename_column, table: quotes, column: bid, to: bid_price}
  - {op: rename_table, table: trades, to: fills}
"""


def test_renames_keep_the_domain(tmp_path: Path) -> None:
    """A rename keeps its column's type: no domain is created or dropped, either way."""
    changes = tmp_path / "project" / "changes"
    changes.mkdir(parents=True)
    for number, text in enumerate((BASE, FLOATS, RENAMES)):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (changes / f"{number:04d}_{name}.yaml").write_text(text)
    change = render_project(tmp_path / "project", tmp_path)[0][-1]
    assert change.after.domains() == change.before.domains() != {}
    assert change.after.get("quotes").column("bid_price").domain is not None  # type: ignore[union-attr]
    for steps, start in ((change.steps, change.before), (change.inverse_steps, change.after)):
        kinds = {u.kind for u in plan.plan(steps, start, "postgresql")}
        assert not kinds & {"create_domain", "drop_domain"}, kinds
    # the same plan of a drop does drop it (the test above can fail)
    drop = (*change.steps, *(DropTableStep(t) for t in change.after.tables))
    assert "drop_domain" in {u.kind for u in plan.plan(drop, change.before, "postgresql")}
