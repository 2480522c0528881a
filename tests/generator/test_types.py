"""The types added to the vocabulary (smallint, date, timestamp, uuid, json, bytes) on both
dialects: a malformed uuid or JSON value is refused by the database itself (SQLite through
the column's CHECK), and every allowed conversion among the new types keeps its edge values,
up and back down (exactly where the pair is lossless), with the time in UTC whatever the
session's time zone."""

from __future__ import annotations

import datetime
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from support import ROOT, cli, execute

from generator import db
from generator.coltypes import conversion_problem, parse_type

U1 = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
U2 = "00000000-0000-0000-0000-000000000000"


def _project(
    root: Path, columns: list[dict[str, Any]], ops: list[dict[str, Any]], generate: bool = True
) -> None:
    changes = root / "changes"
    changes.mkdir(parents=True)
    base = {
        "id": "base",
        "description": "one table",
        "operations": [
            {
                "op": "create_table",
                "name": "things",
                "columns": [{"name": "id", "type": "integer", "primary_key": True}, *columns],
            }
        ],
    }
    specs = [("0000_base", base)]
    if ops:
        specs.append(
            (
                "0001_convert",
                {
                    "id": "convert",
                    "description": "conversions",
                    "acknowledge": {"SG103": "the fit-checks refuse what would not convert"},
                    "operations": ops,
                },
            )
        )
    for name, spec in specs:
        (changes / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")
    if not generate:
        return
    out = root / "generated_migrations"
    out.mkdir()
    shutil.copy(ROOT / "generated_migrations" / "env.py", out / "env.py")
    result = cli("generate", root=root)
    assert result.exit_code == 0, result.output + result.stderr


def _rows(url: str, column: str) -> dict[int, Any]:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(f'SELECT id, "{column}" FROM things ORDER BY id')
            return {k: v for k, v in rows}
    finally:
        engine.dispose()


def _insert_refused(url: str, statement: str) -> bool:
    try:
        execute(url, statement)
    except sa.exc.DBAPIError:
        return True
    return False


# (type, a good literal, literals each dialect must refuse)
MALFORMED = [
    ("uuid", f"'{U1}'", ["'not-a-uuid'", f"'{U1[:-1]}'", f"'{U1}0'"]),
    ("json", """'{"a": [1, 2.5, null]}'""", ["'{\"a\": }'", "'[1,]'", "'nope'", "''"]),
]


@pytest.mark.db
@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c[0])
def test_a_malformed_value_is_refused_by_the_database(
    case: tuple[str, str, list[str]], db_url: str, tmp_path: Path
) -> None:
    type_, good, bad = case
    _project(tmp_path, [{"name": "v", "type": type_}], [])
    assert cli("upgrade", "--url", db_url, root=tmp_path).exit_code == 0
    execute(
        db_url,
        f"INSERT INTO things (id, v) VALUES (1, {good})",
        "INSERT INTO things VALUES (2, NULL)",
    )
    for i, literal in enumerate(bad, start=10):
        assert _insert_refused(db_url, f"INSERT INTO things (id, v) VALUES ({i}, {literal})"), (
            literal
        )
    got = _rows(db_url, "v")
    assert set(got) == {1, 2} and got[2] is None
    if type_ == "uuid":
        assert str(got[1]) == U1
    else:
        assert (json.loads(got[1]) if isinstance(got[1], str) else got[1]) == {"a": [1, 2.5, None]}
    # the verify checks hold on the new types' catalogue rows
    verified = cli("verify", "--url", db_url, root=tmp_path)
    assert verified.exit_code == 0, verified.output + verified.stderr


