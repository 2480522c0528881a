"""add_unique / drop_unique: duplicates listed before any DDL; the index built CONCURRENTLY
then attached on PostgreSQL; the rows kept through up, down and up; the Risk proven (storage,
pg_locks from a second connection)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from ops_support import pg_locks_during, render_case, rows, storage
from support import GOLDEN, execute

from generator import migrate
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.ops.add_unique import AddUniqueStep
from generator.ops.drop_unique import DropUniqueStep
from generator.plan import plan
from generator.runtime import CheckFailed

CASE = GOLDEN / "render" / "add_unique"


def test_the_state_and_its_reverse() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    first = changes[1]
    assert [u.name for u in first.after.get("reviews").uniques] == ["uq_reviews_user_product"]
    schema = first.after
    for step in first.inverse_steps:
        assert isinstance(step, DropUniqueStep)
        schema = step.apply(schema)
    assert schema == first.before
    (drop,) = changes[2].steps
    assert isinstance(drop.reverse(), AddUniqueStep)
    assert [u.kind for u in plan(first.steps, first.before, "postgresql")] == ["unique_using_index"]


def test_refusals(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text((CASE / "changes" / "0000_base.yaml").read_text())
    (changes / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: add_unique, table: users, name: uq_a, columns: [id]}\n"
        "  - {op: add_unique, table: users, name: uq_b, columns: [nope]}\n"
        "  - {op: add_unique, table: users, name: users, columns: [handle]}\n"
        "  - op: create_table\n    name: subs\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: email, type: varchar(64), references: {table: users, column: email}}\n"
        "  - {op: drop_unique, table: users, name: uq_users_email}\n"
        "  - {op: drop_unique, table: users, name: uq_none}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text
    assert "operations[0].columns: (id) is already a key" in text
    assert "operations[1].columns[0]: column 'nope' does not exist" in text
    assert "operations[2].name: name 'users' is already used" in text
    assert "operations[4].name: foreign keys reference these columns: fk_subs_email_users" in text
    assert "operations[5].name: table 'users' has no unique 'uq_none'" in text


@pytest.mark.db
def test_duplicates_refused_then_up_down_up_with_rows(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    changes, out = render_case("add_unique", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO users (id, email, handle) VALUES (1, 'a@x', 'ann'), (2, 'b@x', NULL)",
        "INSERT INTO users (id, email, handle) VALUES (3, 'c@x', NULL), (4, 'd@x', 'dan')",
        "INSERT INTO reviews (id, user_id, product) VALUES (1, 1, 'pen'), (2, 1, 'pen')",
        "INSERT INTO reviews (id, user_id, product) VALUES (3, 2, 'pen')",
    )
    before = {t: storage(db_url, t) for t in ("users", "reviews")}
    with pytest.raises(CheckFailed) as refused:
        migrate.upgrade(out, url, "head")
    message = str(refused.value)
    assert "reviews.uq_reviews_user_product.duplicates" in message
    assert "users.uq_users_handle.duplicates" not in message  # two NULL handles: no collision
    assert {t: storage(db_url, t) for t in before} == before
    execute(db_url, "UPDATE reviews SET product = 'ink' WHERE id = 2")
    data = {t: rows(db_url, f"SELECT * FROM {t} ORDER BY id") for t in ("users", "reviews")}
    migrate.upgrade(out, url, "0001")
    units = plan(changes[1].steps, changes[1].before, dialect)
    for table in before:
        declared = any(
            u.risk(dialect).rewrites for u in units if any(s.table_name == table for s in u.steps)
        )
        assert (storage(db_url, table) != before[table]) == declared, table
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO reviews (id, user_id, product) VALUES (9, 1, 'pen')")
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO users (id, email, handle) VALUES (9, 'z@x', 'ann')")
    migrate.upgrade(out, url, "head")  # drop_unique on handle
    execute(db_url, "INSERT INTO users (id, email, handle) VALUES (9, 'z@x', 'ann')")
    with pytest.raises(CheckFailed, match=r"users\.uq_users_handle\.duplicates"):
        migrate.downgrade(out, url, "0001")
    execute(db_url, "DELETE FROM users WHERE id = 9")
    migrate.downgrade(out, url, "0000")
    for table, seen in data.items():
        assert rows(db_url, f"SELECT * FROM {table} ORDER BY id") == seen
    migrate.upgrade(out, url, "head")
    for table, seen in data.items():
        assert rows(db_url, f"SELECT * FROM {table} ORDER BY id") == seen


@pytest.mark.db
def test_postgresql_builds_without_blocking_writes_and_attaches_briefly(pg_database: str) -> None:
    url = pg_url_for(pg_database)
    declared = load_changes(CASE / "changes", display_base=CASE)[1].steps[0].risk("postgresql")
    execute(
        url,
        "CREATE TABLE t (id integer PRIMARY KEY, a text)",
        "INSERT INTO t SELECT g, 'x' || g FROM generate_series(1, 2000) g",
    )
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE UNIQUE INDEX CONCURRENTLY uq_t_a ON t (a)")
    finally:
        engine.dispose()
    before = storage(url, "t")
    attached = pg_locks_during(
        url, "t", [], ["ALTER TABLE t ADD CONSTRAINT uq_t_a UNIQUE USING INDEX uq_t_a"]
    )
    assert "AccessExclusiveLock" in attached and "ACCESS EXCLUSIVE (brief)" in declared.lock
    assert "SHARE UPDATE EXCLUSIVE" in declared.lock and not declared.rewrites
    assert storage(url, "t") == before
    assert rows(url, "SELECT contype FROM pg_constraint WHERE conname = 'uq_t_a'") == [("u",)]
