"""Expression index keys (``lower(email)``, ``upper``, ``length``, ``coalesce``) next to plain,
descending and covering keys: built on both dialects (CONCURRENTLY on PostgreSQL), compared
by the validation's catalogue queries (PostgreSQL's ``pg_get_indexdef`` per key, SQLite's
DDL), used by the planner, renamed with a column, dropped with it and built again on the way
down; a unique one refused while rows collide on the expression (the rows named, nothing
changed); anything outside the accepted shapes refused at its YAML line."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from ops_support import render_case, rows, storage
from support import GOLDEN, execute

from generator import checks, expr, indexexpr, migrate
from generator.coltypes import parse_type
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.runtime import CheckFailed
from generator.state import Index

CASE = GOLDEN / "render" / "expression_index"


def _failing(out: Path, url: str) -> tuple[str, list[tuple[str, object]]]:
    _revision, source, results, _ = migrate.verify(out, sa.make_url(url))
    assert any(r.check.name == "users.indexes" for r in results)
    return source, [(r.check.name, r.rows) for r in results if not r.passed]


def _verify(out: Path, url: str) -> str:
    source, failing = _failing(out, url)
    assert failing == [], f"verify ({source}): {failing}"
    return source


def _plan(url: str, query: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if url.startswith("postgresql"):
                conn.exec_driver_sql("ANALYZE users")
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                plan = conn.exec_driver_sql(f"EXPLAIN {query}").scalars().all()
            else:
                conn.exec_driver_sql("ANALYZE")
                plan = [r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")]
        return "\n".join(str(p) for p in plan)
    finally:
        engine.dispose()


def _indexes(url: str, table: str) -> set[str]:
    if url.startswith("postgresql"):
        sql = f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}'"
    else:
        sql = f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}'"
    return {r[0] for r in rows(url, sql) if not str(r[0]).startswith(("sqlite_", "pk_"))}


def test_the_state_keeps_trees_renames_inside_and_drops_with_the_column() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    users = changes[1].after.get("users")
    lower = users.index("ux_users_lower_email")
    assert lower is not None and lower.columns == ("lower(email)",) and lower.unique
    assert lower.key_expr("lower(email)") == expr.parse("lower(email)")
    assert lower.key_columns == {"email"}
    named = users.index("ix_users_tenant_name")
    assert named is not None and named.columns == ("tenant_id", "upper(name)")
    assert named.descending == ("upper(name)",) and named.include == ("email",)
    renamed = changes[2].after.get("users")
    after = renamed.index("ux_users_lower_email")
    assert after is not None and after.columns == ("lower(mail)",)
    assert after.key_expr("lower(mail)") == expr.parse("lower(mail)")
    assert dict(after.column_types) == {"mail": parse_type("text")}
    # drop_column dropped the index whose expression used the column (and builds it again
    # on the way down)
    assert renamed.index("ix_users_nick") is None
    schema = changes[2].after
    for step in changes[2].inverse_steps:
        schema = step.apply(schema)
    assert schema == changes[2].before
    # drop_index's derived downgrade builds the expression index as it was
    schema = changes[1].after
    for step in changes[1].inverse_steps:
        schema = step.apply(schema)
    assert schema == changes[1].before
    assert schema.get("tags").index("ix_tags_pinned") == changes[0].after.get("tags").index(
        "ix_tags_pinned"
    )


def test_review_lines() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    lines = [s.describe() for s in changes[1].steps]
    assert "create unique index `ux_users_lower_email` on `users` (lower(email))" in lines
    assert (
        "create index `ix_users_tenant_name` on `users` (tenant_id, upper(name) DESC) "
        "INCLUDE (email)"
    ) in lines


def test_refusals_at_their_line(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text((CASE / "changes" / "0000_base.yaml").read_text())
    (changes / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: create_index, table: users, name: ix_a, columns: ['lower(email']}\n"
        "  - {op: create_index, table: users, name: ix_b, columns: ['lower(tenant_id)']}\n"
        "  - {op: create_index, table: users, name: ix_c, columns: ['tenant_id + 1']}\n"
        "  - {op: create_index, table: users, name: ix_d, columns: ['lower(nope)']}\n"
        "  - {op: create_index, table: users, name: ix_e, columns: ['coalesce(email, 1)']}\n"
        "  - {op: create_index, table: users, name: ix_f, columns: ['lower(upper(email))']}\n"
        "  - {op: create_index, table: users, name: ix_g, columns: ['email', 'lower(email)'],"
        " descending: ['upper(email)']}\n"
        "  - {op: create_index, table: users, name: ix_h,"
        " columns: ['LOWER(email)', 'lower(email)']}\n"
        "  - {op: create_index, table: users, name: ix_i, columns: ['now']}\n"
        "  - {op: create_index, table: users, name: ix_j, columns: ['lower(email)']}\n"
        "  - {op: alter_column_type, table: users, column: email, from: text, to: varchar(90)}\n"
        "  - {op: create_index, table: users, name: ix_k, columns: ['email = 1']}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text and "operations[0].columns[0]: expected" in text
    assert "0001_bad.yaml:5:" in text and "operations[1].columns[0]:" in text
    assert "0001_bad.yaml:6:" in text and "operations[2].columns[0]: an index key is" in text
    assert "operations[3].columns[0]: column 'nope' does not exist" in text
    assert "0001_bad.yaml:8:" in text and "operations[4].columns[0]:" in text
    assert "0001_bad.yaml:9:" in text and "operations[5].columns[0]: an index key is" in text
    assert "operations[6].descending[0]: 'upper(email)' is not one of the columns" in text
    assert "operations[7].columns[1]: key 'lower(email)' is listed twice" in text
    assert "0001_bad.yaml:12:" in text and "operations[8].columns[0]:" in text
    assert "an expression key of index ix_j uses the column" in text
    assert "operations[11].columns[0]:" in text


def test_the_precheck_query_names_colliding_rows_only() -> None:
    """The duplicates query of a unique expression index, run on SQLite: case folded, NULLs
    and rows outside a partial index's predicate never collide."""
    import sqlite3

    from generator.ops.create_index import duplicate_rows
    from generator.state import Column, Table

    text, boolean = parse_type("text"), parse_type("boolean")
    table = Table(
        "u",
        (
            Column("id", parse_type("integer"), False, True),
            Column("email", text, True),
            Column("on", boolean, False),
        ),
    )
    index = Index(
        "ux",
        "u",
        ("lower(email)",),
        unique=True,
        expressions=(("lower(email)", expr.parse("lower(email)")),),
        column_types=(("email", text),),
    )
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE u (id integer PRIMARY KEY, email text, "on" boolean)')
    conn.executemany(
        "INSERT INTO u VALUES (?, ?, ?)",
        [(1, "A@x", 1), (2, "a@X", 0), (3, "b@x", 1), (4, None, 1), (5, None, 1)],
    )
    found = conn.execute(duplicate_rows(index, table).sqlite).fetchall()
    assert sorted(found) == [(1, "A@x"), (2, "a@X")]
    partial = Index(
        "ux",
        "u",
        index.columns,
        unique=True,
        expressions=index.expressions,
        where=expr.parse("on"),
        column_types=(("email", text), ("on", boolean)),
    )
    assert conn.execute(duplicate_rows(partial, table).sqlite).fetchall() == []


