"""Narrowing never truncates, and every change's row counts cover every table.

Each test builds a project of its own (a user's schema, not the market-data one): change 0000
creates ``notes`` (the converted column ``v``) and ``others`` (never touched), change 0001
converts ``notes.v``. A value that does not fit the narrower type must be refused before any
DDL, with its row's key and value named, and left intact.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import shutil
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from support import ROOT, cli, copy_project, execute
from support import db_revision as _revision

from generator import db, migrate
from generator.cli import Exit
from generator.coltypes import conversion_problem, parse_type

KEY = 4242  # the primary key of the row that does not fit: the message must name it


def _project(root: Path, old: str, new: str, *, acknowledge: bool, online: bool = True) -> Path:
    """A project whose 0001 converts notes.v from ``old`` to ``new`` (``online=False``: the
    blocking ALTER TABLE on PostgreSQL, whose USING expression some tests call directly)."""
    changes = root / "changes"
    changes.mkdir(parents=True)
    start = {
        "id": "start",
        "description": "two tables",
        "operations": [
            {
                "op": "create_table",
                "name": "notes",
                "columns": [
                    {"name": "id", "type": "integer", "primary_key": True},
                    {"name": "v", "type": old},
                ],
            },
            {
                "op": "create_table",
                "name": "others",
                "columns": [
                    {"name": "id", "type": "integer", "primary_key": True},
                    {"name": "n", "type": "integer"},
                ],
            },
        ],
    }
    convert: dict[str, Any] = {
        "id": "convert",
        "description": f"notes.v from {old} to {new}",
        "operations": [
            {"op": "alter_column_type", "table": "notes", "column": "v", "from": old, "to": new}
            | ({} if online else {"online": False})
        ],
    }
    if acknowledge:
        convert["acknowledge"] = {"SG103": "the pre-check refuses what does not fit"}
    for name, spec in (("0000_start", start), ("0001_convert", convert)):
        (changes / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")
    out = root / "generated_migrations"
    out.mkdir()
    shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
    result = cli("generate", root=root)
    assert result.exit_code == 0, result.output + result.stderr
    return out


def _value(url: str) -> Any:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT v FROM notes WHERE id = {KEY}").scalar_one()
    finally:
        engine.dispose()


def _same(got: Any, want: str) -> bool:
    if isinstance(got, str | datetime.date | uuid.UUID | list | dict):
        return str(got) == want
    return Decimal(str(got)) == Decimal(want)


# (old type, new type, a value of old that new cannot hold, how it shows in the message)
LONG = "x" * 100
# Widened by 0001, so its derived downgrade narrows: the value fits only the wider type.
WIDENINGS = [
    ("varchar(50)", "varchar(200)", LONG),
    ("varchar(50)", "text", LONG),
    ("integer", "bigint", "3000000000"),
    ("decimal(12,4)", "decimal(14,6)", "1.234567"),  # scale: rounding would change it
    ("decimal(6,2)", "decimal(12,2)", "123456.5"),  # precision
    ("integer", "float", "1.5"),  # float -> integer
    ("decimal(12,4)", "float", "123456789.5"),  # float -> decimal: out of range
    ("smallint", "integer", "40000"),
    ("uuid", "text", "not-a-uuid"),
    ("json", "text", '{"a": }'),
    ("date", "timestamp", "2020-01-01 10:30:00"),  # timestamp -> date: the time is lost
]
# Narrowed by 0001 itself (SG103 acknowledged).
NARROWINGS = [
    ("varchar(200)", "varchar(50)", LONG),
    ("text", "varchar(50)", LONG),
    ("bigint", "integer", "3000000000"),
    ("bigint", "integer", "-2147483649"),
    ("decimal(12,4)", "decimal(12,2)", "1.2345"),
    ("decimal(12,4)", "decimal(6,4)", "12345.5"),
    ("decimal(12,2)", "bigint", "1.5"),
    ("float", "decimal(12,4)", "1e10"),
    ("float", "integer", "2.5"),
    ("bigint", "float", "9007199254740993"),
    ("integer", "smallint", "40000"),
    ("integer", "smallint", "-32769"),
    ("text", "uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),  # not the canonical form
    ("varchar(50)", "json", '{"a": }'),
    ("timestamp", "date", "2020-01-01 10:30:00"),
    ("json", "varchar(5)", "[1, 2, 3]"),
]
UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def _literal(type_: str, value: str) -> str:
    return value if parse_type(type_).family == "numeric" else f"'{value}'"


def _ok(old: str, new: str) -> str:
    """A value both types hold unchanged (the row that must come through)."""
    kinds = {parse_type(old).kind, parse_type(new).kind}
    if "uuid" in kinds:
        return UUID
    if kinds & {"date", "timestamp", "timestamptz"}:
        return "2020-01-01"
    return "7"


def _ids(case: tuple[str, str, str]) -> str:
    return f"{case[0]}->{case[1]}:{case[2][:12]}"


def _refused(result: Any, url: str, value: str, revision: str) -> None:
    assert result.exit_code == Exit.FAILED, result.output + result.stderr
    assert "fits_" in result.stderr, result.stderr
    assert str(KEY) in result.stderr and str(_value(url)) in result.stderr, result.stderr
    assert _revision(url) == revision
    assert _same(_value(url), value), _value(url)


@pytest.mark.parametrize("case", WIDENINGS, ids=_ids)
def test_a_downgrade_that_narrows_refuses_a_value_that_would_not_fit(
    case: tuple[str, str, str], db_url: str, tmp_path: Path
) -> None:
    old, new, value = case
    _project(tmp_path, old, new, acknowledge=False)
    assert cli("upgrade", "--url", db_url, root=tmp_path).exit_code == 0
    literal = _literal(new, value)
    execute(db_url, f"INSERT INTO notes (id, v) VALUES ({KEY}, {literal})")
    execute(db_url, f"INSERT INTO notes (id, v) VALUES (1, '{_ok(old, new)}')")
    # A value only the wider type holds is no fault of the database: verify passes.
    verified = cli("verify", "--url", db_url, root=tmp_path)
    assert verified.exit_code == 0, verified.output + verified.stderr
    result = cli("downgrade", "--to", "0000", "--url", db_url, root=tmp_path)
    _refused(result, db_url, value, "0001")
    # Without the row that does not fit, the same downgrade goes through.
    execute(db_url, f"DELETE FROM notes WHERE id = {KEY}")
    result = cli("downgrade", "--to", "0000", "--url", db_url, root=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert _revision(db_url) == "0000"


@pytest.mark.parametrize("case", NARROWINGS, ids=_ids)
def test_an_acknowledged_narrowing_upgrade_refuses_a_value_that_would_not_fit(
    case: tuple[str, str, str], db_url: str, tmp_path: Path
) -> None:
    old, new, value = case
    _project(tmp_path, old, new, acknowledge=True)
    assert cli("upgrade", "--to", "0000", "--url", db_url, root=tmp_path).exit_code == 0
    literal = _literal(old, value)
    execute(db_url, f"INSERT INTO notes (id, v) VALUES ({KEY}, {literal})")
    execute(db_url, f"INSERT INTO notes (id, v) VALUES (1, '{_ok(old, new)}')")
    result = cli("upgrade", "--url", db_url, root=tmp_path)
    _refused(result, db_url, value, "0000")
    execute(db_url, f"DELETE FROM notes WHERE id = {KEY}")
    result = cli("upgrade", "--url", db_url, root=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert _revision(db_url) == "0001"
    assert _same(_value_of(db_url, 1), _ok(old, new))


def _value_of(url: str, key: int) -> Any:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT v FROM notes WHERE id = {key}").scalar_one()
    finally:
        engine.dispose()


def _migration(out: Path) -> ModuleType:
    (path,) = (out / "versions").glob("0001_*.py")
    spec = importlib.util.spec_from_file_location("narrowing_0001", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A value slipping past the pre-check (written after it ran) must make the DDL fail.
SLIPS = [
    ("varchar(200)", "varchar(50)", f"'{LONG}'"),
    ("text", "varchar(50)", f"'{LONG}'"),
    ("bigint", "integer", "3000000000"),
    ("decimal(12,4)", "decimal(12,2)", "1.2345"),
    ("decimal(12,2)", "integer", "1.5"),
    ("float", "bigint", "2.5"),
    ("integer", "smallint", "40000"),
    ("text", "uuid", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"),
    ("timestamp", "date", "'2020-01-01 10:30:00'"),
    ("json", "varchar(5)", "'[1, 2, 3]'"),
]


@pytest.mark.parametrize("case", SLIPS, ids=lambda c: f"{c[0]}->{c[1]}")
def test_the_postgresql_conversion_fails_rather_than_truncates(
    case: tuple[str, str, str], pg_database: str, tmp_path: Path
) -> None:
    """The rendered ALTER TABLE itself, run without the pre-check, on a value it cannot hold:
    an explicit cast would cut or round it; the conversion must raise instead."""
    from conftest import pg_url_for

    old, new, literal = case
    url = pg_url_for(pg_database)
    # the blocking ALTER's USING (the online path converts with the same expression, and
    # refuses per batch before it: test_online_type_change.py)
    out = _project(tmp_path, old, new, acknowledge=True, online=False)
    migrate.upgrade(out, sa.make_url(url), "0000")
    execute(url, f"INSERT INTO notes (id, v) VALUES ({KEY}, {literal})")
    module = _migration(out)
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            with (
                Operations.context(MigrationContext.configure(conn)),
                pytest.raises(sa.exc.DBAPIError) as raised,
            ):
                module._upgrade_postgresql()
            conn.rollback()
    finally:
        engine.dispose()
    assert (
        "fit" in str(raised.value)
        or "too long" in str(raised.value)
        or "out of range" in str(raised.value)
    ), raised.value
    assert _same(_value(url), literal.strip("'"))


def test_a_row_deleted_from_an_untouched_table_fails_the_row_count_check(
    db_url: str, tmp_path: Path
) -> None:
    """0001 converts notes.v only; a hand-edited migration that also deletes a row of
    ``others`` must fail the row-count check and roll back."""
    out = _project(tmp_path, "varchar(50)", "varchar(200)", acknowledge=False)
    assert cli("upgrade", "--to", "0000", "--url", db_url, root=tmp_path).exit_code == 0
    execute(
        db_url,
        *(f"INSERT INTO others (id, n) VALUES ({i}, {i})" for i in range(1, 11)),
        "INSERT INTO notes (id, v) VALUES (1, 'a')",
    )
    (path,) = (out / "versions").glob("0001_*.py")
    text = path.read_text("utf-8")
    edited = text.replace(
        "def _upgrade_postgresql() -> None:\n",
        "def _upgrade_postgresql() -> None:\n"
        '    op.execute(sa.text("DELETE FROM others WHERE id % 10 = 0"))\n',
    ).replace(
        "def _upgrade_sqlite() -> None:\n",
        "def _upgrade_sqlite() -> None:\n"
        '    op.execute(sa.text("DELETE FROM others WHERE id % 10 = 0"))\n',
    )
    assert edited.count("DELETE FROM others") == 2
    path.write_text(edited, "utf-8")
    migrate_dir = tmp_path / "generated_migrations"
    # The sum check would refuse the edited file before it ran: let it run, to show that
    # the row counts (every table's) catch what it does.
    with pytest.raises(Exception, match="row_counts") as raised:
        migrate.upgrade(migrate_dir, sa.make_url(db_url), allow_modified="test: the row counts")
    assert "others" in str(raised.value)
    assert _revision(db_url) == "0000"
    engine = db.make_engine(sa.make_url(db_url))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM others").scalar_one() == 10
    finally:
        engine.dispose()


def test_every_change_of_the_project_counts_every_table_it_keeps(tmp_path: Path) -> None:
    """The market-data project's 0001 touches market_data only; its row counts cover all four
    tables (and 0000, which creates them, counts none)."""
    from generator.runtime import load_checks

    project = copy_project(tmp_path)
    for dialect in ("postgresql", "sqlite"):
        for change in ("0001_optimize_market_data_indexes", "0004_add_soft_delete_safety"):
            for phase in ("pre", "post"):
                path = project / "generated_migrations" / "validation" / dialect
                sections = load_checks(path / f"{change}.{phase}.json")
                (snap,) = [c for c in sections if c.name == "schemagen_row_counts"]
                for table in ("instruments", "alert_rules", "market_data", "alert_logs"):
                    assert f"'{table}'" in snap.sql, (dialect, change, phase, table)


# Every pair of the vocabulary within a family, and values at and around each type's edges.
TYPES = {
    "numeric": [
        "smallint",
        "integer",
        "bigint",
        "float",
        "decimal(12,4)",
        "decimal(12,2)",
        "decimal(6,4)",
        "decimal(9,0)",
        "decimal(20,8)",
    ],
    "string": ["varchar(3)", "varchar(5)", "text"],
    "temporal": ["date", "timestamp", "timestamptz"],
    "textual": ["varchar(40)", "text", "uuid", "json"],
}
PROBES = {
    "numeric": [
        "0",
        "7",
        "-1.5",
        "2.5",
        "1.2345",
        "1.23",
        "99.9999",
        "99999.9999",
        "100000",
        "999999999",
        "-2147483648",
        "2147483647",
        "2147483648",
        "3000000000",
        "99999999.9999",
        "123456789012.12345678",
        "9007199254740992",
        "9007199254740993",
        "-9223372036854775808",
        "9223372036854775807",
        "1e15",
    ],
    "string": ["", "ab", "abc", "abcd", "abcde", "abcdef"],
    "temporal": [
        "2020-01-01",
        "2020-01-01 00:00:00",
        "2020-01-01 10:30:00",
        "2024-02-29 23:59:59.999999",
        "1999-12-31 23:00:00+00",
        "2000-01-01 00:00:00-05",
        "infinity",
        "-infinity",
    ],
    "textual": [
        UUID,
        UUID.upper(),
        "{" + UUID + "}",
        UUID.replace("-", ""),
        "",
        "not json",
        '{"b":1,"a":[1,2.50]}',
        "[1, 2]",
        '"x"',
        "1e5",
        "{",
        '"\\u0000"',
        '"\\ud800"',
        '"\\ud83d\\ude00"',
        "x" * 41,
        '["' + "y" * 40 + '"]',
        "[[[[[1]]]]]",  # deeper than the inline passes: the recursive query decides
        '[[[[[1]]]],{"a":{"b":{"c":{"d":[]}}}}]',
        "[[[[[1]]]]",
        '{"a":{"b":{"c":{"d":[}}}}',
    ],
}
# How a value reads back, the same across date, timestamp and timestamptz: the time in UTC.
WALL = {
    "date": "v::timestamp::text",
    "timestamp": "v::text",
    "timestamptz": "(v AT TIME ZONE 'UTC')::text",
}


def _pairs() -> list[tuple[str, str]]:
    return [
        (a, b)
        for names in TYPES.values()
        for a in names
        for b in names
        if a != b and conversion_problem(parse_type(a), parse_type(b)) is None
    ]


def _group(pair: tuple[str, str]) -> str:
    return next(g for g, names in TYPES.items() if pair[0] in names and pair[1] in names)


def test_a_conversion_narrows_exactly_when_it_has_a_fit_check() -> None:
    from generator import dialects
    from generator.coltypes import narrows, parse_type

    for old, new in _pairs():
        o, n = parse_type(old), parse_type(new)
        for dialect in dialects.DIALECTS:
            assert (dialects.misfit_sql(o, n, "v", dialect) is None) == (not narrows(o, n))


@pytest.mark.parametrize("pair", _pairs(), ids="->".join)
def test_on_postgresql_a_value_is_flagged_exactly_when_its_conversion_raises(
    pair: tuple[str, str], pg_database: str
) -> None:
    """For each probe value the old type holds: the fit-check flags it if and only if the
    rendered PostgreSQL conversion raises on it; a value not flagged comes through unchanged
    (from float to a decimal: rounded to the decimal's scale)."""
    from conftest import pg_url_for

    from generator import dialects
    from generator.coltypes import parse_type
    from generator.ops.alter_column_type import AlterColumnTypeStep
    from generator.state import Column

    old, new = (parse_type(t) for t in pair)
    step = AlterColumnTypeStep("t", Column("v", old, True), new)
    using = dialects.using_sql(step)
    alter = f"ALTER TABLE t ALTER COLUMN v TYPE {dialects.ddl_type(new, 'postgresql')}" + (
        f" USING {using}" if using else ""
    )
    condition = dialects.misfit_sql(old, new, "v", "postgresql")
    old_sql = dialects.ddl_type(old, "postgresql")
    family = _group(pair)
    engine = db.make_engine(sa.make_url(pg_url_for(pg_database)))
    checked = 0
    try:
        with engine.connect() as conn:
            for value in PROBES[family]:
                literal = f"'{value}'"
                with conn.begin():
                    conn.exec_driver_sql("DROP TABLE IF EXISTS t")
                    conn.exec_driver_sql(f"CREATE TABLE t (id integer PRIMARY KEY, v {old_sql})")
                    try:
                        with conn.begin_nested():
                            conn.exec_driver_sql(f"INSERT INTO t VALUES (1, {literal})")
                    except sa.exc.DBAPIError:
                        continue  # the old type cannot hold it either
                    read = WALL.get(old.kind, "v::text")
                    stored = conn.exec_driver_sql(f"SELECT {read} FROM t").scalar_one()
                    flagged = bool(
                        condition
                        and conn.exec_driver_sql(
                            f"SELECT count(*) FROM t WHERE {condition}".replace("%", "%%")
                        ).scalar_one()
                    )
                    try:
                        with conn.begin_nested():
                            conn.exec_driver_sql(alter.replace("%", "%%"))
                        raised = False
                    except sa.exc.DBAPIError:
                        raised = True
                    assert flagged == raised, (pair, value, stored, flagged, raised)
                    if not raised:
                        checked += 1
                        read = WALL.get(new.kind, "v::text")
                        got = conn.exec_driver_sql(f"SELECT {read} FROM t").scalar_one()
                        if "json" in (old.kind, new.kind):
                            assert json.loads(got) == json.loads(stored), (pair, value, got)
                        elif family in ("string", "temporal", "textual"):
                            assert got == stored, (pair, value)
                        elif old.kind == "float" and new.kind == "decimal":
                            # PostgreSQL reads a double as numeric with 15 significant
                            # digits, then rounds half away from zero to the scale
                            exact = Decimal(format(float(stored), ".15g"))
                            want = exact.quantize(
                                Decimal(1).scaleb(-(new.scale or 0)), ROUND_HALF_UP
                            )
                            assert Decimal(got) == want, (pair, value, got)
                        else:
                            # a float's text is its shortest form; compare its exact value
                            want = Decimal(float(stored)) if old.kind == "float" else stored
                            assert Decimal(got) == Decimal(want), (pair, value, stored, got)
                    conn.rollback()
    finally:
        engine.dispose()
    assert checked  # some value of every pair converts


CHAIN_BASE = (
    "id: base\ndescription: b\noperations:\n"
    "  - op: create_table\n    name: t\n    columns:\n"
    "      - {name: id, type: integer, primary_key: true}\n"
    "      - {name: u, type: uuid, nullable: true}\n"
    "      - {name: s, type: text, nullable: true}\n"
)
CHAIN = (
    "id: chain\ndescription: c\nacknowledge: {SG103: test}\noperations:\n"
    "  - {op: alter_column_type, table: t, column: u, from: uuid, to: text}\n"
    "  - {op: alter_column_type, table: t, column: u, from: text, to: uuid}\n"
    "  - {op: alter_column_type, table: t, column: s, from: text, to: uuid}\n"
    "  - {op: alter_column_type, table: t, column: s, from: uuid, to: text}\n"
)


@pytest.mark.db
def test_a_chain_through_another_type_is_fit_checked_on_the_values_as_they_are(
    db_url: str, tmp_path: Path
) -> None:
    """uuid -> text -> uuid in one change: the fit-check runs before any DDL, on a uuid
    column (PostgreSQL once failed: operator does not exist: uuid ~ unknown); text -> uuid ->
    text still refuses a text that is no uuid, its row named."""
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "0000_base.yaml").write_text(CHAIN_BASE)
    (tmp_path / "changes" / "0001_chain.yaml").write_text(CHAIN)
    (tmp_path / "generated_migrations").mkdir()
    shutil.copy(ROOT / "generated_migrations" / "env.py", tmp_path / "generated_migrations")
    assert cli("generate", root=tmp_path).exit_code == 0
    assert cli("upgrade", "--to", "0000", "--url", db_url, root=tmp_path).exit_code == 0
    good = "00000000-0000-0000-0000-000000000001"
    execute(db_url, f"INSERT INTO t (id, u, s) VALUES (1, '{good}', '{good}')")
    execute(db_url, f"INSERT INTO t (id, u, s) VALUES ({KEY}, NULL, 'no uuid')")
    result = cli("upgrade", "--url", db_url, root=tmp_path)
    assert result.exit_code != 0 and str(KEY) in result.stderr, result.stderr
    assert "no uuid" in result.stderr
    execute(db_url, f"DELETE FROM t WHERE id = {KEY}")
    result = cli("upgrade", "--url", db_url, root=tmp_path)
    assert result.exit_code == 0, result.stderr
    engine = db.make_engine(sa.make_url(db_url))
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT u, s FROM t")).one()
    finally:
        engine.dispose()
    assert [str(v) for v in row] == [good, good]
    result = cli("downgrade", "--to", "0000", "--url", db_url, root=tmp_path)
    assert result.exit_code == 0, result.stderr


