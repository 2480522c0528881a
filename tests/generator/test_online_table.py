"""The online type change by shadow table (generator/online_table.py) carries everything the
table is to the new one: its identity's position, the foreign keys that point at it (their
actions kept, validated again), its unique constraint, indexes, grants and comment; both
ways, every row kept. A table the swap cannot carry (a view on it) takes the shadow columns
under ``auto`` and is refused, naming the view, under ``--online-method table``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from ops_support import render_project, rows

from generator import guard, migrate, online

pytestmark = [pytest.mark.db]

BASE = """id: base
description: Accounts (an identity key, a unique code) and the transfers that point at them.
operations:
  - op: create_table
    name: accounts
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: code, type: varchar(16), nullable: false, unique: true}
      - {name: balance, type: "decimal(12,4)", nullable: false, default: 0}
    indexes:
      - {name: ix_accounts_balance, columns: [balance]}
      - {name: ix_accounts_code_balance, columns: [code, balance]}
  - op: create_table
    name: transfers
    columns:
      - {name: id, type: bigint, primary_key: true}
      - name: account_id
        type: integer
        nullable: false
        references: {table: accounts, column: id, on_delete: restrict}
      - {name: amount, type: "decimal(12,4)", nullable: true}
"""
CONVERT = """id: convert
description: Balances to float, online.
operations:
  - {op: alter_column_type, table: accounts, column: balance, from: "decimal(12,4)", to: float}
"""


@pytest.fixture
def pg_url(pg_database: str) -> str:
    from conftest import pg_url_for

    return pg_url_for(pg_database)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    changes = tmp_path / "project" / "changes"
    changes.mkdir(parents=True)
    (changes / "0000_base.yaml").write_text(BASE, encoding="utf-8")
    (changes / "0001_convert.yaml").write_text(CONVERT, encoding="utf-8")
    _, out = render_project(tmp_path / "project", tmp_path)
    return out


@pytest.fixture
def role(pg_url: str) -> Iterator[str]:
    """A role's name (roles are the server's, not the database's): dropped afterwards."""
    name = f"sg_reader_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


def _plain(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _seed(url: str, role: str) -> None:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO accounts (code, balance) SELECT 'a' || g, g * 1.2345 "
            "FROM generate_series(1, 2500) AS g"
        )
        conn.execute(
            "INSERT INTO transfers (id, account_id, amount) SELECT g, 1 + g % 2490, g * 0.5 "
            "FROM generate_series(1, 3000) AS g"
        )
        conn.execute("DELETE FROM accounts WHERE id > 2490")  # the sequence is ahead of max
        conn.execute(f'CREATE ROLE "{role}"')
        conn.execute(f'GRANT SELECT, UPDATE ON accounts TO "{role}"')
        conn.execute("COMMENT ON TABLE accounts IS 'one row per account'")


def _facts(url: str, role: str) -> dict[str, Any]:
    """What the swap must carry, read from the catalogue."""
    one = rows(
        url,
        "SELECT format_type(a.atttypid, a.atttypmod), obj_description(c.oid, 'pg_class'), "
        f"has_table_privilege('{role}', c.oid, 'SELECT'), "
        f"has_table_privilege('{role}', c.oid, 'UPDATE'), "
        f"has_table_privilege('{role}', c.oid, 'DELETE'), "
        "pg_get_serial_sequence('accounts', 'id') "
        "FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid "
        "WHERE c.relname = 'accounts' AND a.attname = 'balance'",
    )[0]
    constraints = rows(
        url,
        "SELECT conrelid::regclass::text, conname, contype, confdeltype, convalidated "
        "FROM pg_constraint WHERE conrelid IN ('accounts'::regclass, 'transfers'::regclass) "
        "AND contype IN ('p', 'u', 'f') ORDER BY 1, 2",
    )
    indexes = rows(
        url,
        "SELECT indexname, regexp_replace(indexdef, 'INDEX \\S+ ', 'INDEX ') FROM pg_indexes "
        "WHERE tablename = 'accounts' ORDER BY 1",
    )
    tables = rows(url, "SELECT relname FROM pg_class WHERE left(relname, 3) = 'sg_'")
    return {
        "type": one[0],
        "comment": one[1],
        "grants": one[2:5],
        "sequence": one[5],
        "constraints": constraints,
        "indexes": indexes,
        "leftovers": tables,
    }