KEYS = [
    "lower(email)",
    "upper(name)",
    "length(email)",
    "length(name)",
    "coalesce(qty, 0)",
    "coalesce(qty, -3)",
    "coalesce(email, 'it''s')",
    "coalesce(name, 'x')",
    "coalesce(active, false)",
    "coalesce(qty, id)",
]


@pytest.mark.db
def test_the_catalogue_reads_back_the_predicted_keys(db_url: str, dialect: str) -> None:
    """Every expression-key shape the tool accepts, as the validation's query reads it back
    from the database, equals what the tool predicts (checks.index_row)."""
    cols = {
        "email": "text",
        "name": "varchar(40)",
        "qty": "integer",
        "active": "boolean",
        "id": "integer",
    }
    execute(
        db_url,
        "CREATE TABLE t (id integer PRIMARY KEY, email text, name varchar(40), qty integer, "
        "active boolean)",
    )
    types = {c: parse_type(t) for c, t in cols.items()}
    for n, text in enumerate(KEYS):
        tree = expr.parse(text)
        assert indexexpr.key_unsupported(tree, types) is None, text
        key = expr.canonical(tree)
        used = tuple(sorted((c, types[c]) for c in expr.columns(tree)))
        index = Index(
            f"ix_{n}",
            "t",
            ("id", key),
            descending=(key,),
            expressions=((key, tree),),
            column_types=used,
        )
        execute(db_url, f'CREATE INDEX "ix_{n}" ON t (id, ({index.key_sql(key)}) DESC)')
        if dialect == "postgresql":
            sql = (
                "SELECT string_agg(CASE WHEN k.attnum = 0 THEN translate(pg_get_indexdef("
                "x.indexrelid, k.ord::int, true), '\"()', '') ELSE a.attname::text END, ',' "
                "ORDER BY k.ord) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
                "LEFT JOIN "
                "pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
                f"WHERE i.relname = 'ix_{n}'"
            )
        else:
            sql = (
                "SELECT replace(replace(replace(replace(substr(sql, instr(sql, '(') + 1), "
                "'\"', ''), '(', ''), ')', ''), ' ', '') FROM sqlite_master WHERE name = "
                f"'ix_{n}'"
            )
        ((actual,),) = rows(db_url, sql)
        assert actual == checks.index_row(index, dialect)[1], text


