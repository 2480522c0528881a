"""widen_key: integer -> bigint on a primary key and every foreign-key column that references
it (transitively, a self-reference included), as one operation. The state converts every
column and keeps every key; the refusals name the field; run for real on both dialects with
rows, every value is kept, a value only bigint holds goes in, the downgrade is refused before
any DDL while it is there (its row named), and goes through once it is gone."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from ops_support import declared_mode, pg_locks_during, render_case, rows, storage
from support import GOLDEN, execute

from generator import migrate
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.ops.add_foreign_key import AddForeignKeyStep
from generator.ops.widen_key import KeySequenceStep, ReleaseForeignKeyStep
from generator.plan import plan

CASE = GOLDEN / "render" / "widen_key"
BIG = 2**31 + 7  # only bigint holds it

WIDENED = {
    ("accounts", "id"),
    ("accounts", "referrer_id"),
    ("profiles", "account_id"),
    ("notes", "profile_id"),
    ("orders", "account_id"),
    ("tags", "id"),
}


def test_the_state_widens_every_referencing_column_and_keeps_every_key(tmp_path: Path) -> None:
    change = load_changes(CASE / "changes", display_base=CASE)[1]
    for t in change.after.tables:
        for c in t.columns:
            expected = (
                "bigint"
                if (t.name, c.name) in WIDENED
                else str(change.before.get(t.name).column(c.name).type)
            )  # type: ignore[union-attr]
            assert str(c.type) == expected, (t.name, c.name)
    assert [t.foreign_keys for t in change.after.tables] == [
        t.foreign_keys for t in change.before.tables
    ]
    schema = change.after
    for step in change.inverse_steps:
        schema = step.apply(schema)
    assert schema == change.before
    released = [s for s in change.steps if isinstance(s, ReleaseForeignKeyStep)]
    added = [s for s in change.steps if isinstance(s, AddForeignKeyStep)]
    assert {s.fk for s in released} == {s.fk for s in added} and len(added) == 4
    # the keys come back unchecked for orphans: they held until the change dropped them
    assert not [c for s in added for c in s.prechecks(change.before)]
    # the downgrade lists a serial's sequence gone past integer before any DDL
    (seq,) = [
        s.reverse() for s in change.steps if isinstance(s, KeySequenceStep) and s.column.serial
    ]
    (check,) = seq.prechecks(change.after)
    assert "2147483647" in check.postgresql and "tags" in check.postgresql
    # PostgreSQL, online (the default): one online type change per table keyed by itself
    # only (the keys kept: no release, no restore), the table with a key to itself (accounts:
    # the swap cannot carry it) by the blocking ALTER, both ways
    for steps, before in ((change.steps, change.before), (change.inverse_steps, change.after)):
        units = plan(steps, before, "postgresql")
        kinds = [u.kind for u in units]
        assert not {"release_foreign_key", "validated_foreign_keys"} & set(kinds), kinds
        online = sorted(u.steps[0].table_name for u in units if u.kind == "online_type_change")
        assert online == ["notes", "orders", "profiles", "tags"], kinds
        assert [u.steps[0].table_name for u in units if u.kind == "alter_table"] == ["accounts"]
    # online: false, the keys released and restored: all DDL in the change's transaction,
    # the VALIDATEs after it, both ways
    blocking = load_changes(_blocking_case(tmp_path), display_base=tmp_path)[1]
    for steps, before in (
        (blocking.steps, blocking.before),
        (blocking.inverse_steps, blocking.after),
    ):
        kinds = [u.kind for u in plan(steps, before, "postgresql")]
        assert kinds.count("validated_foreign_keys") == 1, kinds
        assert "drop_foreign_key" not in kinds[kinds.index("validated_foreign_keys") :]
        assert "online_type_change" not in kinds, kinds


def _blocking_case(tmp_path: Path) -> Path:
    """The golden case's changes with ``online: false`` on each widen_key."""
    out = tmp_path / "changes"
    out.mkdir()
    for spec in (CASE / "changes").glob("*.yaml"):
        text = spec.read_text(encoding="utf-8").replace(
            "from: integer, to: bigint}", "from: integer, to: bigint, online: false}"
        )
        (out / spec.name).write_text(text, encoding="utf-8")
    return out


