"""The migrate suite: ``--quick --suite migrate --json`` on both dialects (every generated step,
timed, with the blocking numbers on PostgreSQL), and the blocked-time measurement itself."""

from __future__ import annotations

import itertools
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from bench_support import quick_results
from conftest import pg_url_for

from benchmarks import cli, migrate, report, typechange
from benchmarks.databases import MIGRATIONS

pytestmark = pytest.mark.db


def _generated_steps() -> list[str]:
    """The migration files after the first, by name: what the suite must cover."""
    files = sorted((MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    return [f.stem for f in files[1:]]


def test_steps_follow_the_generated_migrations() -> None:
    chain = migrate.steps()
    assert [s.name for s in chain] == _generated_steps()
    assert [s.revision for s in chain] == [n.split("_", 1)[0] for n in _generated_steps()]
    for before, after in itertools.pairwise(chain):
        assert after.down_revision == before.revision
    by_name = {s.name: s for s in chain}
    # The type change is online now: the goal applies to it (only `online: false` is exempt)
    assert by_name["0003_convert_decimal_to_float"].goal_applies
    blocking = migrate.Step("9", "8", "x", ("alter_column_type",), ("t",), ("alter_column_type",))
    assert not blocking.goal_applies
    assert by_name["0001_optimize_market_data_indexes"].goal_applies
    assert by_name["0001_optimize_market_data_indexes"].load_tables == ("market_data",)
    assert by_name["0002_optimize_alert_log_indexes"].load_tables == ("alert_logs",)


def _check_stats(stats: dict[str, Any], *, deadlocks: bool = False) -> None:
    assert stats["count"] > 0
    if deadlocks and stats["errors"]:
        # 0004 swaps the alert_rules and alert_logs foreign keys in one transaction: an INSERT
        # into alert_logs in between can deadlock with it, and the server aborts the INSERT.
        # The suite reports that; any other failure is a bug.
        assert stats["first_error"].startswith("DeadlockDetected"), stats["first_error"]
    else:
        assert stats["errors"] == 0, stats["first_error"]
    assert stats["max_ms"] > 0
    assert 0 < stats["median_ms"] <= stats["max_ms"]


def test_quick_migrate_run(
    dialect: str, tmp_path: Path, quick_bench: tuple[dict[str, Any], Path]
) -> None:
    doc = quick_results(quick_bench, dialect)
    assert "migrate" in doc["suites"]
    cases = doc["results"][dialect]["migrate"]
    assert [c["name"] for c in cases] == _generated_steps()
    rounds = doc["settings"]["migrate_rounds"]
    for c in cases:
        assert c["checks_included"] is True
        for direction in ("upgrade", "downgrade"):
            side = c[direction]
            assert side["rounds"] == len(side["samples_s"]) == rounds
            assert side["median_s"] > 0 and all(s > 0 for s in side["samples_s"])
            # The runtime's logged phases: the checks ran inside the timing.
            assert {direction, "pre-checks", "post-checks"} <= set(side["phases_ms"])
            assert sum(side["phases_ms"].values()) / 1000 <= side["median_s"] * 1.01
        if dialect == "sqlite":
            assert c["load"] is None and c["goal_met"] is None
            continue
        load = c["load"]
        assert load["error"] is None, load["error"]
        assert load["upgrade_s"] > 0
        assert load["tables"] and set(load["tables"]) <= {"market_data", "alert_logs"}
        assert load["rounds"] == (rounds if c["goal_applies"] else 1)
        for kind in ("insert", "select"):
            _check_stats(load[kind], deadlocks=True)
            _check_stats(load["idle"][kind])
            assert len(load[kind]["max_ms_per_round"]) == load["rounds"]
            assert max(load[kind]["max_ms_per_round"]) == load[kind]["max_ms"]
        reader = load["with_reader"]
        assert reader["error"] is None, reader["error"]
        assert reader["reader_s"] == doc["settings"]["migrate_reader_s"] > 0
        for kind in ("insert", "select"):
            _check_stats(reader[kind], deadlocks=True)
        longest = [load[k]["max_ms"] for k in ("insert", "select")]
        longest += [reader[k]["max_ms"] for k in ("insert", "select")]
        assert c["goal_met"] is (
            all(m <= migrate.GOAL_MS for m in longest) if c["goal_applies"] else None
        )

    assert not list(quick_bench[1].iterdir())  # the SQLite scratch files are gone

    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(doc))
    page = tmp_path / "perf.md"
    assert cli.main(["--from-json", str(saved), "--report", str(page), "--no-progress"]) == 0
    png = tmp_path / "perf" / f"migrate-{dialect}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "## Migrations" in text and f"**{report.DIALECT_TITLES[dialect]} migrations**" in text
    for name in _generated_steps():
        assert f"`{name}`" in text
    if dialect == "postgresql":
        assert "longest blocked INSERT" in text and "Goal:" in text
        _check_paths(doc["results"]["tool"]["migrate_paths"], doc["settings"])
        assert "## Change 0003: online against blocking path" in text
        assert "rows lost" in text and "backfill rows/s" in text


def _check_paths(result: dict[str, Any], settings: dict[str, Any]) -> None:
    """0003's paths side by side: each ran under clients that wrote, and lost nothing."""
    assert [[s["ticks"], s["alerts"]] for s in result["sizes"]] == settings["paths_sizes"]
    for size in result["sizes"]:
        paths = size["paths"]
        assert list(paths) == list(typechange.PATHS)
        for name, p in paths.items():
            assert p["change_s"] > 0
            assert p["rows_lost"] == p["rows_unexpected"] == p["values_drifting"] == 0, p["verify"]
            kinds = typechange.PATHS[name][1]
            assert p["clients"] == list(kinds)
            for kind in kinds:
                assert p["during"][kind]["count"] > 0, (name, kind)
                assert p["during"][kind]["max_ms"] > 0
            for table, checked in p["verify"].items():
                assert checked["rows_checked"] > 0 and checked["inserted"] > 0, (name, table)
                if "update" in kinds:
                    assert checked["updated"] > 0 and checked["deleted"] > 0, (name, table)
        online = paths["online"]
        assert online["error"] is None, online["error"]
        assert online["failed_statements"] == dict.fromkeys(typechange.KINDS, 0)
        assert paths["blocking_insert_select"]["error"] is None
        bf = online["backfill"]
        # every row there when the backfill began, but those the clients deleted first
        deleted = sum(checked["deleted"] for checked in online["verify"].values())
        assert bf["rows"] >= size["ticks"] + size["alerts"] - deleted and bf["rows_per_s"] > 0
        assert set(bf["per_table"]) == {"market_data", "alert_logs"}
        assert size["time_ratio"] > 0 and set(size["goals"]) == {
            "blocked_ms",
            "backfill_rows_s",
            "time_ratio",
            "no_loss",
        }


def test_the_blocking_variant_is_rendered_by_the_tool(tmp_path: Path) -> None:
    out = typechange.render_blocking(tmp_path)
    name = f"{typechange.CHANGE}.py"
    mine = (out / "versions" / name).read_text()
    assert "online_type_change" not in mine and "runtime.run_change" in mine
    assert "online_type_change" in (MIGRATIONS / "versions" / name).read_text()
    assert "# Generated by schemagen" in mine  # the tool wrote it
    spec = (tmp_path / "changes" / f"{typechange.CHANGE}.yaml").read_text()
    assert spec.count("online: false") == 8


def test_the_verification_finds_lost_added_and_drifting_rows(pg_database: str) -> None:
    """The row-by-row comparison must fail when a row is lost, a row appears, or a value
    drifts by the tolerance; and pass on what the clients' writes explain."""
    dsn = migrate.conninfo(sa.make_url(pg_url_for(pg_database)))
    columns = {"market_data": ("price", "bid"), "alert_logs": ("trigger_value",)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema, kind in (("b", "numeric(12,4)"), ("m", "float8")):
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(
                f"CREATE TABLE {schema}.market_data (id int PRIMARY KEY, instrument_id int, "
                f"price {kind}, bid {kind})"
            )
            conn.execute(
                f"CREATE TABLE {schema}.alert_logs (id int PRIMARY KEY, rule_id int, "
                f"trigger_value {kind})"
            )
            conn.execute(
                f"INSERT INTO {schema}.market_data SELECT g, g % 3, g + 0.1234, NULL "
                "FROM generate_series(1, 10) AS g"
            )
            conn.execute(
                f"INSERT INTO {schema}.alert_logs SELECT g, 1, g * 2.5 "
                "FROM generate_series(1, 5) AS g"
            )
        # what the clients did, applied to the migrated side
        conn.execute("UPDATE m.market_data SET price = 7.0001, bid = 1 WHERE id = 2")
        conn.execute("DELETE FROM m.market_data WHERE id = 9")
        conn.execute("INSERT INTO m.alert_logs VALUES (6, 2, 3.3333)")
    written = typechange.Written(
        inserted={"market_data": {}, "alert_logs": {6: (2, Decimal("3.3333"))}},
        updated={"market_data": {2: (Decimal("7.0001"), Decimal(1))}, "alert_logs": {}},
        deleted={"market_data": {9}, "alert_logs": set()},
    )
    base, migrated = dsn + "?options=-csearch_path%3Db", dsn + "?options=-csearch_path%3Dm"

    def problems() -> dict[str, tuple[int, int, int]]:
        got = typechange.verify(base, migrated, written, columns)
        return {
            t: (v["rows_lost"], v["rows_unexpected"], v["values_drifting"]) for t, v in got.items()
        }

    assert problems() == {"market_data": (0, 0, 0), "alert_logs": (0, 0, 0)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM m.market_data WHERE id = 4")  # lost
        conn.execute("INSERT INTO m.market_data VALUES (11, 1, 1, 1)")  # not expected
        conn.execute("UPDATE m.market_data SET bid = 0.0001 WHERE id = 5")  # NULL -> value
        conn.execute("UPDATE m.alert_logs SET trigger_value = trigger_value + 0.0001 WHERE id = 1")
        conn.execute("UPDATE m.alert_logs SET trigger_value = 3.33335 WHERE id = 6")  # < tolerance
    assert problems() == {"market_data": (1, 1, 1), "alert_logs": (0, 0, 1)}


def test_blocked_time_is_measured(pg_database: str) -> None:
    """A lock held for a known time shows as the longest INSERT and SELECT, at least that
    long; with no lock, the same load stays far below it."""
    hold_s = 0.4
    url = sa.make_url(pg_url_for(pg_database))
    dsn = migrate.conninfo(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int)")
        conn.execute("INSERT INTO t (v) SELECT g FROM generate_series(1, 100) AS g")
    workers: dict[str, migrate.Statement] = {
        "insert": lambda i: ("INSERT INTO t (v) VALUES (%s)", (i,)),
        "select": lambda i: ("SELECT id, v FROM t WHERE id = %s", (1 + i % 100,)),
    }
    with migrate.Load(dsn, workers, pause_s=0.001) as load:
        time.sleep(0.2)
        idle = load.take()
        with psycopg.connect(dsn) as locker:  # a transaction: the lock lasts until commit
            locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            time.sleep(hold_s)
            locker.commit()
        time.sleep(0.1)
        load.stop()
        during = load.take()
    for kind in ("insert", "select"):
        _check_stats(idle[kind])
        _check_stats(during[kind])
        # It started within a few ms of the LOCK (statements are 1 ms apart).
        assert during[kind]["max_ms"] >= hold_s * 1000 - 50, (kind, during[kind])
        assert idle[kind]["max_ms"] < hold_s * 1000 / 2, (kind, idle[kind])
        # The blocked statement started before the lock was released, and only one was.
        assert during[kind]["max_at_s"] < 0.05
        assert during[kind]["median_ms"] < hold_s * 1000 / 2
