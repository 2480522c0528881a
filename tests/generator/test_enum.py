"""The ``enum`` type: a PostgreSQL enum type (created before the table that first uses it,
dropped after the last one on the way down), on SQLite a text column held to its labels by a
``CHECK (col IN (...))``. Created, filled, refused, inspected, converted and rolled back on
both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from support import cli, execute

from generator import db
from generator.cli import Exit
from generator.errors import SpecErrors
from generator.load import load_changes

STATUS = "enum(status_kind: pending, paid, shipped)"
BASE = f"""\
id: base
description: |
  Orders with a status.
operations:
  - op: create_table
    name: orders
    columns:
      - {{name: id, type: bigint, primary_key: true}}
      - {{name: status, type: "{STATUS}", nullable: false, default: pending}}
      - {{name: note, type: text, nullable: true}}
"""
CONVERT = f"""\
id: convert
description: |
  The status becomes text, the note an enum of the same type.
operations:
  - op: alter_column_type
    table: orders
    column: status
    from: "{STATUS}"
    to: text
  - op: alter_column_type
    table: orders
    column: note
    from: text
    to: "{STATUS}"
    acknowledge: {{SG103: "notes are statuses by now; the fit-check names any that is not"}}
"""


def _project(tmp_path: Path, *specs: str) -> Path:
    root = tmp_path / "p"
    assert cli("init", str(root)).exit_code == Exit.OK
    for number, text in enumerate(specs):
        name = text.split("\n", 1)[0].removeprefix("id: ")
        (root / "changes" / f"{number:04d}_{name}.yaml").write_text(text, "utf-8")
    result = cli("generate", root=root)
    assert result.exit_code == Exit.OK, result.output
    return root


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def _pg_types(url: str) -> list[tuple[object, ...]]:
    if not url.startswith("postgresql"):
        return []
    return _rows(
        url,
        "SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) "
        "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname",
    )


def test_enum_column_created_filled_refused_inspected_converted_and_rolled_back(
    tmp_path: Path, db_url: str
) -> None:
    root = _project(tmp_path, BASE, CONVERT)
    pg = db_url.startswith("postgresql")
    result = cli("upgrade", "--to", "0000", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert _pg_types(db_url) == ([("status_kind", "pending,paid,shipped")] if pg else [])
    execute(db_url, "INSERT INTO orders (id, status) VALUES (1, 'paid')")
    execute(db_url, "INSERT INTO orders (id) VALUES (2)")  # the default
    with pytest.raises(sa.exc.DBAPIError):  # not a label: the type (or the CHECK) refuses it
        execute(db_url, "INSERT INTO orders (id, status) VALUES (3, 'lost')")
    assert _rows(db_url, "SELECT id, status FROM orders ORDER BY id") == [
        (1, "paid"),
        (2, "pending"),
    ]
    assert cli("verify", "--url", db_url, root=root).exit_code == Exit.OK

    # inspect reads the type back as the spec wrote it (a PostgreSQL enum type; SQLite's CHECK)
    inspected = cli("inspect", "--url", db_url, "-o", "-", root=root)
    assert inspected.exit_code == Exit.OK, inspected.output
    assert (
        f"{{name: status, type: '{STATUS}', nullable: false, default: pending}}" in inspected.stdout
    ), inspected.stdout

    # text -> enum refuses a value that is not a label, naming it, before any DDL
    execute(db_url, "UPDATE orders SET note = 'lost' WHERE id = 1")
    refused = cli("upgrade", "--url", db_url, root=root)
    assert refused.exit_code == Exit.FAILED, refused.output
    assert "lost" in refused.output
    execute(db_url, "UPDATE orders SET note = 'shipped' WHERE id = 1")
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert cli("verify", "--url", db_url, root=root).exit_code == Exit.OK
    execute(db_url, "UPDATE orders SET status = 'anything' WHERE id = 2")  # text now
    with pytest.raises(sa.exc.DBAPIError):
        execute(db_url, "UPDATE orders SET note = 'lost' WHERE id = 2")
    # the type is still used (by note): kept
    assert _pg_types(db_url) == ([("status_kind", "pending,paid,shipped")] if pg else [])

    # back down: 'anything' is not a label, so the downgrade's pre-check refuses it
    refused = cli("downgrade", "--to", "0000", "--url", db_url, root=root)
    assert refused.exit_code == Exit.FAILED, refused.output
    execute(db_url, "UPDATE orders SET status = 'pending' WHERE id = 2")
    result = cli("downgrade", "--to", "0000", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert _rows(db_url, "SELECT id, status, note FROM orders ORDER BY id") == [
        (1, "paid", "shipped"),
        (2, "pending", None),
    ]
    result = cli("downgrade", "--to", "base", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert _pg_types(db_url) == []  # dropped after the table
    assert cli("upgrade", "--url", db_url, root=root).exit_code == Exit.OK
    if pg:  # the labels are checked, in order (SQLite: the CHECK by its name)
        execute(db_url, "ALTER TYPE status_kind ADD VALUE 'lost'")
        failed = cli("verify", "--url", db_url, root=root)
        assert failed.exit_code == Exit.FAILED, failed.output
        assert "enum_types" in failed.output and "pending,paid,shipped,lost" in failed.output


def test_inspect_round_trip_of_an_enum_schema(tmp_path: Path, db_url: str) -> None:
    """inspect -> generate -> upgrade an empty database -> inspect gives the same spec."""
    root = _project(tmp_path, BASE)
    assert cli("upgrade", "--url", db_url, root=root).exit_code == Exit.OK
    first = cli("inspect", "--url", db_url, "-o", "-", "--id", "baseline", root=root)
    assert first.exit_code == Exit.OK, first.output
    other = tmp_path / "q"
    assert cli("init", str(other)).exit_code == Exit.OK
    (other / "changes" / "0000_baseline.yaml").write_text(first.stdout, "utf-8")
    assert cli("generate", root=other).exit_code == Exit.OK
    second_db = (
        f"sqlite:///{tmp_path / 'second.db'}"
        if db_url.startswith("sqlite")
        else db_url.rsplit("/", 1)[0] + "/" + db_url.rsplit("/", 1)[1]
    )
    if db_url.startswith("postgresql"):
        # a second, empty schema of the same database stands in for an empty database
        execute(db_url, "CREATE SCHEMA second")
        second_db = db_url + "?options=-csearch_path%3Dsecond"
    result = cli("upgrade", "--url", second_db, root=other)
    assert result.exit_code == Exit.OK, result.output
    again = cli("inspect", "--url", second_db, "-o", "-", "--id", "baseline", root=other)
    assert again.exit_code == Exit.OK, again.output
    assert again.stdout == first.stdout
    assert STATUS in again.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            '{name: s, type: "enum(k: a, b)", nullable: false, default: c}',
            "default 'c' is not one of k's labels (a, b)",
        ),
        ('{name: s, type: "enum(k: a, a)", nullable: true}', "enum k lists a label twice"),
        ('{name: s, type: "enum(K: a)", nullable: true}', "its name and labels are lowercase"),
        ('{name: s, type: "enum(k: a-b)", nullable: true}', "enum label 'a-b'"),
        ('{name: s, type: "enum(t: a)", nullable: true}', "enum type name 't' is a table's"),
    ],
)
def test_a_bad_enum_is_an_error_naming_file_line_and_field(
    tmp_path: Path, spec: str, message: str
) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text(
        "id: base\ndescription: x\noperations:\n"
        "  - op: create_table\n    name: t\n    columns:\n"
        f"      - {{name: id, type: integer, primary_key: true}}\n      - {spec}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecErrors) as caught:
        load_changes(changes, display_base=tmp_path)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert message in text and "0000_base.yaml:8:" in text, text


def test_one_type_name_one_set_of_labels_and_enum_to_enum_goes_through_text(
    tmp_path: Path,
) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text(BASE, "utf-8")
    (changes / "0001_more.yaml").write_text(
        "id: more\ndescription: x\noperations:\n"
        "  - op: add_column\n    table: orders\n"
        '    column: {name: again, type: "enum(status_kind: pending, lost)", nullable: true}\n'
        "  - op: alter_column_type\n    table: orders\n    column: status\n"
        f'    from: "{STATUS}"\n    to: "enum(other_kind: a)"\n',
        "utf-8",
    )
    with pytest.raises(SpecErrors) as caught:
        load_changes(changes, display_base=tmp_path)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert "enum type status_kind has the labels pending, paid, shipped in the schema" in text
    assert "an enum's type or labels change through text" in text


def test_plan_shows_the_type_created_before_the_table_and_dropped_after_it(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path, BASE)
    up = cli("plan", "base", "--dialect", "postgresql", "--direction", "upgrade", root=root)
    assert up.exit_code == Exit.OK, up.output
    create = "CREATE TYPE status_kind AS ENUM ('pending', 'paid', 'shipped');"
    assert "-- lock: none on tables (create_enum_type)\n\n" + create in up.output
    assert up.output.index(create) < up.output.index("CREATE TABLE orders")
    down = cli("plan", "base", "--dialect", "postgresql", "--direction", "downgrade", root=root)
    assert down.exit_code == Exit.OK, down.output
    assert down.output.index("DROP TABLE orders") < down.output.index(
        "DROP TYPE IF EXISTS status_kind"
    )
    # The type's creation and removal are plan units with their Risk, as every step is.
    assert "-- lock: none on tables (drop_enum_type)\n\nDROP TYPE IF EXISTS status_kind" in (
        down.output
    )
    review = (root / "generated_migrations" / "review" / "0000_base.md").read_text("utf-8")
    assert "| create enum type (1 op) |  | none on tables | no |" in review
    sqlite = cli("plan", "base", "--dialect", "sqlite", "--direction", "upgrade", root=root)
    assert (
        "CONSTRAINT status_is_status_kind CHECK (\"status\" IN ('pending', 'paid', 'shipped'))"
        in sqlite.output
    )
    assert "CREATE TYPE" not in sqlite.output


RENAME = """\
id: rename
description: |
  The status is a state now, and the reference a key.
