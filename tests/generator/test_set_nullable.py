"""set_nullable: NOT NULL refused while NULL rows exist (listed before any DDL); with a fill,
the filled rows' keys kept aside and set back to NULL exactly by the downgrade; its Risk
proven on both databases (storage, pg_locks from a second connection, and PostgreSQL's own
word that SET NOT NULL was proven by the validated check instead of a scan)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import pg_url_for
from ops_support import pg_locks_during, render_case, render_project, rows, storage
from support import GOLDEN, execute

from generator import migrate, risk
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.ops.set_nullable import SetNullableStep
from generator.plan import plan
from generator.runtime import CheckFailed

CASE = GOLDEN / "render" / "set_nullable"
ASIDE = "filled_0001_customers_country"


def test_the_state_and_its_reverse() -> None:
    change = load_changes(CASE / "changes", display_base=CASE)[1]
    after = change.after.get("customers")
    assert [(c.name, c.nullable) for c in after.columns] == [
        ("id", False),
        ("email", False),
        ("country", False),
        ("score", True),
    ]
    aside = change.after.get(ASIDE)
    assert aside.primary_key == ("id",)
    schema = change.after
    for step in change.inverse_steps:
        assert isinstance(step, SetNullableStep)
        schema = step.apply(schema)
    assert schema == change.before
    assert [u.kind for u in plan(change.steps, change.before, "postgresql")] == [
        "validated_not_null",
        "set_nullable",
    ]


def test_refusals(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text((CASE / "changes" / "0000_base.yaml").read_text())
    (changes / "0001_bad.yaml").write_text(
        "id: bad\ndescription: b\noperations:\n"
        "  - {op: set_nullable, table: customers, column: score, nullable: false}\n"
        "  - {op: set_nullable, table: customers, column: email, nullable: false, fill: 3}\n"
        "  - {op: set_nullable, table: customers, column: id, nullable: true}\n"
        "  - {op: set_nullable, table: customers, column: email, nullable: true, fill: x}\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_changes(changes, display_base=tmp_path)
    text = str(info.value)
    assert "0001_bad.yaml:4:" in text
    assert "operations[0].nullable: customers.score is already NOT NULL" in text
    assert "operations[1].fill: a varchar(64) default must be a string" in text
    assert "operations[2].nullable: a primary key column cannot be nullable" in text
    assert "operations[3].fill: fill is for nullable: false" in text


@pytest.mark.db
def test_nulls_refused_then_filled_and_restored_exactly(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    changes, out = render_case("set_nullable", tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(
        db_url,
        "INSERT INTO customers (id, email, country) VALUES (1, NULL, NULL)",
        "INSERT INTO customers (id, email, country) VALUES (2, 'b@x', 'ZZ')",
        "INSERT INTO customers (id, email, country) VALUES (3, 'c@x', NULL)",
        "INSERT INTO customers (id, email, country) VALUES (4, 'd@x', 'DE')",
        "INSERT INTO orders (id, customer_id) VALUES (1, 3)",
    )
    before = storage(db_url, "customers")
    with pytest.raises(CheckFailed) as refused:
        migrate.upgrade(out, url, "head")
    assert "customers.email.nulls" in str(refused.value)
    assert storage(db_url, "customers") == before  # no DDL ran
    execute(db_url, "UPDATE customers SET email = 'a@x' WHERE id = 1")
    seen = "SELECT id, email, country, score FROM customers ORDER BY id"
    original = rows(db_url, seen)
    migrate.upgrade(out, url, "head")
    assert rows(db_url, seen) == [
        (1, "a@x", "ZZ", 0),
        (2, "b@x", "ZZ", 0),
        (3, "c@x", "ZZ", 0),
        (4, "d@x", "DE", 0),
    ]
    assert rows(db_url, f"SELECT id FROM {ASIDE} ORDER BY id") == [(1,), (3,)]
    units = plan(changes[1].steps, changes[1].before, dialect)
    assert (storage(db_url, "customers") != before) == any(u.risk(dialect).rewrites for u in units)
    with pytest.raises(sa.exc.IntegrityError):
        execute(db_url, "INSERT INTO customers (id, email, country) VALUES (9, 'x', NULL)")
    execute(db_url, "INSERT INTO customers (id, email, score) VALUES (9, 'x', NULL)")  # nullable
    execute(db_url, "DELETE FROM customers WHERE id = 9")
    migrate.downgrade(out, url, "0000")
    assert rows(db_url, seen) == original  # row 2's own 'ZZ' stays, rows 1 and 3 NULL again
    assert rows(db_url, "SELECT id, customer_id FROM orders") == [(1, 3)]
    migrate.upgrade(out, url, "head")
    assert rows(db_url, f"SELECT id FROM {ASIDE} ORDER BY id") == [(1,), (3,)]


@pytest.mark.db
def test_postgresql_never_scans_under_access_exclusive(pg_database: str) -> None:
    url = pg_url_for(pg_database)
    step = load_changes(CASE / "changes", display_base=CASE)[1].steps[0]
    declared = step.risk("postgresql")
    execute(
        url,
        "CREATE TABLE t (id integer PRIMARY KEY, a text)",
        "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 2000) g",
    )
    before = storage(url, "t")
    added = pg_locks_during(
        url, "t", [], ["ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID"]
    )
    validating = pg_locks_during(url, "t", [], ["ALTER TABLE t VALIDATE CONSTRAINT t_a_nn"])
    assert "AccessExclusiveLock" in added and declared.lock.startswith("ACCESS EXCLUSIVE")
    assert "ShareUpdateExclusiveLock" in validating and "AccessExclusiveLock" not in validating
    assert "SHARE UPDATE EXCLUSIVE" in declared.lock
    # PostgreSQL says, at DEBUG1, when a valid CHECK proves the column has no NULL (no scan).
    notices: list[str] = []
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            raw: Any = conn.connection.driver_connection
            raw.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            conn.exec_driver_sql("SET client_min_messages = debug1")
            conn.exec_driver_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL")
            conn.exec_driver_sql("ALTER TABLE t DROP CONSTRAINT t_a_nn")
    finally:
        engine.dispose()
    assert any("sufficient to prove" in n for n in notices), notices
    assert storage(url, "t") == before and not declared.rewrites
    # The fill's trigger: created under SHARE ROW EXCLUSIVE (writers wait only while it
    # commits), dropped under ACCESS EXCLUSIVE (in SET NOT NULL's transaction); no rewrite.
    filled = load_changes(CASE / "changes", display_base=CASE)[1].steps[1]
    assert isinstance(filled, SetNullableStep) and filled.aside is not None
    with_trigger = filled.risk("postgresql")
    execute(
        url,
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    )
    created = pg_locks_during(
        url,
        "t",
        [],
        [
            "CREATE OR REPLACE TRIGGER tr BEFORE INSERT OR UPDATE ON t "
            "FOR EACH ROW EXECUTE FUNCTION f()"
        ],
    )
    assert "ShareRowExclusiveLock" in created and "AccessExclusiveLock" not in created
    assert risk.TRIGGER_LOCK in with_trigger.lock and "trigger" in with_trigger.why
    dropped = pg_locks_during(url, "t", [], ["DROP TRIGGER tr ON t"])
    assert "AccessExclusiveLock" in dropped and with_trigger.lock.startswith("ACCESS EXCLUSIVE")
    assert storage(url, "t") == before and not with_trigger.rewrites


@pytest.mark.db
def test_a_fill_that_would_repeat_a_unique_value_is_refused_before_any_ddl(
    db_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    (root / "changes").mkdir(parents=True)
    (root / "changes" / "0000_base.yaml").write_text(
        "id: base\ndescription: b\noperations:\n"
        "  - op: create_table\n    name: t\n    columns:\n"
        "      - {name: id, type: integer, primary_key: true}\n"
        "      - {name: code, type: varchar(8), nullable: true, unique: true}\n"
    )
    (root / "changes" / "0001_fill.yaml").write_text(
        "id: fill\ndescription: f\noperations:\n"
        "  - {op: set_nullable, table: t, column: code, nullable: false, fill: z}\n"
    )
    _, out = render_project(root, tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(db_url, "INSERT INTO t (id, code) VALUES (1, NULL), (2, 'a'), (3, 'z')")
    with pytest.raises(CheckFailed, match=r"t\.code\.fill_repeats"):
        migrate.upgrade(out, url, "head")
    execute(db_url, "DELETE FROM t WHERE id = 3")  # one NULL, no 'z': the fill is unique
    migrate.upgrade(out, url, "head")
    assert rows(db_url, "SELECT id, code FROM t ORDER BY id") == [(1, "z"), (2, "a")]
    migrate.downgrade(out, url, "0000")
    assert rows(db_url, "SELECT id, code FROM t ORDER BY id") == [(1, None), (2, "a")]


def _fill_project(root: Path) -> None:
    (root / "changes").mkdir(parents=True)
    (root / "changes" / "0000_base.yaml").write_text(
        "id: base\ndescription: b\noperations:\n"
        "  - op: create_table\n    name: t\n    columns:\n"
        "      - {name: id, type: bigint, primary_key: true}\n"
        "      - {name: qty, type: integer, nullable: true}\n"
        "      - {name: note, type: text, nullable: true}\n"
    )
    (root / "changes" / "0001_fill.yaml").write_text(
        "id: fill\ndescription: f\noperations:\n"
        "  - {op: set_nullable, table: t, column: qty, nullable: false, fill: 0}\n"
    )


@pytest.mark.db
def test_a_row_written_since_the_fill_keeps_its_value_on_the_way_back(
    db_url: str, tmp_path: Path
) -> None:
    # The downgrade sets back to NULL the kept rows that still hold the fill: a value the
    # application wrote into a kept row after the change is its own, and stays.
    root = tmp_path / "project"
    _fill_project(root)
    _, out = render_project(root, tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(db_url, "INSERT INTO t (id, qty) VALUES (1, NULL), (2, NULL), (3, 0), (4, 5)")
    migrate.upgrade(out, url, "head")
    seen = "SELECT id, qty FROM t ORDER BY id"
    assert rows(db_url, seen) == [(1, 0), (2, 0), (3, 0), (4, 5)]
    execute(db_url, "UPDATE t SET qty = 9 WHERE id = 2")  # the new application's own value
    migrate.downgrade(out, url, "0000")
    assert rows(db_url, seen) == [(1, None), (2, 9), (3, 0), (4, 5)]


class _NullWriter:
    """The old application, still running: single statements in autocommit that write NULL
    into ``t.qty`` (INSERTs of new rows, UPDATEs of existing ones) and, between them, explicit
    values (one equal to the fill). Every statement's error is recorded."""

    def __init__(self, dsn: str, first_id: int, victims: list[int]) -> None:
        self.dsn, self.next_id, self.victims = dsn, first_id, list(victims)
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.null_ids: set[int] = set()  # rows the writer made NULL (inserted or updated)
        self.values: dict[int, int] = {}  # rows the writer inserted with a value of its own
        self.filled_at_once = 0  # INSERTs of NULL that read back the fill (the trigger)
        self.thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                self.next_id += 1
                try:
                    if n % 5 == 0 and self.victims:
                        victim = self.victims.pop()
                        conn.execute("UPDATE t SET qty = NULL WHERE id = %s", (victim,))
                        self.null_ids.add(victim)
                    elif n % 7 == 0:
                        value = 0 if n % 2 else 7  # an explicit 0: the application's own
                        conn.execute(
                            "INSERT INTO t (id, qty) VALUES (%s, %s)", (self.next_id, value)
                        )
                        self.values[self.next_id] = value
                    else:
                        got = conn.execute(
                            "INSERT INTO t (id, qty, note) VALUES (%s, NULL, 'w') RETURNING qty",
                            (self.next_id,),
                        ).fetchone()
                        self.null_ids.add(self.next_id)
                        self.filled_at_once += got is not None and got[0] == 0
                except Exception as exc:  # every failure is the finding
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.0005)


