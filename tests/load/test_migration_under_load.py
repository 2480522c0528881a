"""`schemagen upgrade` from 0000 to head and `downgrade` back on PostgreSQL with 200k ticks and
80k alerts (LOAD_TICKS / LOAD_ALERTS: the documented runs used 500k / 200k), while two
writers and two readers use the application's pooled async engine, and two more clients
hold one pooled connection each from before the upgrade to after the downgrade (a long
request, a worker's session), a transaction per statement.

What must hold: no application statement fails, over the whole upgrade and downgrade (0003 is
an online type change on PostgreSQL: its contract swaps the columns under the pooled
connections' cached plans); around every online contract, statements ran on connections
checked out before it (and held across it), during it and after it; every row a writer
committed is present afterwards with its values; `verify` passes at both ends. What is
measured and written to ``$LOAD_REPORT`` (JSON; the test prints a summary too): the
application's statements and failures by kind, per migration step the longest stall of a
client statement that overlapped it, the same per online phase (expand, backfill, prepare,
contract of each table, both directions), and the statements around each contract by when
their connection was checked out.

The runner is a real `schemagen` subprocess (`--log-format json`), the clients real asyncpg
connections from :func:`marketdata.db.create_app_engine`: the way it runs in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ROOT, pg_url_for

from benchmarks import data as bench_data
from generator import migrate
from marketdata import queries
from marketdata.db import create_app_engine

pytestmark = [pytest.mark.load, pytest.mark.db]

MIGRATIONS = ROOT / "generated_migrations"
# 200k / 80k keep the test to about two minutes of a CI worker (500k / 200k took 4.7 minutes
# of the 28 of the whole suite on 2026-12-04); every phase of 0003's online path still takes
# many batches, and the assertions do not depend on the size.
TICKS = int(os.environ.get("LOAD_TICKS", "200000"))
ALERTS = int(os.environ.get("LOAD_ALERTS", "80000"))
# The runner's lock waits stay the default 50 ms each (the clients' stalls are what is
# measured); on a starved machine a client's transaction often outlasts 50 ms, so the runner
# may take more attempts than its default 10 before it gets a lock (LOAD_LOCK_RETRIES). 30
# were once not enough on this machine at its slowest (2026-12-04: 0004's downgrade timed out
# after 31 attempts of 50 ms in CI, every attempt behind the clients' short transactions).
LOCK_RETRIES = os.environ.get("LOAD_LOCK_RETRIES", "60")
# And a longer wait per attempt than the runner's default 50 ms: LOAD_LOCK_TIMEOUT (250 ms, as
# the recorded runs; "" for the runner's default), reported with the figures. 0004's foreign-key
# swaps used to lock four tables at once (alert_logs, alert_rules, market_data, instruments),
# a quarter of the lock timeout each (12 ms at 50 ms), under clients whose every statement
# touches two of the four and lasts up to 100+ ms on the 2-core CI machine with both test
# workers busy: 0004's downgrade failed all 61 attempts of 50 ms there (2026-12-04), bounded
# and with nothing lost. Each key is now swapped on its own (two tables, half the timeout
# each), and the test passed at 50 ms (LOAD_LOCK_TIMEOUT=) beside another test worker; the
# default keeps CI clear of the margin.
LOCK_TIMEOUT = os.environ.get("LOAD_LOCK_TIMEOUT", "250ms")
FIRST_CLIENT_ID = 10_000_000  # ids of rows the writers insert, above the bulk-loaded ones
CLIENT_TS = datetime(2027, 1, 1, tzinfo=UTC)


@dataclass
class Op:
    kind: str  # insert_tick / insert_alert / latest_ticks / rule_alerts (held_...: held conn)
    started: float
    ended: float
    error: str | None = None
    checked_out: float | None = None  # when its connection was checked out of the pool


@dataclass
class Clients:
    ops: list[Op] = field(default_factory=list)
    # id -> price of every tick / trigger value of every alert whose INSERT committed
    ticks: dict[int, Decimal] = field(default_factory=dict)
    alerts: dict[int, Decimal] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)


def _error_kind(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return f"{type(orig or exc).__name__}{f' ({code})' if code else ''}"


async def _timed(clients: Clients, kind: str, coro: Any, checked_out: float | None = None) -> bool:
    """Run one application statement (``coro`` returns when its connection was checked out,
    or None: ``checked_out``, a held connection's), recording it and any failure."""
    started = time.monotonic()
    try:
        got = await coro
    except Exception as exc:  # every failure is counted by kind, none may pass unseen
        clients.ops.append(Op(kind, started, time.monotonic(), _error_kind(exc), checked_out))
        return False
    clients.ops.append(Op(kind, started, time.monotonic(), None, got or checked_out))
    return True


# Only the columns every revision has, and prices bound as text cast to numeric: the same
# statement is valid on DECIMAL (0000) and FLOAT (head) columns, as the app's must be.
INSERT_TICK = sa.text(
    "INSERT INTO market_data (id, instrument_id, timestamp, price, bid, ask, volume, "
    "created_at, updated_at) VALUES (:id, :instrument, :ts, CAST(:price AS numeric), "
    "CAST(:price AS numeric) - 0.0001, CAST(:price AS numeric) + 0.0001, 100, now(), now())"
)
INSERT_ALERT = sa.text(
    "INSERT INTO alert_logs (id, rule_id, instrument_id, timestamp, trigger_value, "
    "threshold_value, status, severity, created_at, updated_at) VALUES (:id, :rule, "
    ":instrument, :ts, CAST(:value AS numeric), 100.0000, 'triggered', 'warning', now(), now())"
)


async def _insert(engine: Any, statement: Any, params: dict[str, Any]) -> float:
    async with engine.begin() as conn:
        checked_out = time.monotonic()
        await conn.execute(statement, params)
    return checked_out


def _tick(row_id: int) -> tuple[dict[str, Any], Decimal]:
    price = Decimal(1_0000 + (row_id * 7919) % 4_000_0000).scaleb(-4)
    ts = CLIENT_TS + timedelta(seconds=row_id)
    return {"id": row_id, "instrument": row_id % 6 + 1, "ts": ts, "price": str(price)}, price


def _alert(row_id: int) -> tuple[dict[str, Any], Decimal]:
    price = Decimal(1_0000 + (row_id * 7919) % 4_000_0000).scaleb(-4)
    rule = row_id % bench_data.N_RULES + 1
    params = {
        "id": row_id,
        "rule": rule,
        "instrument": bench_data.rule_instrument(rule),
        "ts": CLIENT_TS + timedelta(seconds=row_id),
        "value": str(price),
    }
    return params, price


async def _writer(engine: Any, clients: Clients, worker: int) -> None:
    n = 0
    while not clients.stop.is_set():
        n += 1
        row_id = FIRST_CLIENT_ID + worker * 1_000_000 + n
        if n % 3:
            params, price = _tick(row_id)
            if await _timed(clients, "insert_tick", _insert(engine, INSERT_TICK, params)):
                clients.ticks[row_id] = price
        else:
            params, price = _alert(row_id)
            if await _timed(clients, "insert_alert", _insert(engine, INSERT_ALERT, params)):
                clients.alerts[row_id] = price
        await asyncio.sleep(0.002)


async def _reader(engine: Any, clients: Clients, worker: int) -> None:
    start = bench_data.START + timedelta(days=1)
    while not clients.stop.is_set():

        async def latest() -> float:
            async with engine.connect() as conn:
                checked_out = time.monotonic()
                await conn.run_sync(queries.latest_ticks)
            return checked_out

        async def alerts() -> float:
            async with engine.connect() as conn:
                checked_out = time.monotonic()
                await conn.run_sync(
                    lambda c: queries.rule_alerts(c, worker + 1, start, start + timedelta(hours=6))
                )
            return checked_out

        await _timed(clients, "latest_ticks", latest())
        await _timed(clients, "rule_alerts", alerts())
        await asyncio.sleep(0.002)


async def _held(engine: Any, clients: Clients, worker: int, ready: asyncio.Event) -> None:
    """One pooled connection checked out before the upgrade and held to the end: a tick, an
    alert and both reads, each statement its own transaction (committed or rolled back before
    the next, so the connection holds no lock between them)."""
    start = bench_data.START + timedelta(days=1)
    async with engine.connect() as conn:
        checked_out = time.monotonic()
        ready.set()
        n = 0
        while not clients.stop.is_set():
            n += 1
            row_id = FIRST_CLIENT_ID + worker * 1_000_000 + n

            async def write(statement: Any, params: dict[str, Any]) -> None:
                try:
                    await conn.execute(statement, params)
                    await conn.commit()
                except BaseException:
                    await conn.rollback()
                    raise

            async def read(query: Any) -> None:
                try:
                    await conn.run_sync(query)
                finally:
                    await conn.rollback()

            if n % 2:
                params, price = _tick(row_id)
                if await _timed(
                    clients, "held_insert_tick", write(INSERT_TICK, params), checked_out
                ):
                    clients.ticks[row_id] = price
                await _timed(clients, "held_latest_ticks", read(queries.latest_ticks), checked_out)
            else:
                params, price = _alert(row_id)
                if await _timed(
                    clients, "held_insert_alert", write(INSERT_ALERT, params), checked_out
                ):
                    clients.alerts[row_id] = price
                window = (worker + 1, start, start + timedelta(hours=6))
                await _timed(
                    clients,
                    "held_rule_alerts",
                    read(lambda c, w=window: queries.rule_alerts(c, *w)),
                    checked_out,
                )
            await asyncio.sleep(0.05)  # a gentle client: it is there to hold its connection


HELD = 2  # clients holding one connection each, from before the upgrade to the end


def _run_clients(url: str, clients: Clients, ready: threading.Event) -> None:
    async def main() -> None:
        engine = create_app_engine(url, pool_size=4 + HELD, max_overflow=0)
        try:
            held = [asyncio.Event() for _ in range(HELD)]
            tasks = [
                asyncio.create_task(_held(engine, clients, 2 + w, held[w])) for w in range(HELD)
            ]
            for event in held:
                await event.wait()
            tasks += [asyncio.create_task(_writer(engine, clients, w)) for w in range(2)]
            tasks += [asyncio.create_task(_reader(engine, clients, w)) for w in range(2)]
            ready.set()
            await asyncio.gather(*tasks)
        finally:
            await engine.dispose()

    asyncio.run(main())


@dataclass
class StepWindow:
    change: str
    step: str
    started: float
    ended: float
    result: str


def _run_schemagen(*args: str) -> tuple[int, list[StepWindow], str]:
    """Run schemagen with JSON logs; each finished step's window in this clock."""
    windows: list[StepWindow] = []
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "generator", "--root", str(ROOT), "--log-format", "json", *args],
        env={
            **os.environ,
            "SCHEMAGEN_LOCK_RETRIES": LOCK_RETRIES,
            **({"SCHEMAGEN_LOCK_TIMEOUT": LOCK_TIMEOUT} if LOCK_TIMEOUT else {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic()
            lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "duration_ms" in record and "step" in record:
                started = now - record["duration_ms"] / 1000
                windows.append(
                    StepWindow(
                        record["change"], record["step"], started, now, record.get("result", "?")
                    )
                )
        code = proc.wait(timeout=1800)
    return code, windows, "".join(lines)


def _stalls(windows: list[StepWindow], ops: list[Op]) -> list[dict[str, Any]]:
    out = []
    for w in windows:
        overlapping = [o for o in ops if o.started < w.ended and o.ended > w.started]
        longest = max(overlapping, key=lambda o: o.ended - o.started, default=None)
        out.append(
            {
                "change": w.change,
                "step": w.step,
                "result": w.result,
                "duration_ms": round((w.ended - w.started) * 1000, 1),
                "client_statements": len(overlapping),
                "longest_stall_ms": (
                    round((longest.ended - longest.started) * 1000, 1) if longest else None
                ),
                "longest_stall_kind": longest.kind if longest else None,
            }
        )
    return out


ONLINE_PHASES = ("expand", "backfill", "prepare", "contract")


def _online(windows: list[StepWindow], ops: list[Op]) -> dict[str, dict[str, Any]]:
    """Per table and online phase of 0003: its duration, the longest client statement that
    overlapped it (a statement waiting on the phase's lock overlaps it too), and failures."""
    out: dict[str, dict[str, Any]] = {}
    for w in windows:
        phase, _, table = w.step.partition(" ")
        if not w.change.startswith("0003") or phase not in ONLINE_PHASES:
            continue
        overlapping = [o for o in ops if o.started < w.ended and o.ended > w.started]
        longest = max(overlapping, key=lambda o: o.ended - o.started, default=None)
        out.setdefault(table, {})[phase] = {
            "duration_ms": round((w.ended - w.started) * 1000, 1),
            "client_statements": len(overlapping),
            "failed": sum(1 for o in overlapping if o.error),
            "longest_stall_ms": (
                round((longest.ended - longest.started) * 1000, 1) if longest else None
            ),
            "longest_stall_kind": longest.kind if longest else None,
        }
    return out


AFTER_S = 2.0  # "after the contract": statements on connections checked out up to 2 s after it


def _around_contracts(windows: list[StepWindow], ops: list[Op]) -> dict[str, dict[str, Any]]:
    """Per online contract of 0003: the application statements that ran once it had begun,
    by when their connection was checked out: before it began (held across it), while it ran,
    or in the AFTER_S after it ended; with the failures of each."""
    out: dict[str, dict[str, Any]] = {}
    for w in windows:
        phase, _, table = w.step.partition(" ")
        if not w.change.startswith("0003") or phase != "contract":
            continue
        groups: dict[str, list[Op]] = {"before": [], "during": [], "after": []}
        for o in ops:
            if o.checked_out is None or o.ended < w.started:
                continue
            if o.checked_out < w.started:
                if o.started > w.ended:  # held across the contract, used after it
                    groups["before"].append(o)
            elif o.checked_out <= w.ended:
                groups["during"].append(o)
            elif o.checked_out <= w.ended + AFTER_S:
                groups["after"].append(o)
        out[table] = {
            when: {"statements": len(group), "failed": sum(1 for o in group if o.error)}
            for when, group in groups.items()
        }
    return out


def _fill(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        bench_data.reference_rows(conn)
        bench_data.load_ticks(conn, TICKS, "baseline")
        bench_data.load_alerts(conn, ALERTS, "baseline")
        for table in ("instruments", "alert_rules", "market_data", "alert_logs"):
            bench_data.reset_identity(conn, table)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def _verify(url: str) -> None:
    revision, source, results, _ = migrate.verify(MIGRATIONS, sa.make_url(url))
    failing = [r.check.name for r in results if not r.passed]
    assert failing == [], f"verify at {revision} ({source}): {failing}"


def test_upgrade_and_downgrade_under_application_load(pg_database: str) -> None:
    url = pg_url_for(pg_database)
    code, _, out = _run_schemagen("upgrade", "--url", url, "--to", "0000")
    assert code == 0, out
    _fill(url)
    head = migrate.heads(MIGRATIONS)[0]

    clients = Clients()
    ready = threading.Event()
    thread = threading.Thread(target=_run_clients, args=(url, clients, ready), daemon=True)
    thread.start()
    assert ready.wait(60)
    time.sleep(1.0)  # traffic before the first DDL
    report: dict[str, Any] = {"ticks": TICKS, "alerts": ALERTS, "lock_timeout": LOCK_TIMEOUT}
    up: list[StepWindow] = []
    down: list[StepWindow] = []
    runner: dict[str, tuple[int, str]] = {}  # direction -> (exit code, output)
    try:
        code, up, out = _run_schemagen("upgrade", "--url", url)
        runner["upgrade"] = (code, out)
        if code == 0:
            _verify(url)
            time.sleep(1.0)
            code, down, out = _run_schemagen("downgrade", "--url", url, "--to", "0000")
            runner["downgrade"] = (code, out)
            time.sleep(1.0)
    finally:
        clients.stop.set()
        thread.join(120)

    # The report, also when the runner failed (what the clients saw until then).
    failures = Counter(f"{o.kind}: {o.error}" for o in clients.ops if o.error)
    around = {"upgrade": _around_contracts(up, clients.ops)}
    around["downgrade"] = _around_contracts(down, clients.ops)
    report.update(
        runner={direction: code for direction, (code, _) in runner.items()},
        statements=Counter(o.kind for o in clients.ops),
        failed=dict(failures),
        online={"upgrade": _online(up, clients.ops), "downgrade": _online(down, clients.ops)},
        around_contracts=around,
        upgrade=_stalls(up, clients.ops),
        downgrade=_stalls(down, clients.ops),
        committed={"ticks": len(clients.ticks), "alerts": len(clients.alerts)},
    )
    target = os.environ.get("LOAD_REPORT")
    if target:
        Path(target).write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
    print(json.dumps(report, indent=2, default=str))

    for direction in ("upgrade", "downgrade"):
        code, out = runner.get(direction, (-1, "not run"))
        if code != 0:  # the runner's last lines in full (an assertion's repr is cut short)
            pytest.fail(f"{direction}: exit {code}\n" + "\n".join(out.splitlines()[-12:]))
    _verify(url)
    # No application statement failed, over the whole upgrade and downgrade.
    assert failures == {}, dict(failures)
    # Around each online contract (two tables, both directions), connections checked out
    # before it (held across it) and after it ran statements; and during the contracts (a
    # quiet machine's contract lasts some 10-30 ms: counted over the four of them).
    for direction, tables in around.items():
        assert set(tables) == {"market_data", "alert_logs"}, (direction, tables)
        for table, groups in tables.items():
            for when in ("before", "after"):
                assert groups[when]["statements"] > 0, (direction, table, when, around)
    during = [g["during"]["statements"] for t in around.values() for g in t.values()]
    assert sum(during) > 0, around

    # Every committed row is there with its value (the downgrade converted back to DECIMAL).
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ticks = dict(
            conn.execute(
                sa.text("SELECT id, price FROM market_data WHERE id >= :f"),
                {"f": FIRST_CLIENT_ID},
            ).all()
        )
        alerts = dict(
            conn.execute(
                sa.text("SELECT id, trigger_value FROM alert_logs WHERE id >= :f"),
                {"f": FIRST_CLIENT_ID},
            ).all()
        )
        revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        bulk = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM market_data WHERE id < :f), "
                "(SELECT count(*) FROM alert_logs WHERE id < :f)"
            ),
            {"f": FIRST_CLIENT_ID},
        ).one()
    engine.dispose()
    assert tuple(bulk) == (TICKS, ALERTS)
    assert clients.ticks and clients.alerts, "the writers committed nothing: no load was applied"
    missing = sorted(set(clients.ticks) - set(ticks)) + sorted(set(clients.alerts) - set(alerts))
    assert missing == [], f"{len(missing)} committed rows lost, first: {missing[:5]}"
    drift = [i for i, p in clients.ticks.items() if abs(ticks[i] - p) >= Decimal("0.0001")]
    drift += [i for i, p in clients.alerts.items() if abs(alerts[i] - p) >= Decimal("0.0001")]
    assert drift == []
    assert revision == "0000" and head != "0000"