def test_refusals(tmp_path: Path) -> None:
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "0000_base.yaml").write_text(
        (CASE / "changes" / "0000_base.yaml").read_text()
    )
    (tmp_path / "changes" / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: widen_key, table: accounts, column: id, from: bigint, to: bigint}\n"
        "  - {op: widen_key, table: accounts, column: id, from: integer, to: smallint}\n"
        "  - {op: widen_key, table: orders, column: account_id, from: integer, to: bigint}\n"
        "  - {op: widen_key, table: notes, column: body, from: text, to: bigint}\n"
        "  - {op: widen_key, table: accounts, column: id, from: integer, to: text}\n"
        "  - {op: alter_column_type, table: accounts, column: id, from: integer, to: bigint}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(tmp_path / "changes", display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text
    assert "operations[0].from: column accounts.id is integer, not bigint" in text
    assert "operations[1].to: widen_key widens an integer key" in text
    assert "operations[2].column: orders.account_id references accounts.id: widen that key" in text
    assert "operations[3].to: widen_key widens an integer key" in text
    assert "operations[4].to: widen_key widens an integer key" in text
    assert "operations[5].column: cannot change the type of a primary key column (widen_key" in text


def test_a_plain_column_or_a_partial_index_is_refused(tmp_path: Path) -> None:
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "0000_base.yaml").write_text(
        "id: base\ndescription: b\noperations:\n"
        "  - op: create_table\n    name: p\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: n, type: integer}\n"
        "  - op: create_table\n    name: c\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: p_id, type: integer, references: {table: p}}\n"
        "    indexes:\n      - {name: ix_c_big, columns: [id], where: p_id > 10}\n"
    )
    (tmp_path / "changes" / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: widen_key, table: p, column: n, from: integer, to: bigint}\n"
        "  - {op: widen_key, table: p, column: id, from: integer, to: bigint}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(tmp_path / "changes", display_base=tmp_path)
    text = str(info.value)
    assert "operations[0].column: p.n is neither a primary key nor referenced" in text
    assert "operations[1].column: the predicate of index ix_c_big names c.p_id" in text


