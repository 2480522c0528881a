"""Partial indexes whose ``where`` is a condition of the expression grammar: built, checked by
the validation's catalogue queries (the predicate as each database reads it back), used by the
planner, renamed with a column, dropped on the way down; refusals at their YAML line."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from ops_support import render_case, rows
from support import GOLDEN, execute

from generator import migrate
from generator.errors import SpecErrors
from generator.load import load_changes

CASE = GOLDEN / "render" / "partial_index"


def _verify(out: Path, url: str) -> str:
    revision, source, results, _ = migrate.verify(out, sa.make_url(url))
    failing = [(r.check.name, r.rows) for r in results if not r.passed]
    assert failing == [], f"verify at {revision} ({source}): {failing}"
    assert any(r.check.name == "orders.indexes" for r in results)
    return source


def _indexes(url: str, table: str) -> set[str]:
    if url.startswith("postgresql"):
        sql = f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}'"
    else:
        sql = f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}'"
    return {r[0] for r in rows(url, sql) if not str(r[0]).startswith(("sqlite_", "pk_"))}


def _plan(url: str, query: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if url.startswith("postgresql"):
                conn.exec_driver_sql("ANALYZE orders")
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                plan = conn.exec_driver_sql(f"EXPLAIN {query}").scalars().all()
            else:
                conn.exec_driver_sql("ANALYZE")
                plan = [r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")]
        return "\n".join(str(p) for p in plan)
    finally:
        engine.dispose()


def _descending(url: str, index: str) -> list[str]:
    """The index's key columns the database keeps in descending order."""
    if url.startswith("postgresql"):
        sql = (
            "SELECT a.attname FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid "
            "CROSS JOIN LATERAL unnest(x.indkey::int2[], x.indoption::int2[]) AS k(attnum, opt) "
            "JOIN pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
            f"WHERE i.relname = '{index}' AND k.opt & 1 = 1"
        )
    else:
        sql = f"SELECT name FROM pragma_index_xinfo('{index}') WHERE key AND \"desc\""
    return sorted(r[0] for r in rows(url, sql))


def test_the_state_keeps_trees_and_renames_through_them() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    orders = changes[1].after.get("orders")
    pending = orders.index("ix_orders_pending")
    assert pending is not None and pending.where_text == "status = 'pending'"
    renamed = changes[2].after.get("orders")
    after = renamed.index("ix_orders_pending")
    open_note = renamed.index("ix_orders_open_note")
    assert after is not None and after.where_text == "state = 'pending'"
    assert open_note is not None and "state < 'm'" in str(open_note.where_text)
    assert dict(open_note.column_types)["state"] == dict(pending.column_types)["status"]
    # the derived downgrade of the rename gives the predicate back
    schema = changes[2].after
    for step in changes[2].inverse_steps:
        schema = step.apply(schema)
    assert schema == changes[2].before