def _accounts(url: str) -> dict[int, tuple[str, Decimal]]:
    return {
        int(r[0]): (str(r[1]), Decimal(str(r[2])).quantize(Decimal("0.0001")))
        for r in rows(url, "SELECT id, code, balance FROM accounts")
    }


def test_the_swap_carries_keys_identity_grants_and_comment_both_ways(
    pg_url: str, project: Path, caplog: Any, role: str
) -> None:
    u = sa.make_url(pg_url)
    caplog.set_level(logging.INFO, logger="schemagen")
    migrate.upgrade(project, u, "0000")
    _seed(pg_url, role)
    before, facts = _accounts(pg_url), _facts(pg_url, role)
    assert facts["type"] == "numeric(12,4)"
    migrate.upgrade(project, u, "0001", settings=guard.Settings(online_method="table"))
    assert "path: online (shadow table)" in caplog.text
    after = _facts(pg_url, role)
    assert after["type"] == "double precision"
    # everything else as it was: names, the key's action (RESTRICT), validated, grants
    assert {k: v for k, v in after.items() if k != "type"} == {
        k: v for k, v in facts.items() if k != "type"
    }
    assert _accounts(pg_url) == before
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        # the identity continues after the old sequence's position, not at 1 or max + 1
        new_id = conn.execute(
            "INSERT INTO accounts (code, balance) VALUES ('new', 1) RETURNING id"
        ).fetchone()
        assert new_id is not None and new_id[0] == 2501
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # RESTRICT holds
            conn.execute("DELETE FROM accounts WHERE id = 2")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # and points at it
            conn.execute("INSERT INTO transfers (id, account_id) VALUES (1000000, 999999)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO accounts (code, balance) VALUES ('a1', 0)")
        conn.execute("DELETE FROM accounts WHERE id = 2501")
    caplog.clear()
    migrate.downgrade(project, u, "0000", settings=guard.Settings(online_method="table"))
    assert "path: online (shadow table)" in caplog.text
    assert _facts(pg_url, role) == facts
    assert _accounts(pg_url) == before


def test_a_view_keeps_the_shadow_columns_and_refuses_the_table(
    pg_url: str, project: Path, caplog: Any
) -> None:
    u = sa.make_url(pg_url)
    migrate.upgrade(project, u, "0000")
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO accounts (code, balance) SELECT 'a' || g, g FROM generate_series(1, 50) g"
        )
        # on another column: a view on a converted column stops either method (and the
        # blocking ALTER): PostgreSQL cannot change the type of a column a view uses
        conn.execute("CREATE VIEW codes AS SELECT code FROM accounts WHERE code > 'a4'")
    with pytest.raises(RuntimeError) as refused:
        migrate.upgrade(project, u, "0001", settings=guard.Settings(online_method="table"))
    assert "cannot swap in a new table: views or rules use it (codes)" in str(refused.value)
    assert rows(pg_url, "SELECT relname FROM pg_class WHERE left(relname, 3) = 'sg_'") == []
    caplog.set_level(logging.INFO, logger="schemagen")
    migrate.upgrade(project, u, "0001")  # auto
    assert "by shadow columns: the table cannot be swapped (views or rules use it (codes))" in (
        caplog.text
    )
    assert "path: online (shadow columns)" in caplog.text
    assert rows(pg_url, "SELECT count(*) FROM codes") == [(16,)]  # a40 .. a49, a5 .. a9, a50
    assert rows(
        pg_url,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'accounts'::regclass AND attname = 'balance'",
    ) == [("double precision",)]


