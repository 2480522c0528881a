"""The ``ops`` suite (benchmarks/ops.py): every operation of the registry, its change run
under a single-row INSERT loop on PostgreSQL; the report's table and verdicts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from bench_support import quick_results
from conftest import pg_url_for

from benchmarks import ops, report
from benchmarks.cli import merged
from benchmarks.settings import QUICK
from generator.ops import op_names


def test_the_history_covers_every_registered_operation() -> None:
    cases = [label for label, _ in ops.HISTORY]
    assert sorted(c for c in cases if c != ops.ENUM_CASE) == sorted(op_names())
    # and an enum type change (text to enum)
    assert ops.ENUM_CASE in cases and len(set(cases)) == len(cases)
    (enum,) = [spec for label, spec in ops.HISTORY if label == ops.ENUM_CASE]
    assert "op: alter_column_type" in enum and "enum(" in enum
    assert ops.change_id(ops.ENUM_CASE) == "alter_column_type_text_to_enum"


def test_quick_run_measures_every_operation(quick_bench: tuple[dict[str, Any], Path]) -> None:
    doc = quick_results(quick_bench, "postgresql")  # the shared quick run (tests/bench_support.py)
    result = doc["results"]["tool"]["ops"]
    cases = result["cases"]
    assert [c["op"] for c in cases] == [op for op, _ in ops.HISTORY]
    for c in cases:
        assert len(c["blocked_ms"]) == QUICK.migrate_rounds
        assert c["median_blocked_ms"] > 0 and c["median_upgrade_s"] > 0
        assert c["ok"] == (c["rewrites"] or c["median_blocked_ms"] <= ops.LIMIT_MS)
    # a catalogue change and a concurrent build: no rewrite by the risk model
    by_op = {c["op"]: c for c in cases}
    assert not by_op["add_column"]["rewrites"] and not by_op["create_index"]["rewrites"]
    # text to enum runs online (shadow column, batches, a short contract): held to the limit
    assert not by_op[ops.ENUM_CASE]["rewrites"] and not by_op["alter_column_type"]["rewrites"]


@pytest.mark.db
def test_the_writer_times_inserts_apart_and_sees_a_lock_wait(pg_database: str) -> None:
    """The writer process's longest INSERT includes a lock another session holds for 0.4 s,
    and its sampler attributes that span to a lock wait; idle, there is none."""
    url = sa.make_url(pg_url_for(pg_database))
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, code text)")
    writer = ops.Writer(dsn, 1)
    try:
        idle, idle_wait = writer.measure(None, 0.3)

        def hold() -> None:
            with psycopg.connect(dsn) as other:
                other.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
                time.sleep(0.4)

        during, wait = writer.measure(hold, 0.0)
    finally:
        writer.close()
    assert idle_wait == 0.0 and idle < 300
    assert during >= 380 and 300 <= wait <= during + 50
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] > 2  # type: ignore[index]


def _case(op: str, blocked: float, rewrites: bool = False) -> dict[str, Any]:
    return {
        "op": op,
        "rewrites": rewrites,
        "idle_ms": [5.0],
        "blocked_ms": [blocked],
        "upgrade_s": [0.5],
        "median_idle_ms": 5.0,
        "median_blocked_ms": blocked,
        "median_upgrade_s": 0.5,
        "ok": rewrites or blocked <= 100,
    }


def test_the_section_names_the_operations_over_the_limit() -> None:
    result = {
        "started": "2026-12-02T11:00:00+00:00",
        "rows": 1_000_000,
        "rounds": 1,
        "limit_ms": 100.0,
        "run_command": "python -m benchmarks --suite ops",
        "cases": [
            _case("add_check", 20.0),
            _case("set_default", 180.0),
            _case("alter_column_type", 900.0, rewrites=True),
        ],
    }
    text = report.ops_section(result)
    assert "| `set_default` | no | 5.0 | 180.0 |" in text and "**over 100 ms**" in text
    assert "rewrites (SG102): no limit" in text
    assert "Over the limit: `set_default`." in text


def test_into_replaces_the_merged_suite_and_keeps_the_rest() -> None:
    earlier = {
        "command": "python -m benchmarks --all",
        "suites": ["insert", "gencheck"],
        "results": {"sqlite": {"insert": [1]}, "tool": {"gencheck": {"g": 1}, "ops": {"old": 1}}},
    }
    new = {"command": "x", "suites": ["ops"], "results": {"tool": {"ops": {"new": 1}}}}
    out = merged(earlier, new)
    assert out["command"] == earlier["command"]
    assert out["results"] == {
        "sqlite": {"insert": [1]},
        "tool": {"gencheck": {"g": 1}, "ops": {"new": 1}},
    }
    assert out["suites"] == ["insert", "gencheck", "ops"]
