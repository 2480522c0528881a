"""A prototype of change 0003 by shadow *table* (pg-osc's design, issue 14's next step) under
the migrate suite's clients, beside the tool's online path (shadow columns) in the same run.

For each converted table in turn (market_data, then alert_logs), by hand-written SQL:

1. expand: a new table of the new types (``LIKE`` the old one, its primary key only) and an
   ``AFTER INSERT OR UPDATE OR DELETE`` row trigger on the old one that upserts (or deletes)
   the row in the new one, converted; one short transaction under a 50 ms lock_timeout,
   retried;
2. backfill: keyset batches, each ``INSERT ... SELECT ... FOR KEY SHARE ... ON CONFLICT DO
   NOTHING`` (a row the application deletes meanwhile is skipped or waits; a newer row the
   trigger wrote is kept) with the drift of every copied value checked in the statement,
   the batch size adapted to 200 ms;
3. prepare: the old table's other indexes built ``CONCURRENTLY`` on the new one, its foreign
   keys added ``NOT VALID`` and validated, ``ANALYZE``;
4. contract: one short transaction (50 ms lock_timeout, retried): both tables locked, the
   identity sequence carried over, the trigger and the old table dropped, the new table and
   its indexes and constraints renamed to the old names.

Then every row is verified against the base and what the clients wrote (as the suite does).
Not the tool: no progress table (no resume), no grants, views or referencing foreign keys
moved (0003's tables have none). It answers one question: what the clients see and how fast
the rows move when the backfill copies instead of updating.

    python -m benchmarks.experiments.shadow_table_path [--ticks 1000000] [--alerts 500000]
        [--rounds 1] [--no-tool]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from benchmarks import typechange
from benchmarks.databases import MIGRATIONS, admin_sql, postgres_admin_url, settle_disk
from benchmarks.migrate import conninfo, stats
from benchmarks.settings import FULL
from benchmarks.timing import clock, cpu_probe_ms

LOCK_TIMEOUT = "50ms"
TARGET_S = 0.2


def _short(conn: psycopg.Connection[Any], statements: list[str], what: str) -> int:
    """One transaction under the short lock_timeout, retried with backoff; the attempts."""
    for attempt in range(1, 200):
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                for s in statements:
                    conn.execute(s.encode())
            return attempt
        except psycopg.errors.LockNotAvailable:
            time.sleep(min(0.01 * 2**attempt, 0.5))
    raise RuntimeError(f"{what}: no lock in 200 attempts")


class Table:
    def __init__(self, conn: psycopg.Connection[Any], name: str):
        self.name = name
        self.new = f"{name}_sg_new"
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (name,),
        ).fetchall()
        self.columns = [str(r[0]) for r in rows]
        self.numeric = [str(r[0]) for r in rows if r[1] == "numeric"]
        self.indexes = [
            (str(r[0]), str(r[1]))
            for r in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = %s AND indexname <> %s",
                (name, f"{name}_pkey"),
            )
        ]
        self.fks = [
            (str(r[0]), str(r[1]))
            for r in conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'f'",
                (name,),
            )
        ]

    def value(self, prefix: str, column: str) -> str:
        ident = sql.Identifier(column).as_string(None)
        return f"{prefix}{ident}::float8" if column in self.numeric else f"{prefix}{ident}"

    def expand(self) -> list[str]:
        cols = ", ".join(sql.Identifier(c).as_string(None) for c in self.columns)
        values = ", ".join(self.value("NEW.", c) for c in self.columns)
        sets = ", ".join(
            f"{sql.Identifier(c).as_string(None)} = EXCLUDED.{sql.Identifier(c).as_string(None)}"
            for c in self.columns
            if c != "id"
        )
        alter = ", ".join(f"ALTER COLUMN {c} TYPE float8" for c in self.numeric)
        return [
            f"CREATE TABLE {self.new} (LIKE {self.name} INCLUDING DEFAULTS INCLUDING IDENTITY)",
            f"ALTER TABLE {self.new} {alter}, ADD CONSTRAINT {self.new}_pkey PRIMARY KEY (id)",
            f"CREATE FUNCTION {self.new}_sync() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
            f"IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.id <> OLD.id) THEN "
            f"DELETE FROM {self.new} WHERE id = OLD.id; END IF; "
            f"IF TG_OP = 'DELETE' THEN RETURN NULL; END IF; "
            f"INSERT INTO {self.new} ({cols}) VALUES ({values}) "
            f"ON CONFLICT (id) DO UPDATE SET {sets}; RETURN NULL; END $f$",
            f"CREATE TRIGGER {self.new}_sync AFTER INSERT OR UPDATE OR DELETE ON {self.name} "
            f"FOR EACH ROW EXECUTE FUNCTION {self.new}_sync()",
        ]

    def batch(self) -> str:
        cols = ", ".join(sql.Identifier(c).as_string(None) for c in self.columns)
        values = ", ".join(self.value("s.", c) for c in self.columns)
        drift = " OR ".join(
            f"((s.{c} IS NULL) <> (s.{c}::float8 IS NULL) OR abs(s.{c}::float8 - s.{c}) >= 0.0001)"
            for c in self.numeric
        )
        return (
            f"WITH s AS (SELECT {cols} FROM {self.name} WHERE id > %s ORDER BY id LIMIT %s "
            f"FOR KEY SHARE), i AS (INSERT INTO {self.new} ({cols}) SELECT {values} FROM s "
            f"ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT (SELECT max(id) FROM s), "
            f"(SELECT count(*) FROM s), (SELECT count(*) FROM i), "
            f"(SELECT count(*) FROM s WHERE {drift})"
        )

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        for name, definition in self.indexes:
            new = definition.replace(f" {name} ON ", f" {name}_sg_new ON ", 1).replace(
                f"ON public.{self.name} ", f"ON public.{self.new} ", 1
            )
            conn.execute(new.replace("INDEX ", "INDEX CONCURRENTLY ", 1).encode())
        for name, definition in self.fks:
            _short(
                conn,
                [f"ALTER TABLE {self.new} ADD CONSTRAINT {name}_sg_new {definition} NOT VALID"],
                "add fk",
            )
            conn.execute(f"ALTER TABLE {self.new} VALIDATE CONSTRAINT {name}_sg_new".encode())
        conn.execute(f"ANALYZE {self.new}".encode())

    def contract(self) -> list[str]:
        out = [
            f"LOCK TABLE {self.name}, {self.new} IN ACCESS EXCLUSIVE MODE",
            f"SELECT setval(pg_get_serial_sequence('{self.new}', 'id'), "
            f"(SELECT last_value FROM {self.name}_id_seq), "
            f"(SELECT is_called FROM {self.name}_id_seq))",
            f"DROP TABLE {self.name}",
            f"DROP FUNCTION {self.new}_sync()",
            f"ALTER TABLE {self.new} RENAME TO {self.name}",
            f"ALTER INDEX {self.new}_pkey RENAME TO {self.name}_pkey",
        ]
        out += [f"ALTER INDEX {name}_sg_new RENAME TO {name}" for name, _ in self.indexes]
        out += [
            f"ALTER TABLE {self.name} RENAME CONSTRAINT {name}_sg_new TO {name}"
            for name, _ in self.fks
        ]
        return out


def shadow_table_change(dsn: str, tables: list[str], ends: list[dict[str, Any]]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        for name in tables:
            t = Table(conn, name)
            started = clock()
            attempts = _short(conn, t.expand(), "expand")
            ends.append({"step": f"expand {name}", "s": clock() - started, "attempts": attempts})
            started = clock()
            last, size, rows, batches, drift, retries = 0, 1000, 0, 0, 0, 0
            statement = t.batch().encode()
            while True:
                began = clock()
                try:
                    with conn.transaction():
                        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                        conn.execute("SET LOCAL synchronous_commit = off")
                        got = conn.execute(statement, (last, size)).fetchone()
                except psycopg.errors.LockNotAvailable:
                    retries += 1
                    time.sleep(0.02)
                    continue
                assert got is not None
                if got[0] is None:
                    break
                last, rows, batches = int(got[0]), rows + int(got[1]), batches + 1
                drift += int(got[3])
                took = clock() - began
                size = max(100, min(50_000, int(size * min(2.0, TARGET_S / max(took, 1e-3)))))
            seconds = clock() - started
            ends.append(
                {
                    "step": f"backfill {name}",
                    "s": seconds,
                    "rows": rows,
                    "batches": batches,
                    "rows_per_s": rows / seconds if seconds else None,
                    "drifting": drift,
                    "lock_retries": retries,
                }
            )
            started = clock()
            t.prepare(conn)
            ends.append({"step": f"prepare {name}", "s": clock() - started})
            started = clock()
            attempts = _short(conn, t.contract(), "contract")
            ends.append({"step": f"contract {name}", "s": clock() - started, "attempts": attempts})


def shadow_path(base: typechange.Base, columns: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    url = base.copy("shadowtable")
    dsn = conninfo(url)
    sizes = {"market_data": base.ticks, "alert_logs": base.alerts}
    settle_disk(base.admin_url, most_s=60)
    ends: list[dict[str, Any]] = []
    error = None
    gc.collect()
    gc.disable()
    try:
        with typechange.Clients(dsn, sizes, columns, 0.001) as clients:
            threading.Event().wait(1.0)
            idle = clients.take()
            started = clock()
            try:
                shadow_table_change(dsn, list(columns), ends)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            seconds = clock() - started
            during = clients.take()
            threading.Event().wait(1.0)
            clients.stop()
            after = clients.take()
    finally:
        gc.enable()
    checked = typechange.verify(conninfo(base.url("base")), dsn, clients.written, columns)
    base.made.remove(url)
    admin_sql(base.admin_url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    rows = sum(e.get("rows", 0) for e in ends)
    backfill_s = sum(e["s"] for e in ends if e["step"].startswith("backfill"))
    return {
        "path": "shadow_table",
        "change_s": seconds,
        "error": error,
        "steps": ends,
        "backfill_rows_per_s": rows / backfill_s if backfill_s else None,
        "idle": {k: stats(v) for k, v in idle.items() if v},
        "during": {k: stats(v) for k, v in during.items() if v},
        "after": {k: stats(v) for k, v in after.items() if v},
        "rows_lost": sum(t["rows_lost"] for t in checked.values()),
        "rows_unexpected": sum(t["rows_unexpected"] for t in checked.values()),
        "values_drifting": sum(t["values_drifting"] for t in checked.values()),
        "first_problems": [p for t in checked.values() for p in t["first_problems"]],
    }


def tool_path(base: typechange.Base, columns: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    s = replace(FULL, migrate_idle_s=1.0, paths_settle_s=60.0)
    res = typechange.one_path(
        base, "online", MIGRATIONS, columns, s, lambda m: print(m, file=sys.stderr)
    )
    return {
        "path": "tool_online",
        "change_s": res["change_s"],
        "error": res["error"],
        "backfill_rows_per_s": (res.get("backfill") or {}).get("rows_per_s"),
        "during": res["during"],
        "rows_lost": res["rows_lost"],
        "values_drifting": res["values_drifting"],
    }


def _line(r: dict[str, Any]) -> str:
    d = r["during"]
    rate = r["backfill_rows_per_s"]
    return (
        f"{r['path']}: {r['change_s']:.1f} s, backfill {rate or 0:,.0f} rows/s, longest "
        + ", ".join(f"{k} {v['max_ms']:.0f} ms" for k, v in d.items() if v["max_ms"] is not None)
        + f", errors {sum(v['errors'] for v in d.values())}, lost {r['rows_lost']}, "
        f"drifting {r['values_drifting']}" + (f", FAILED: {r['error']}" if r["error"] else "")
    )


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--ticks", type=int, default=1_000_000)
    p.add_argument("--alerts", type=int, default=500_000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-tool", action="store_true", help="the prototype alone")
    args = p.parse_args()
    columns = typechange.converted()
    base = typechange.Base(postgres_admin_url(None), args.ticks, args.alerts)
    out: list[dict[str, Any]] = []
    try:
        print(f"filling the base ({args.ticks:,} / {args.alerts:,})", file=sys.stderr)
        base.build(typechange._start_revision())
        for r in range(args.rounds):
            paths = [shadow_path] if args.no_tool else [shadow_path, tool_path]
            for run in paths if r % 2 == 0 else reversed(paths):
                probe = cpu_probe_ms()
                res = run(base, columns)
                res["cpu_probe_ms"] = probe
                out.append(res)
                print(_line(res), file=sys.stderr)
    finally:
        base.drop()
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