@pytest.mark.db
def test_postgresql_fill_under_a_live_writer_of_nulls(pg_database: str, tmp_path: Path) -> None:
    """A writer keeps inserting NULLs and updating rows to NULL while the change runs: the
    upgrade succeeds, no writer statement fails, every NULL it wrote ends up as the fill, and
    the downgrade sets back to NULL exactly the rows this change filled (the NULLs before it
    and the writer's), no row the writer gave a value of its own."""
    db_url = pg_url_for(pg_database)
    root = tmp_path / "project"
    _fill_project(root)
    _, out = render_project(root, tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    size = 200_000
    execute(
        db_url,
        "INSERT INTO t SELECT g, CASE WHEN mod(g, 50) = 0 THEN NULL WHEN mod(g, 50) = 1 THEN 0 "
        f"ELSE mod(g, 50) END, 'n' FROM generate_series(1, {size}) g",
    )
    before = dict(rows(db_url, "SELECT id, qty FROM t"))
    nulls_before = {i for i, q in before.items() if q is None}
    victims = [i for i in range(3, size, 97) if before[i] is not None][:400]
    dsn = sa.make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    writer = _NullWriter(dsn, size + 1000, victims)

    # The writer runs until the statement that makes the column NOT NULL (after the trigger,
    # the fill, the NOT VALID check and its VALIDATE): from then on a NULL is refused, which
    # is the change's purpose, not a failure of the way it gets there.
    def stop_before_set_not_null(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if re.search(r'ALTER COLUMN "?qty"? SET NOT NULL', statement):
            writer.stop.set()
            writer.thread.join(timeout=30)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", stop_before_set_not_null)
    try:
        writer.thread.start()
        time.sleep(0.3)  # writes before the change starts, too
        migrate.upgrade(out, url, "head")
    finally:
        writer.stop.set()
        writer.thread.join(timeout=30)
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", stop_before_set_not_null)
    assert writer.errors == []
    assert len(writer.null_ids) > 100 and writer.filled_at_once > 10, (
        len(writer.null_ids),
        writer.filled_at_once,
    )
    after = dict(rows(db_url, "SELECT id, qty FROM t"))
    for i in writer.null_ids | nulls_before:
        assert after[i] == 0, i
    for i, value in writer.values.items():
        assert after[i] == value, i
    assert rows(db_url, "SELECT count(*) FROM pg_trigger WHERE left(tgname, 7) = 'filled_'") == [
        (0,)
    ]
    assert rows(db_url, "SELECT count(*) FROM pg_proc WHERE left(proname, 7) = 'filled_'") == [(0,)]

    migrate.downgrade(out, url, "0000")
    restored = dict(rows(db_url, "SELECT id, qty FROM t"))
    made_null = writer.null_ids | nulls_before
    assert {i for i, q in restored.items() if q is None} == made_null
    for i, q in restored.items():
        if i not in made_null:  # untouched: the rows before, the writer's own values
            assert q == (before[i] if i in before else writer.values[i]), i


@pytest.mark.db
def test_postgresql_an_upgrade_failing_after_the_trigger_is_undone_by_the_downgrade(
    pg_database: str, tmp_path: Path
) -> None:
    """The upgrade fails at VALIDATE, after its trigger and fill have committed: the trigger
    stays (writes of NULL go on succeeding, filled); the downgrade drops it first, then sets
    back to NULL the rows kept, the fill's and the trigger's."""
    db_url = pg_url_for(pg_database)
    root = tmp_path / "project"
    _fill_project(root)
    _, out = render_project(root, tmp_path)
    url = sa.make_url(db_url)
    migrate.upgrade(out, url, "0000")
    execute(db_url, "INSERT INTO t (id, qty) VALUES (1, NULL), (2, 0), (3, 4)")

    def fail_at_validate(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "VALIDATE CONSTRAINT" in statement:
            raise RuntimeError("killed at VALIDATE")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", fail_at_validate)
    try:
        with pytest.raises(RuntimeError, match="killed at VALIDATE"):
            migrate.upgrade(out, url, "head")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", fail_at_validate)
    seen = "SELECT id, qty FROM t ORDER BY id"
    assert rows(db_url, seen) == [(1, 0), (2, 0), (3, 4)]
    execute(
        db_url, "INSERT INTO t (id, qty) VALUES (4, NULL)", "UPDATE t SET qty = NULL WHERE id = 3"
    )
    assert rows(db_url, seen) == [(1, 0), (2, 0), (3, 0), (4, 0)]  # the trigger, still there
    migrate.downgrade(out, url, "0000")
    assert rows(db_url, seen) == [(1, None), (2, 0), (3, None), (4, None)]
    assert rows(db_url, "SELECT count(*) FROM pg_trigger WHERE left(tgname, 7) = 'filled_'") == [
        (0,)
    ]
    execute(db_url, "INSERT INTO t (id, qty) VALUES (5, NULL)")  # no trigger, no check left
    migrate.upgrade(out, url, "head")
    assert rows(db_url, seen) == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]