def test_a_key_in_an_expression_index_is_refused(tmp_path: Path) -> None:
    """An expression key is rendered and read back by its columns' types (coalesce(a, b)
    takes two columns of one type): widening a column inside one is refused at the line,
    whether it is the key itself or a column that references it; nothing is written."""
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "0000_base.yaml").write_text(
        "id: base\ndescription: b\noperations:\n"
        "  - op: create_table\n    name: p\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: n, type: integer}\n"
        "    indexes:\n      - {name: ix_p_id_n, columns: ['coalesce(n, id)']}\n"
        "  - op: create_table\n    name: c\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: p_id, type: integer, references: {table: p}}\n"
        "    indexes:\n      - {name: ix_c_p, columns: ['coalesce(p_id, 0)']}\n"
    )
    (tmp_path / "changes" / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: widen_key, table: p, column: id, from: integer, to: bigint}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(tmp_path / "changes", display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:39: operations[0].column: an expression key of index ix_p_id_n" in text
    assert "uses p.id: drop the index first, widen the key, then create the index again" in text
    assert "operations[0].column: an expression key of index ix_c_p uses c.p_id" in text
    # without the indexes the same widening is accepted
    base = (tmp_path / "changes" / "0000_base.yaml").read_text()
    (tmp_path / "changes" / "0000_base.yaml").write_text(
        "\n".join(line for line in base.splitlines() if "index" not in line and "ix_" not in line)
        + "\n"
    )
    load_changes(tmp_path / "changes", display_base=tmp_path)


SEEN = {
    "accounts": "SELECT id, referrer_id, email FROM accounts ORDER BY id",
    "profiles": "SELECT account_id, bio FROM profiles ORDER BY account_id",
    "notes": "SELECT id, profile_id, body FROM notes ORDER BY id",
    "orders": "SELECT id, account_id, total FROM orders ORDER BY id",
    "tags": "SELECT id, label FROM tags ORDER BY id",
}


def _all(url: str) -> dict[str, list[tuple[object, ...]]]:
    return {t: rows(url, sql) for t, sql in SEEN.items()}


def _types(url: str, dialect: str) -> dict[tuple[str, str], str]:
    if dialect == "postgresql":
        found = rows(
            url,
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema()",
        )
    else:
        found = [
            (t, name, kind.lower())
            for t in SEEN
            for _, name, kind, *_ in rows(url, f"PRAGMA table_info({t})")
        ]
    return {(t, c): k for t, c, k in found if (t, c) in WIDENED}


@pytest.mark.db
def test_run_for_real_keeps_every_value_and_refuses_a_downgrade_that_does_not_fit(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    changes, out = render_case("widen_key", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO accounts (id, referrer_id, email) VALUES (1, NULL, 'a@x'), (2, 1, 'b@x')",
        "INSERT INTO profiles (account_id, bio) VALUES (1, 'one'), (2, NULL)",
        "INSERT INTO notes (id, profile_id, body) VALUES (1, 1, 'n1'), (2, 2, 'n2')",
        "INSERT INTO orders (id, account_id, total) VALUES (1, 1, 9.5), (2, 2, 0)",
        "INSERT INTO tags (label) VALUES ('red'), ('blue')",
    )
    first = _all(db_url)
    before = {t: storage(db_url, t) for t in SEEN}
    migrate.upgrade(out, url, "head")
    assert _all(db_url) == first
    # the risk, proven: PostgreSQL rewrites a table exactly when a unit of the plan on it
    # says so; SQLite keeps the storage of a table no unit declares rebuilt (a table rebuilt
    # several times can land on its old root page again, so a rebuild is not proven by it)
    units = plan(changes[1].steps, changes[1].before, dialect)
    for t in SEEN:
        mine = [u for u in units if u.steps[0].table_name == t]
        declared = any(u.risk(dialect).rewrites for u in mine)
        # online, the table is swapped for its copy: new storage, no rewrite under a lock
        swapped = any(u.kind == "online_type_change" for u in mine)
        moved = storage(db_url, t) != before[t]
        assert (
            moved == (declared or swapped) if dialect == "postgresql" else declared or not moved
        ), t
    if dialect == "postgresql":
        assert set(_types(db_url, dialect).values()) == {"bigint"}
        seq = rows(
            db_url,
            "SELECT format_type(seqtypid, NULL) FROM pg_sequence "
            "WHERE seqrelid = pg_get_serial_sequence('tags', 'id')::regclass",
        )
        assert seq == [("bigint",)]
    else:  # the rowid keys stay INTEGER (64-bit); the others are declared BIGINT
        types = _types(db_url, dialect)
        assert types[("profiles", "account_id")] == "bigint"
        assert types[("accounts", "id")] == "integer"
    # a key only bigint holds, referenced along the whole chain, and the keys still hold
    execute(
        db_url,
        f"INSERT INTO accounts (id, referrer_id, email) VALUES ({BIG}, 2, 'big@x')",
        f"INSERT INTO profiles (account_id, bio) VALUES ({BIG}, 'big')",
        f"INSERT INTO notes (id, profile_id, body) VALUES (3, {BIG}, 'n3')",
        f"INSERT INTO orders (id, account_id, total) VALUES (3, {BIG}, 1)",
    )
    assert rows(db_url, "SELECT profile_id FROM notes WHERE id = 3") == [(BIG,)]
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO orders (id, account_id) VALUES (4, 999)")
    with pytest.raises(Exception) as refused:
        migrate.downgrade(out, url, "0000")
    assert str(BIG) in str(refused.value), refused.value
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("0001",)]
    # without those rows the same downgrade goes through, every value as it was
    execute(
        db_url,
        "DELETE FROM orders WHERE id = 3",
        "DELETE FROM notes WHERE id = 3",
        "DELETE FROM profiles WHERE account_id = " + str(BIG),
        "DELETE FROM accounts WHERE id = " + str(BIG),
    )
    migrate.downgrade(out, url, "0000")
    assert _all(db_url) == first
    if dialect == "postgresql":
        assert set(_types(db_url, dialect).values()) == {"integer"}
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO notes (id, profile_id, body) VALUES (9, 999, 'x')")
    migrate.upgrade(out, url, "head")
    assert _all(db_url) == first


@pytest.mark.db
def test_postgresql_downgrade_refuses_a_serial_sequence_past_integer(
    pg_database: str, tmp_path: Path
) -> None:
    from conftest import pg_url_for

    db_url = pg_url_for(pg_database)
    _, out = render_case("widen_key", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "head")
    execute(db_url, f"SELECT setval('tags_id_seq', {BIG})")
    with pytest.raises(Exception) as refused:
        migrate.downgrade(out, url, "0000")
    assert "tags.id.sequence" in str(refused.value) and str(BIG) in str(refused.value)
    execute(db_url, "SELECT setval('tags_id_seq', 5)")
    migrate.downgrade(out, url, "0000")
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("0000",)]