@pytest.mark.db
def test_up_verify_planner_rename_down_up(db_url: str, dialect: str, tmp_path: Path) -> None:
    _, out = render_case("expression_index", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    assert _verify(out, db_url) == "0000_base.post"

    def nick(i: int) -> str:
        return f"'n{i}'" if i % 3 else "NULL"

    values = ", ".join(
        f"({i}, 'User{i}@Example.com', 'name {i}', {i % 9 if i % 4 else 'NULL'}, "
        f"{nick(i)}, {'true' if i % 2 else 'false'})"
        for i in range(1, 1501)
    )
    execute(db_url, f"INSERT INTO users VALUES {values}")
    execute(db_url, "INSERT INTO tags VALUES (1, 'Red', NULL), (2, 'blue', true)")
    data = {t: rows(db_url, f"SELECT * FROM {t} ORDER BY id") for t in ("users", "tags")}
    migrate.upgrade(out, url, "0001")
    assert _verify(out, db_url) == "0001_expression.post"
    assert {
        "ux_users_lower_email",
        "ix_users_tenant_name",
        "ix_users_nick",
        "ix_users_tenant_or_zero",
    } <= _indexes(db_url, "users")
    plan = _plan(db_url, "SELECT id FROM users WHERE lower(email) = 'user7@example.com'")
    assert "ux_users_lower_email" in plan, plan
    if dialect == "postgresql":
        (definition,) = rows(
            db_url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_users_tenant_name'"
        )[0]
        assert definition.endswith("(tenant_id, upper((name)::text) DESC) INCLUDE (email)")
    # unique on the lower-cased email: another case of an existing one collides
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO users VALUES (9001, 'USER7@example.COM', 'n', 1, NULL, true)")
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO tags VALUES (9, 'RED', NULL)")
    # verify compares the expression itself, not only the index's name
    if dialect == "postgresql":
        execute(
            db_url,
            "DROP INDEX ux_users_lower_email",
            "CREATE UNIQUE INDEX ux_users_lower_email ON users (upper(email))",
        )
    else:
        execute(
            db_url,
            "DROP INDEX ux_users_lower_email",
            'CREATE UNIQUE INDEX ux_users_lower_email ON users ((upper("email")))',
        )
    _source, failing = _failing(out, db_url)
    assert [name for name, _ in failing] == ["users.indexes"], failing
    execute(
        db_url,
        "DROP INDEX ux_users_lower_email",
        'CREATE UNIQUE INDEX ux_users_lower_email ON users ((lower("email")))',
    )
    assert _verify(out, db_url) == "0001_expression.post"
    migrate.upgrade(out, url, "head")
    assert _verify(out, db_url) == "0002_rename.post"
    plan = _plan(db_url, "SELECT id FROM users WHERE lower(mail) = 'user7@example.com'")
    assert "ux_users_lower_email" in plan, plan
    assert "ix_users_nick" not in _indexes(db_url, "users")
    migrate.downgrade(out, url, "0000")
    assert _verify(out, db_url) == "0000_base.post"
    assert _indexes(db_url, "users") == set()
    assert _indexes(db_url, "tags") == {"ux_tags_label", "ix_tags_pinned"}
    for table, seen in data.items():
        assert rows(db_url, f"SELECT * FROM {table} ORDER BY id") == seen
    migrate.upgrade(out, url, "head")
    assert _verify(out, db_url) == "0002_rename.post"
    assert rows(db_url, "SELECT * FROM tags ORDER BY id") == data["tags"]


@pytest.mark.db
def test_a_case_duplicate_refuses_the_unique_expression_index(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """Two emails equal but for their case: the unique index on lower(email) is refused
    before any DDL, naming both rows; nothing changed; once one is fixed it builds."""
    _, out = render_case("expression_index", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO users VALUES (1, 'Ann@x.org', 'a', 1, NULL, true), "
        "(2, 'ann@X.ORG', 'b', 1, NULL, true), (3, 'bob@x.org', 'c', NULL, NULL, false)",
    )
    data = rows(db_url, "SELECT * FROM users ORDER BY id")
    before = storage(db_url, "users")
    with pytest.raises(CheckFailed) as refused:
        migrate.upgrade(out, url, "0001")
    message = str(refused.value)
    assert "users.ux_users_lower_email.duplicates" in message
    assert "Ann@x.org" in message and "ann@X.ORG" in message and "bob@x.org" not in message
    assert _indexes(db_url, "users") == set()
    assert _indexes(db_url, "tags") == {"ux_tags_label", "ix_tags_pinned"}
    assert storage(db_url, "users") == before
    assert rows(db_url, "SELECT * FROM users ORDER BY id") == data
    assert _verify(out, db_url) == "0000_base.post"
    execute(db_url, "UPDATE users SET email = 'ann2@x.org' WHERE id = 2")
    migrate.upgrade(out, url, "0001")
    assert _verify(out, db_url) == "0001_expression.post"