def test_refusals_at_their_line(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text((CASE / "changes" / "0000_base.yaml").read_text())
    (changes / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: create_index, table: orders, name: ix_a, columns: [id], where: 'qty >'}\n"
        "  - {op: create_index, table: orders, name: ix_b, columns: [id], where: 'lower(note)=1'}\n"
        "  - {op: create_index, table: orders, name: ix_c, columns: [id], where: 'qty + 1 > 2'}\n"
        "  - {op: create_index, table: orders, name: ix_d, columns: [id], where: 'nope IS NULL'}\n"
        "  - {op: create_index, table: orders, name: e, columns: [id], where: 'deleted_at>now'}\n"
        "  - {op: create_index, table: orders, name: ix_f, columns: [id], where: 'qty'}\n"
        "  - {op: create_index, table: orders, name: ix_g, columns: [id], where: 'qty > 0'}\n"
        "  - {op: alter_column_type, table: orders, column: qty, from: integer, to: bigint}\n"
        "  - {op: create_index, table: orders, name: ix_h, columns: [id], descending: [qty]}\n"
        "  - {op: create_index, table: orders, name: ix_i, columns: [id], include: [id, nope]}\n"
        "  - {op: create_index, table: orders, name: j, columns: [id], where: \"qty IN ('a')\"}\n"
        "  - {op: create_index, table: orders, name: k, columns: [id], where: 'qty IN (1, qty)'}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text and "operations[0].where: expected" in text
    assert "0001_bad.yaml:5:" in text and "operations[1].where:" in text
    assert "0001_bad.yaml:6:" in text and "operations[2].where: an index predicate takes" in text
    assert "operations[3].where: column 'nope' does not exist" in text
    assert "0001_bad.yaml:8:" in text and "operations[4].where:" in text
    assert "0001_bad.yaml:9:" in text and "operations[5].where:" in text
    assert "0001_bad.yaml:11:" in text and "the predicate of index ix_g names the column" in text
    assert "operations[8].descending[0]: 'qty' is not one of the columns" in text
    assert "operations[9].include[0]: 'id' is already a key column" in text
    assert "operations[9].include[1]: column 'nope' does not exist" in text
    assert "operations[10].where:" in text and "operations[11].where:" in text


def test_an_in_list_is_rendered_as_its_comparisons() -> None:
    """IN / NOT IN keep their tree (the review shows them as written) and render as the OR /
    AND of comparisons PostgreSQL reads back as written (the golden run proves the catalogue
    agrees on both dialects)."""
    from generator import expr, indexexpr
    from generator.coltypes import parse_type

    types = {"s": parse_type("varchar(20)"), "n": parse_type("integer")}
    tree = expr.parse("s IN ('a', 'b') AND NOT n NOT IN (1, -2)")
    assert indexexpr.unsupported(tree, types) is None
    assert expr.canonical(indexexpr.expanded(tree)) == (
        "(s = 'a' OR s = 'b') AND NOT (n <> 1 AND n <> -2)"
    )
    assert indexexpr.pg_deparsed(tree, types) == (
        "s::text = 'a'::text OR s::text = 'b'::text AND NOT n <> 1 AND n <> '-2'::integer"
    )


@pytest.mark.db
def test_up_verify_planner_rename_down_up(db_url: str, dialect: str, tmp_path: Path) -> None:
    _, out = render_case("partial_index", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    assert _verify(out, db_url) == "0000_base.post"
    values = ", ".join(
        f"({i}, '{'pending' if i % 50 == 0 else 'done'}', 'n{i}', {i % 7 - 3}, {i % 11}.5, "
        f"{'true' if i % 2 else 'false'}, NULL)"
        for i in range(1, 2001)
    )
    execute(db_url, f"INSERT INTO orders VALUES {values}")
    data = rows(db_url, "SELECT * FROM orders ORDER BY id")
    migrate.upgrade(out, url, "0001")
    assert _verify(out, db_url) == "0001_partial.post"
    assert {"ix_orders_pending", "ix_orders_live_qty", "ix_orders_open_note"} <= _indexes(
        db_url, "orders"
    )
    plan = _plan(db_url, "SELECT id FROM orders WHERE status = 'pending'")
    assert "ix_orders_pending" in plan, plan
    assert _descending(db_url, "ix_orders_recent") == ["price"]
    assert _descending(db_url, "ix_coupons_mid") == ["amount"]
    assert _descending(db_url, "ix_orders_live_qty") == []
    # INCLUDE on PostgreSQL (the catalogue check above compared indkey: active,status,note);
    # SQLite has no INCLUDE: the index holds its key alone
    if dialect == "postgresql":
        (definition,) = rows(
            db_url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_orders_active_cover'"
        )[0]
        assert definition.endswith("(active) INCLUDE (status, note)"), definition
    else:
        info = rows(db_url, "SELECT name FROM pragma_index_info('ix_orders_active_cover')")
        assert info == [("active",)]
    plan = _plan(db_url, "SELECT price, id FROM orders ORDER BY price DESC, id LIMIT 3")
    assert "ix_orders_recent" in plan, plan
    plan = _plan(db_url, "SELECT qty FROM orders WHERE deleted_at IS NULL AND qty > 0 AND qty = 2")
    assert "ix_orders_live_qty" in plan, plan
    # the unique partial index holds only where its predicate does
    execute(db_url, "INSERT INTO orders VALUES (5001, 'a', 'dup', -5, 1, true, NULL)")
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO orders VALUES (5002, 'a', 'dup', -5, 1, true, NULL)")
    execute(db_url, "INSERT INTO orders VALUES (5003, 'z', 'dup', -5, 1, true, NULL)")
    execute(db_url, "DELETE FROM orders WHERE id > 5000")
    migrate.upgrade(out, url, "head")
    assert _verify(out, db_url) == "0002_rename.post"
    plan = _plan(db_url, "SELECT id FROM orders WHERE state = 'pending'")
    assert "ix_orders_pending" in plan, plan
    migrate.downgrade(out, url, "0000")
    assert _verify(out, db_url) == "0000_base.post"
    assert _indexes(db_url, "orders") == set()
    assert rows(db_url, "SELECT * FROM orders ORDER BY id") == data
    migrate.upgrade(out, url, "head")
    assert _verify(out, db_url) == "0002_rename.post"
    assert rows(db_url, "SELECT * FROM orders ORDER BY id") == data


PREDICATES = [
    "qty > 3000000000",
    "qty > 1.5",
    "-1.5 < qty",
    "sm > 3 AND big > -3 AND f > 1.5 AND f > -2",
    "price > -5 AND f > -1.5 AND sm > 3000000000 AND f > 2 AND sm < -3",
    "status = 'pending' OR note <> 'it''s'",
    "status < 'm' AND 'a' < note",
    "qty = big",
    "NOT active OR active = false",
    "deleted_at IS NULL AND qty BETWEEN 1 AND 5",
    "price BETWEEN -1 AND 2.5",
]


@pytest.mark.db
def test_the_catalogue_reads_back_the_predicted_predicate(db_url: str, dialect: str) -> None:
    """Every predicate shape the tool accepts, as the validation's query reads it back from
    the database, equals what the tool predicts (checks.index_predicate)."""
    from generator import checks, expr
    from generator.coltypes import parse_type
    from generator.state import Index

    cols = {
        "qty": "integer",
        "big": "bigint",
        "sm": "smallint",
        "f": "float",
        "price": "decimal(10,2)",
        "status": "varchar(20)",
        "note": "text",
        "active": "boolean",
        "deleted_at": "timestamptz",
    }
    pg = {"decimal(10,2)": "numeric(10,2)", "float": "double precision"}
    lite = {"bigint": "BIGINT", "smallint": "SMALLINT", "timestamptz": "DATETIME"}
    ddl = ", ".join(
        f'"{n}" {(pg if dialect == "postgresql" else lite).get(t, t)}' for n, t in cols.items()
    )
    execute(db_url, f"CREATE TABLE t (id integer PRIMARY KEY, {ddl})")
    resolver_table = "t"
    for n, text in enumerate(PREDICATES):
        tree = expr.parse(text)
        used = tuple(sorted((c, parse_type(cols[c])) for c in expr.columns(tree)))
        index = Index(f"ix_{n}", resolver_table, ("id",), where=tree, column_types=used)
        execute(db_url, f'CREATE INDEX "ix_{n}" ON t (id) WHERE {index.where_sql(dialect)}')
        if dialect == "postgresql":
            sql = (
                "SELECT coalesce(translate(pg_get_expr(x.indpred, x.indrelid), '\"()', ''), '') "
                "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                f"WHERE i.relname = 'ix_{n}'"
            )
        else:
            sql = (
                "SELECT trim(replace(replace(replace(substr(sql, instr(upper(sql), ' WHERE ') + 7),"
                " '\"', ''), '(', ''), ')', '')) FROM sqlite_master WHERE name = "
                f"'ix_{n}'"
            )
        (actual,) = rows(db_url, sql)[0]
        assert actual == checks.index_predicate(index, dialect), text


def test_text_functions_of_a_column_are_predicted_as_postgresql_reads_them() -> None:
    """lower/upper against a string, length against an integer, of a text or varchar column:
    PostgreSQL casts a varchar to text, collates lower/upper's argument (the rendering's
    COLLATE "C") and calls length char_length (the golden run compares with the catalogue)."""
    from generator import expr, indexexpr
    from generator.coltypes import parse_type

    types = {"s": parse_type("varchar(20)"), "t": parse_type("text"), "n": parse_type("integer")}
    assert indexexpr.pg_deparsed(expr.parse("lower(s) = 'x' AND length(t) > 3"), types) == (
        "lower(s::text COLLATE C) = 'x'::text AND char_length(t) > 3"
    )
    assert indexexpr.pg_deparsed(expr.parse("upper(t) < 'M'"), types) == (
        "upper(t COLLATE C) COLLATE C < 'M'::text"
    )
    for refused in ("length(n) > 1", "lower(s) = 1", "length(s) = 'x'", "coalesce(s, 'a') = 'a'"):
        assert indexexpr.unsupported(expr.parse(refused), types), refused