@pytest.mark.db
def test_postgresql_sequence_step_takes_the_declared_lock(pg_database: str) -> None:
    """The serial sequence's ALTER, held open in a transaction: pg_locks from a second
    connection shows the mode KeySequenceStep's Risk declares, on the sequence."""
    from conftest import pg_url_for

    change = load_changes(CASE / "changes", display_base=CASE)[1]
    (step,) = [s for s in change.steps if isinstance(s, KeySequenceStep) and s.column.serial]
    declared = step.risk("postgresql").lock.removesuffix(" on the sequence (brief)")
    modes = pg_locks_during(
        pg_url_for(pg_database),
        "tags_id_seq",
        ["CREATE TABLE tags (id serial PRIMARY KEY)"],
        ['ALTER SEQUENCE "tags_id_seq" AS bigint'],
    )
    assert declared_mode(declared) in modes
    assert "AccessExclusiveLock" not in modes


@pytest.mark.db
def test_postgresql_online_widen_keeps_every_key_under_a_writer(
    pg_database: str, tmp_path: Path
) -> None:
    """Online (the default), the keys are never dropped: an application session inserting
    orders through the whole change has every order kept, and every order that points at no
    account refused, whichever table is being copied or swapped; afterwards every key is
    validated and no order is an orphan."""
    import threading

    import psycopg
    from conftest import pg_url_for

    db_url = pg_url_for(pg_database)
    _, out = render_case("widen_key", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO accounts (id, email) SELECT g, 'a' || g FROM generate_series(1, 3000) g",
        "INSERT INTO profiles (account_id, bio) SELECT g, 'p' FROM generate_series(1, 3000) g",
        "INSERT INTO notes (id, profile_id, body) "
        "SELECT g, 1 + mod(g, 3000), 'n' FROM generate_series(1, 6000) g",
        "INSERT INTO orders (id, account_id, total) "
        "SELECT g, 1 + mod(g, 3000), g FROM generate_series(1, 6000) g",
        "INSERT INTO tags (label) SELECT 't' || g FROM generate_series(1, 3000) g",
    )
    keys = (
        "SELECT conrelid::regclass::text, conname, confdeltype FROM pg_constraint "
        "WHERE contype = 'f' ORDER BY 1, 2"
    )
    before = rows(db_url, keys)
    assert len(before) == 4
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    stop = threading.Event()
    inserted: list[int] = []
    refused: list[int] = []
    problems: list[object] = []

    def writer() -> None:
        n = 100_000
        with psycopg.connect(plain, autocommit=True) as conn:
            while not stop.is_set():
                n += 1
                try:
                    conn.execute(
                        "INSERT INTO orders (id, account_id, total) VALUES (%s, %s, 1)",
                        (n, 1 + n % 3000),
                    )
                    inserted.append(n)
                except Exception as exc:  # reported below
                    problems.append(exc)
                try:
                    conn.execute(
                        "INSERT INTO orders (id, account_id, total) VALUES (%s, 999999, 1)", (-n,)
                    )
                    problems.append(f"orphan order {-n} accepted")
                except psycopg.errors.ForeignKeyViolation:
                    refused.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        migrate.upgrade(out, url, "head")
    finally:
        stop.set()
        thread.join()
    assert not problems, problems[:3]
    assert inserted and refused
    kept = {r[0] for r in rows(db_url, "SELECT id FROM orders WHERE id > 100000")}
    assert kept == set(inserted)
    orphans = (
        "SELECT count(*) FROM orders AS o LEFT JOIN accounts AS a ON a.id = o.account_id "
        "WHERE a.id IS NULL"
    )
    assert rows(db_url, orphans) == [(0,)]
    assert set(_types(db_url, "postgresql").values()) == {"bigint"}
    assert rows(
        db_url, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
    ) == [(0,)]
    assert rows(db_url, keys) == before
