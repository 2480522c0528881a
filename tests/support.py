"""Helpers shared by the tests: the project's paths, a CLI runner, and schema inspection."""

from __future__ import annotations

import re
import shutil
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner, Result

from generator import db
from generator.cli import main

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def last_change_number(root: Path = ROOT) -> int:
    """The number of the last committed change (a new one takes the next)."""
    return max(int(p.name[:4]) for p in (root / "changes").glob("[0-9][0-9][0-9][0-9]_*.yaml"))


def copy_project(dest: Path, changes: Path | None = None) -> Path:
    """A scratch project: the real (or given) changes/ and generated_migrations/ trees."""
    shutil.copytree(changes or ROOT / "changes", dest / "changes")
    shutil.copytree(
        ROOT / "generated_migrations",
        dest / "generated_migrations",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return dest


def cli(*args: str, root: Path | None = None) -> Result:
    full = (["--root", str(root)] if root else []) + list(args)
    return CliRunner().invoke(main, full, catch_exceptions=False)


def _default(text: str | None) -> Any:
    """Normalise a reflected server default across dialects: 'USD'::character varying -> USD."""
    if text is None:
        return None
    value = text.strip()
    if "::" in value:
        value = value.split("::", 1)[0]
    value = value.strip("'")
    return {"true": True, "1": True, "false": False, "0": False}.get(value, value)


def _indexes(conn: sa.Connection, insp: Any, table: str) -> list[tuple[Any, ...]]:
    """(name, keys, unique) of a table's indexes; an expression key as the database writes
    it (PostgreSQL's reflection gives it; SQLAlchemy skips SQLite's expression indexes, with
    a warning: read from sqlite_master)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "Skipped unsupported reflection of expression-based index"
        )
        reflected = insp.get_indexes(table)
    out = [
        (i["name"], tuple(i.get("expressions") or i["column_names"]), bool(i["unique"]))
        for i in reflected
        if not i.get("duplicates_constraint")
    ]
    if conn.dialect.name == "sqlite":
        seen = {i["name"] for i in reflected}
        for name, sql, unique in conn.exec_driver_sql(
            'SELECT s.name, s.sql, il."unique" FROM sqlite_master AS s '
            "JOIN pragma_index_list(?) AS il ON il.name = s.name "
            "WHERE s.type = 'index' AND s.tbl_name = ? AND il.origin = 'c'",
            (table, table),
        ):
            if name not in seen:
                out.append((name, (sql[sql.index("(") :],), bool(unique)))
    return sorted(out)


def _unique_constraints(insp: Any, table: str) -> list[Any]:
    with warnings.catch_warnings():  # SQLite's reads the indexes (see _indexes)
        warnings.filterwarnings(
            "ignore", "Skipped unsupported reflection of expression-based index"
        )
        return list(insp.get_unique_constraints(table))


def inspect_schema(url: str, by_name: bool = True) -> dict[str, Any]:
    """Everything the tests compare about a live schema, in one plain dict; its columns in
    name order (an online type change moves its column to the table's end), or with
    ``by_name=False`` in the table's order."""
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            out: dict[str, Any] = {}
            for table in sorted(insp.get_table_names()):
                if table == "alembic_version":
                    continue
                pk = insp.get_pk_constraint(table)
                out[table] = {
                    "columns": (sorted if by_name else list)(
                        (
                            c["name"],
                            c["type"].compile(dialect=conn.dialect),
                            c["nullable"],
                            _default(c.get("default")),
                        )
                        for c in insp.get_columns(table)
                    ),
                    "primary_key": tuple(pk["constrained_columns"]),
                    "indexes": _indexes(conn, insp, table),
                    "unique": sorted(
                        (
                            u["name"] if conn.dialect.name == "postgresql" else None,
                            tuple(u["column_names"]),
                        )
                        for u in _unique_constraints(insp, table)
                    ),
                    "foreign_keys": sorted(
                        (
                            f["name"],
                            tuple(f["constrained_columns"]),
                            f["referred_table"],
                            tuple(f["referred_columns"]),
                            (f.get("options") or {}).get("ondelete", "NO ACTION").upper(),
                        )
                        for f in insp.get_foreign_keys(table)
                    ),
                    "checks": sorted(c["name"] for c in insp.get_check_constraints(table)),
                }
            return out
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


PRICE_COLUMNS = {
    "market_data": ["price", "bid", "ask", "open_price", "high_price", "low_price"],
    "alert_logs": ["trigger_value", "threshold_value"],
    "alert_rules": ["threshold"],
}
TABLES = ["instruments", "alert_rules", "market_data", "alert_logs"]


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, by id, with the columns all revisions share, in name order
    (an online type change moves a converted column to the end of its table)."""
    engine = db.make_engine(sa.make_url(url))
    out = {}
    with engine.connect() as conn:
        for table in TABLES:
            cols = [c["name"] for c in sa.inspect(conn).get_columns(table)]
            cols = sorted(c for c in cols if c != "deleted_at")
            quoted = ", ".join(f'"{c}"' for c in cols)
            rows = conn.exec_driver_sql(f'SELECT {quoted} FROM "{table}" ORDER BY id').all()
            out[table] = [tuple(r) for r in rows]
    engine.dispose()
    return out


def counts(snapshot: dict[str, list[tuple[Any, ...]]]) -> dict[str, int]:
    return {t: len(rows) for t, rows in snapshot.items()}


def as_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def assert_prices_within(
    before: dict[str, list[Any]], after: dict[str, list[Any]], url: str
) -> None:
    """Converted values differ from their originals by less than 0.0001 (4-place equal)."""
    engine = db.make_engine(sa.make_url(url))
    with engine.connect() as conn:
        for table, columns in PRICE_COLUMNS.items():
            names = sorted(
                c["name"] for c in sa.inspect(conn).get_columns(table) if c["name"] != "deleted_at"
            )
            for old, new in zip(before[table], after[table], strict=True):
                for col in columns:
                    i = names.index(col)
                    a, b = as_decimal(old[i]), as_decimal(new[i])
                    assert (a is None) == (b is None)
                    if a is not None and b is not None:
                        assert abs(a - b) < Decimal("0.0001"), (table, old[0], col, a, b)
                        assert round(a, 4) == round(b, 4)
    engine.dispose()


def db_revision(url: str) -> str | None:
    """The revision ``alembic_version`` holds (None: none recorded)."""
    from generator import migrate, runtime

    return migrate.with_connection(sa.make_url(url), runtime.current_revision)


def seed_demo(db_url: str, revision: str = "0000", ticks: int = 400, alerts: int = 150) -> None:
    """Migrate an empty database to ``revision`` and fill every table with demo rows."""
    from generator import migrate
    from marketdata import demo

    url = sa.make_url(db_url)
    migrate.upgrade(ROOT / "generated_migrations", url, revision)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=ticks, alerts=alerts)
    engine.dispose()


@dataclass(frozen=True)
class PlannedUnit:
    """One plan unit as ``schemagen plan`` prints it: the lock line the migration's
    ``runtime.unit`` marker emits, and the statements up to the next unit or the checks."""

    kind: str
    lock: str
    rewrites: bool
    statements: tuple[str, ...]


_UNIT_LINE = re.compile(r"^-- lock: (?P<lock>.*?)(?P<rw>; REWRITES THE TABLE)? \((?P<kind>\w+)\)$")


def planned_units(plan_text: str) -> list[PlannedUnit]:
    """The units of an offline plan (``migrate.plan_sql``), in order."""
    from generator import migrate

    units: list[PlannedUnit] = []
    head: re.Match[str] | None = None
    body: list[str] = []

    def close() -> None:
        if head is not None:
            units.append(
                PlannedUnit(
                    head["kind"],
                    head["lock"],
                    bool(head["rw"]),
                    tuple(migrate.statements("\n".join(body))),
                )
            )

    for line in plan_text.splitlines():
        match = _UNIT_LINE.match(line)
        if match is not None or line.startswith(
            ("-- checks: validation/", "-- PRAGMA foreign_key_check")
        ):
            close()
            head, body = match, []
        elif head is not None:
            body.append(line)
    close()
    return units


BACKFILL_CHANGES = ROOT / "tests" / "golden" / "render" / "backfill" / "changes"


def bump_change(batch_size: int) -> str:
    """A backfill that reads the column it sets, so a batch done twice shows as +2 and a
    batch skipped as +0: every open line must be exactly +1 at the end."""
    return f"""\
id: bump
description: Every open line's quantity up by one, in batches of {batch_size}.
operations:
  - op: backfill
    table: order_lines
    set: {{quantity: "coalesce(quantity, 0) + 1", status: "'open'"}}
    where: status IS NULL OR status <> 'closed'
    batch_size: {batch_size}
"""


def backfill_project(tmp_path: Path, second: str | None = None) -> Path:
    """A project of the golden backfill base and its backfill change (or ``second``
    instead), rendered."""
    from generator.load import load_changes
    from generator.render import generate

    root = tmp_path / "project"
    changes = root / "changes"
    changes.mkdir(parents=True)
    shutil.copy(BACKFILL_CHANGES / "0000_base.yaml", changes)
    if second is None:
        shutil.copy(BACKFILL_CHANGES / "0001_backfill.yaml", changes)
    else:
        (changes / "0001_bump.yaml").write_text(second, encoding="utf-8")
    out = root / "generated_migrations"
    for rel, text in generate(load_changes(changes, display_base=root)).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
    return root