def test_stopped_after_the_swap_a_rerun_validates_the_pointing_key(
    pg_url: str, project: Path, monkeypatch: Any, role: str
) -> None:
    """A run that stops between the contract's commit and the validation of the foreign key
    pointing at the swapped table (the validation made to fail once) leaves that key NOT VALID
    (still enforced for new rows) and recorded; the change is half-applied, and its re-run
    tolerates exactly that key's state, validates it and stamps the revision."""
    from generator import online_table

    u = sa.make_url(pg_url)
    migrate.upgrade(project, u, "0000")
    _seed(pg_url, role)
    before = _accounts(pg_url)
    real = online_table.TableRun.finish
    calls: list[int] = []

    def stopped(self: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("stopped before the validation (the test's)")
        real(self)

    monkeypatch.setattr(online_table.TableRun, "finish", stopped)
    settings = guard.Settings(online_method="table")
    with pytest.raises(RuntimeError, match="the test's"):
        migrate.upgrade(project, u, "0001", settings=settings)
    key = (
        "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_transfers_account_id_accounts'"
    )
    assert rows(pg_url, key) == [(False,)]
    assert rows(pg_url, "SELECT version_num FROM alembic_version") == [("0000",)]
    pending = rows(pg_url, "SELECT step FROM schemagen.backfill_progress")
    assert ("validate_accounts",) in pending
    swapped = [
        e for e in migrate.with_connection(u, online.progress) if "to validate" in e["phase"]
    ]
    (entry,) = swapped
    assert entry["phase"] == (
        "swapped in; foreign keys to validate: transfers.fk_transfers_account_id_accounts"
    )
    with (  # enforced meanwhile
        psycopg.connect(_plain(pg_url), autocommit=True) as conn,
        pytest.raises(psycopg.errors.ForeignKeyViolation),
    ):
        conn.execute("INSERT INTO transfers (id, account_id) VALUES (1000000, 999999)")
    migrate.upgrade(project, u, "0001", settings=settings)
    assert rows(pg_url, key) == [(True,)]
    assert rows(pg_url, "SELECT version_num FROM alembic_version") == [("0001",)]
    assert rows(pg_url, "SELECT count(*) FROM schemagen.backfill_progress") == [(0,)]
    assert _accounts(pg_url) == before


def test_an_application_role_writes_through_the_trigger_it_has_no_grant_for(
    pg_url: str, project: Path, monkeypatch: Any, role: str
) -> None:
    """The application's role may write the old table but has no grant on the new one (it
    gets the old table's grants at the contract): between the expand and the contract its
    INSERT, UPDATE and DELETE go through the trigger all the same (the function runs as the
    migration's role), and the finished change holds what it wrote."""
    from generator import online_table

    u = sa.make_url(pg_url)
    migrate.upgrade(project, u, "0000")
    _seed(pg_url, role)
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        conn.execute(f'GRANT INSERT, DELETE ON accounts, transfers TO "{role}"')
    stop = RuntimeError("stopped after the expand (the test's)")

    def stopped(self: Any) -> tuple[int, int]:
        raise stop

    with monkeypatch.context() as m:
        m.setattr(online_table.TableRun, "backfill", stopped)
        with pytest.raises(RuntimeError, match="the test's"):
            migrate.upgrade(project, u, "0001", settings=guard.Settings(online_method="table"))
    assert rows(pg_url, "SELECT to_regclass('sg_up__accounts') IS NOT NULL") == [(True,)]
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        conn.execute(f'SET ROLE "{role}"')
        conn.execute(
            "INSERT INTO accounts (id, code, balance) VALUES (9001, 'app', 12.3456), "
            "(9002, 'gone', 1)"
        )
        conn.execute("UPDATE accounts SET balance = 7.5 WHERE id = 3")
        conn.execute("DELETE FROM accounts WHERE id = 9002")
        conn.execute("INSERT INTO accounts (id, code, balance) VALUES (9003, 'moved', 2.25)")
        conn.execute("UPDATE accounts SET id = 9004 WHERE id = 9003")  # a key moves
        conn.execute("RESET ROLE")
    copied = "SELECT id, balance FROM sg_up__accounts WHERE id IN (3, 9001, 9002, 9003, 9004)"
    assert dict(rows(pg_url, copied)) == {3: 7.5, 9001: 12.3456, 9004: 2.25}
    migrate.upgrade(project, u, "0001", settings=guard.Settings(online_method="table"))
    got = dict(rows(pg_url, "SELECT id, balance FROM accounts WHERE id > 9000 OR id = 3"))
    assert got == {3: 7.5, 9001: 12.3456, 9004: 2.25}


BLOCKERS = [
    ("CREATE VIEW v_accounts AS SELECT id FROM accounts", "views or rules use it (v_accounts)"),
    (
        "CREATE RULE r_accounts AS ON INSERT TO transfers DO ALSO SELECT 1 FROM accounts",
        "views or rules use it (r_accounts on transfers)",
    ),
    (
        "CREATE POLICY p_accounts ON accounts USING (true)",
        "it has row-level security policies (p_accounts)",
    ),
    (
        "CREATE PUBLICATION pub_accounts FOR TABLE accounts",
        "logical replication publishes it (pub_accounts)",
    ),
    (
        "CREATE FUNCTION f_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; "
        "END $$ ;; CREATE TRIGGER t_audit BEFORE INSERT ON accounts FOR EACH ROW EXECUTE "
        "FUNCTION f_audit()",
        "triggers of its own would not move with it (t_audit)",
    ),
    (
        "ALTER TABLE accounts ADD CONSTRAINT x_code EXCLUDE USING btree (code WITH =)",
        "it has exclusion constraints (x_code)",
    ),
    ("GRANT SELECT (code) ON accounts TO PUBLIC", "columns of it have grants of their own (code)"),
    ("ALTER TABLE accounts REPLICA IDENTITY FULL", "its replica identity is not the default (f)"),
    (
        "CREATE TABLE holder (a accounts)",
        "other objects use its row type (column a of table holder)",
    ),
    (
        "ALTER TABLE accounts ADD COLUMN g integer GENERATED ALWAYS AS (id * 2) STORED",
        "it has generated columns (g)",
    ),
    (
        "ALTER TABLE accounts ADD COLUMN parent integer REFERENCES accounts (id)",
        "foreign keys of it point at itself (accounts_parent_fkey)",
    ),
    (
        "CREATE TABLE accounts_child () INHERITS (accounts)",
        "it is not a plain table, or has partitions or inheritance (accounts)",
    ),
]


@pytest.mark.parametrize("ddl,reason", BLOCKERS, ids=[r.split(" (")[0] for _, r in BLOCKERS])
def test_each_blocker_is_named(pg_url: str, project: Path, ddl: str, reason: str) -> None:
    """What the swap cannot carry is found in the catalogue and named; the table alone (with
    the tool's own triggers of either method) is not blocked."""
    from generator import online_table

    migrate.upgrade(project, sa.make_url(pg_url), "0000")
    spec = online.Spec("0001_convert", "upgrade", "accounts", ("id",), (), {}, {}, "")
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            run = online_table.TableRun(conn, spec)
            assert online_table.blockers(run) == []
            conn.exec_driver_sql(
                "CREATE FUNCTION sg_noop() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RETURN NULL; END $$"
            )
            for name in (spec.trigger, spec.fill_trigger()):
                conn.exec_driver_sql(
                    f'CREATE TRIGGER "{name}" AFTER DELETE ON accounts '
                    "FOR EACH ROW EXECUTE FUNCTION sg_noop()"
                )
            assert online_table.blockers(run) == []
            for statement in ddl.split(" ;; "):
                conn.exec_driver_sql(statement)
            found = online_table.blockers(run)
            assert [b for b in found if b.startswith(reason.split(" (")[0])] == [reason], found
            conn.rollback()
    finally:
        engine.dispose()