@pytest.mark.db
def test_sqlite_refuses_a_uuid_not_in_canonical_form(tmp_path: Path) -> None:
    """PostgreSQL's uuid reads an upper-case uuid and writes it lower-case; SQLite keeps the
    text as written, so its CHECK takes the canonical form only."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    _project(tmp_path, [{"name": "v", "type": "uuid"}], [])
    assert cli("upgrade", "--url", url, root=tmp_path).exit_code == 0
    assert _insert_refused(url, f"INSERT INTO things (id, v) VALUES (1, '{U1.upper()}')")
    assert _insert_refused(url, f"INSERT INTO things (id, v) VALUES (1, '{{{U1}}}')")


def _norm(value: Any, kind: str, dialect: str) -> Any:
    """A value as read back, in one form for both dialects (times in UTC)."""
    if value is None:
        return None
    if kind in ("timestamp", "timestamptz"):
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value)
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value
    if kind == "date":
        return datetime.date.fromisoformat(value) if isinstance(value, str) else value
    if kind == "json":  # psycopg reads a jsonb as its Python value
        return json.loads(value) if dialect == "sqlite" else value
    if kind == "uuid":
        return str(value)
    if kind in ("smallint", "integer", "bigint", "float", "decimal"):
        return float(value)
    return value


# (from, to, literals of `from` at its edges, lossless: the downgrade gives back the same)
CONVERSIONS: list[tuple[str, str, list[str], bool]] = [
    ("smallint", "integer", ["-32768", "32767", "0"], True),
    ("smallint", "bigint", ["-32768", "32767"], True),
    ("smallint", "float", ["-32768", "32767"], True),
    ("smallint", "decimal(7,2)", ["-32768", "32767"], True),
    ("date", "timestamp", ["'0001-01-01'", "'2024-02-29'", "'9999-12-31'"], True),
    ("date", "timestamptz", ["'1970-01-01'", "'2024-02-29'", "'9999-12-31'"], True),
    (
        "timestamp",
        "timestamptz",
        ["'2024-02-29 23:59:59.999999'", "'2024-03-31 01:30:00'", "'1970-01-01 00:00:00'"],
        True,
    ),
    ("timestamp", "date", ["'2024-02-29 00:00:00'", "'0001-01-01 00:00:00'"], True),
    ("text", "uuid", [f"'{U1}'", f"'{U2}'"], True),
    ("varchar(36)", "uuid", [f"'{U1}'"], True),
    ("uuid", "varchar(36)", [f"'{U1}'", f"'{U2}'"], True),
    ("uuid", "text", [f"'{U1}'"], True),
    # jsonb keeps the value, not the text: keys sorted, spaces normalised on PostgreSQL
    ("text", "json", ["""'{"b":1,"a":[1,2.50,"\\u00e9"]}'""", "'[]'", "'\"x\"'", "'1e5'"], False),
    ("varchar(100)", "json", ["""'{"k": null}'""", "'true'"], False),
]


@pytest.mark.db
def test_every_allowed_conversion_keeps_its_edge_values_up_and_down(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    columns = [{"name": f"c{i}", "type": old} for i, (old, _, _, _) in enumerate(CONVERSIONS)]
    ops = [
        {"op": "alter_column_type", "table": "things", "column": f"c{i}", "from": old, "to": new}
        for i, (old, new, _, _) in enumerate(CONVERSIONS)
    ]
    _project(tmp_path, columns, ops)
    if dialect == "postgresql":
        # The conversions assume UTC, whatever the session's time zone says.
        name = sa.make_url(db_url).database
        execute(db_url, f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'")
    assert cli("upgrade", "--to", "0000", "--url", db_url, root=tmp_path).exit_code == 0
    width = max(len(v) for _, _, v, _ in CONVERSIONS)
    for row in range(width + 1):  # the last row is all NULL
        values = [
            literals[row] if row < len(literals) else "NULL" for _, _, literals, _ in CONVERSIONS
        ]
        names = ", ".join(c["name"] for c in columns)
        execute(db_url, f"INSERT INTO things (id, {names}) VALUES ({row}, {', '.join(values)})")
    before = {f"c{i}": _rows(db_url, f"c{i}") for i in range(len(CONVERSIONS))}
    result = cli("upgrade", "--url", db_url, root=tmp_path)
    assert result.exit_code == 0, result.output + result.stderr
    for i, (old, new, _, _) in enumerate(CONVERSIONS):
        was = {k: _norm(v, parse_type(old).kind, dialect) for k, v in before[f"c{i}"].items()}
        now = {
            k: _norm(v, parse_type(new).kind, dialect) for k, v in _rows(db_url, f"c{i}").items()
        }
        if parse_type(old).kind == "date":
            was = {
                k: None if v is None else datetime.datetime.combine(v, datetime.time())
                for k, v in was.items()
            }
        if parse_type(new).kind == "date":
            was = {k: None if v is None else v.date() for k, v in was.items()}
        if new == "json":
            was = {k: None if v is None else json.loads(v) for k, v in was.items()}
        assert now == was, (old, new)
    # the converted columns hold their new type's form (SQLite: the CHECK came with the type)
    uuid_col = next(f"c{i}" for i, (o, n, _, _) in enumerate(CONVERSIONS) if n == "uuid")
    json_col = next(f"c{i}" for i, (o, n, _, _) in enumerate(CONVERSIONS) if n == "json")
    bad_uuid = f"INSERT INTO things (id, {uuid_col}) VALUES (100, 'nope')"
    bad_json = f"INSERT INTO things (id, {json_col}) VALUES (101, '{{nope')"
    assert _insert_refused(db_url, bad_uuid) and _insert_refused(db_url, bad_json)
    result = cli("downgrade", "--to", "0000", "--url", db_url, root=tmp_path)
    assert result.exit_code == 0, result.output + result.stderr
    # ... and lose it with the type: text again takes any text
    execute(db_url, bad_uuid, bad_json, "DELETE FROM things WHERE id IN (100, 101)")
    for i, (old, new, _, lossless) in enumerate(CONVERSIONS):
        back = _rows(db_url, f"c{i}")
        if lossless or dialect == "sqlite":
            assert back == before[f"c{i}"], (old, new)
        else:  # the same JSON value, in jsonb's normal form
            assert {k: None if v is None else json.loads(v) for k, v in back.items()} == {
                k: None if v is None else json.loads(v) for k, v in before[f"c{i}"].items()
            }


def test_bytes_converts_to_no_other_type_and_the_error_says_so() -> None:
    for other in ("text", "varchar(10)", "json", "uuid", "integer", "date"):
        for old, new in (("bytes", other), (other, "bytes")):
            problem = conversion_problem(parse_type(old), parse_type(new))
            assert problem is not None and "bytes converts to no other type" in problem


def test_a_refused_conversion_is_reported_at_its_yaml_line(tmp_path: Path) -> None:
    _project(tmp_path, [{"name": "v", "type": "uuid"}, {"name": "w", "type": "date"}], [])
    (tmp_path / "changes" / "0001_bad.yaml").write_text(
        "id: bad\ndescription: x\noperations:\n"
        "  - {op: alter_column_type, table: things, column: v, from: uuid, to: varchar(20)}\n"
        "  - {op: alter_column_type, table: things, column: w, from: date, to: integer}\n",
        "utf-8",
    )
    result = cli("generate", root=tmp_path)
    assert result.exit_code != 0
    assert "0001_bad.yaml:4:" in result.stderr and "a uuid is 36 characters" in result.stderr
    assert "0001_bad.yaml:5:" in result.stderr and "cannot convert date to integer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("type_", "default", "problem"),
    [
        ("date", "2024-1-2", "'YYYY-MM-DD'"),
        ("date", "2024-02-30", "'YYYY-MM-DD'"),
        ("timestamp", "2024-01-02T10:00:00", "'YYYY-MM-DD HH:MM:SS'"),
        ("timestamp", "2024-01-02 10:00:00.500", "no trailing zero"),
        ("uuid", U1.upper(), "lowercase"),
        ("json", '{"a": 1}', "'{}' or '[]'"),
        ("bytes", "x", "takes no default"),
        ("smallint", 32768, "out of range"),
    ],
)
def test_a_default_not_in_its_types_form_is_refused(
    type_: str, default: Any, problem: str, tmp_path: Path
) -> None:
    _project(tmp_path, [{"name": "v", "type": type_, "default": default}], [], generate=False)
    result = cli("generate", root=tmp_path)
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "0000_base.yaml:12:" in result.stderr and ".default:" in result.stderr, result.stderr
    assert problem in result.stderr, result.stderr


@pytest.mark.db
def test_the_accepted_defaults_render_run_and_verify(db_url: str, tmp_path: Path) -> None:
    columns = [
        {"name": "a", "type": "date", "default": "2024-02-29"},
        {"name": "b", "type": "timestamp", "default": "now"},
        {"name": "c", "type": "timestamp", "default": "2024-02-29 23:59:59.5"},
        {"name": "d", "type": "uuid", "default": U1},
        {"name": "e", "type": "json", "default": "[]"},
        {"name": "f", "type": "smallint", "default": -32768},
    ]
    _project(tmp_path, columns, [])
    (migration,) = (tmp_path / "generated_migrations" / "versions").glob("0000_*.py")
    text = migration.read_text("utf-8")
    assert "CURRENT_TIMESTAMP AT TIME ZONE 'UTC'" in text  # PostgreSQL: now in UTC
    assert 'sa.CheckConstraint(\'"e" IS NULL OR json_valid("e")\', name="e_is_json")' in text
    assert uuid.UUID(U1)  # a well-formed literal
    # the catalogue shows each default as the post-checks expect it, on both dialects
    assert cli("upgrade", "--url", db_url, root=tmp_path).exit_code == 0
    verified = cli("verify", "--url", db_url, root=tmp_path)
    assert verified.exit_code == 0, verified.output + verified.stderr
    execute(db_url, "INSERT INTO things (id) VALUES (1)")
    engine = db.make_engine(sa.make_url(db_url))
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT a, c, d, e, f FROM things").one()
    finally:
        engine.dispose()
    assert [str(v) for v in row[:3]] == ["2024-02-29", "2024-02-29 23:59:59.500000", U1] or [
        str(v) for v in row[:3]
    ] == ["2024-02-29", "2024-02-29 23:59:59.5", U1]
    assert row[3] in ([], "[]") and row[4] == -32768


@pytest.mark.db
def test_verify_on_sqlite_finds_a_uuid_column_without_its_check(tmp_path: Path) -> None:
    """The catalogue checks look for the CHECK of a uuid column by its name: a table made by
    hand without it fails `verify`; the one the migration made passes."""
    _project(tmp_path, [{"name": "v", "type": "uuid"}], [])
    made, by_hand = tmp_path / "made.db", tmp_path / "by_hand.db"
    assert cli("upgrade", "--url", f"sqlite:///{made}", root=tmp_path).exit_code == 0
    assert cli("verify", "--url", f"sqlite:///{made}", root=tmp_path).exit_code == 0
    revision = _rows_of(f"sqlite:///{made}", "SELECT version_num FROM alembic_version")
    execute(
        f"sqlite:///{by_hand}",
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        f"INSERT INTO alembic_version VALUES ('{revision[0][0]}')",
        "CREATE TABLE things (id INTEGER NOT NULL, v CHAR(36), PRIMARY KEY (id))",
    )
    result = cli("verify", "--url", f"sqlite:///{by_hand}", root=tmp_path)
    assert result.exit_code != 0
    assert "things.check_constraints" in result.output + result.stderr
    assert "v_is_uuid" in result.output + result.stderr


def _rows_of(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


@pytest.mark.db
def test_a_timestamp_now_default_is_the_time_in_utc(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    _project(tmp_path, [{"name": "at", "type": "timestamp", "default": "now"}], [])
    if dialect == "postgresql":
        name = sa.make_url(db_url).database
        execute(db_url, f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Kolkata'")  # +05:30
    assert cli("upgrade", "--url", db_url, root=tmp_path).exit_code == 0
    execute(db_url, "INSERT INTO things (id) VALUES (1)")
    utc = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    at = _norm(_rows(db_url, "at")[1], "timestamp", dialect)
    assert abs(at - utc) < datetime.timedelta(minutes=1), (at, utc)