def test_a_blocking_conversion_locks_its_table_before_its_snapshots(
    pg_database: str, tmp_path: Path
) -> None:
    """PostgreSQL, ``online: false``: an application's UPDATE and DELETE that arrive just after
    the value snapshot (before the ALTER) must neither be read as drift or lost rows (a false
    failure that refused a sound change under live writes) nor be lost: the table is locked
    before the snapshots, so they wait for the change and land after it."""
    import threading

    from conftest import pg_url_for

    url = pg_url_for(pg_database)
    out = _project(tmp_path, "decimal(12,4)", "float", acknowledge=True, online=False)
    migrate.upgrade(out, sa.make_url(url), "0000")
    execute(url, "INSERT INTO notes (id, v) SELECT g, g + 0.25 FROM generate_series(1, 2000) g")
    landed: list[str] = []
    threads: list[threading.Thread] = []

    def application(sql: str) -> None:
        engine = db.make_engine(sa.make_url(url))
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(sql)
            landed.append(sql)
        finally:
            engine.dispose()

    def after_snapshot(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "schemagen_values_notes" in statement and statement.lstrip().startswith("CREATE"):
            for sql in (
                "UPDATE notes SET v = 7.5 WHERE id = 10",
                "DELETE FROM notes WHERE id = 11",
            ):
                thread = threading.Thread(target=application, args=(sql,))
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join(1.0)  # committed at once when nothing holds the table

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", after_snapshot)
    try:
        migrate.upgrade(out, sa.make_url(url), "0001")
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", after_snapshot)
        for thread in threads:
            thread.join(30)
    assert threads, "the value snapshot was not taken: nothing was tested"
    assert _revision(url) == "0001"
    assert sorted(landed) == sorted(
        ["UPDATE notes SET v = 7.5 WHERE id = 10", "DELETE FROM notes WHERE id = 11"]
    )
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            rows = dict(conn.exec_driver_sql("SELECT id, v FROM notes").all())
    finally:
        engine.dispose()
    assert len(rows) == 1999 and 11 not in rows and rows[10] == 7.5
    assert all(
        abs(Decimal(str(v)) - Decimal(k) - Decimal("0.25")) < Decimal("0.0001")
        for k, v in rows.items()
        if k != 10
    )