operations:
  - op: rename_column
    table: orders
    column: status
    to: state
  - op: rename_column
    table: orders
    column: ref
    to: key
"""


def test_renaming_an_enum_or_uuid_column_renames_sqlites_check_with_it(
    tmp_path: Path, db_url: str
) -> None:
    """SQLite keeps a renamed column's constraint names: the CHECK that holds an enum (or
    uuid) column to its values is named after the column, so the rename rebuilds the table
    with the CHECK under its new name; verify passes on both sides, and the values are still
    held to the labels."""
    base = BASE.replace(
        "      - {name: note, type: text, nullable: true}",
        "      - {name: note, type: text, nullable: true}\n"
        "      - {name: ref, type: uuid, nullable: true}",
    )
    root = _project(tmp_path, base, RENAME)
    assert cli("upgrade", "--to", "0000", "--url", db_url, root=root).exit_code == Exit.OK
    execute(db_url, "INSERT INTO orders (id, status) VALUES (1, 'paid')")
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    verified = cli("verify", "--url", db_url, root=root)
    assert verified.exit_code == Exit.OK, verified.output
    with pytest.raises(sa.exc.DBAPIError):
        execute(db_url, "INSERT INTO orders (id, state) VALUES (2, 'lost')")
    with pytest.raises(sa.exc.DBAPIError):
        execute(db_url, "INSERT INTO orders (id, key) VALUES (3, 'not-a-uuid')")
    result = cli("downgrade", "--to", "0000", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert cli("verify", "--url", db_url, root=root).exit_code == Exit.OK
    assert _rows(db_url, "SELECT id, status FROM orders") == [(1, "paid")]
