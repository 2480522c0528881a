"""The runner's wait settings: parsed from options and the environment, bad values refused
with exit 2 before any database is touched, and the bound the retries promise."""

from __future__ import annotations

import pytest
from support import cli

from generator import guard
from generator.cli import Exit


def test_defaults_keep_a_lock_wait_under_the_100_ms_goal() -> None:
    s = guard.Settings()
    assert s.lock_timeout_ms == 50 < 100
    assert (s.lock_retries, s.wait_for_runner_s) == (10, 0.0)
    # 11 waits of 50 ms and backoffs of 0.1, 0.2, 0.4, 0.8, 1.6 and five of 2 s
    assert s.bound_s() == pytest.approx(0.55 + 13.1)
    for attempt in range(1, 12):
        ceiling = min(2.0, 0.1 * 2 ** (attempt - 1))
        assert ceiling / 2 <= s.backoff_s(attempt) <= ceiling


def test_options_override_the_environment() -> None:
    env = {"SCHEMAGEN_LOCK_TIMEOUT": "2s", "SCHEMAGEN_LOCK_RETRIES": "4"}
    s = guard.Settings.from_environment(env)
    assert (s.lock_timeout_ms, s.lock_retries) == (2000, 4)
    s = s.with_options(lock_timeout="80ms", statement_timeout="1h", wait_for_runner="2.5")
    assert (s.lock_timeout_ms, s.lock_retries) == (80, 4)
    assert (s.statement_timeout_ms, s.wait_for_runner_s) == (3_600_000, 2.5)
    assert guard.Settings().backfill_workers == 2
    s = guard.Settings.from_environment({"SCHEMAGEN_BACKFILL_WORKERS": "3"})
    assert s.backfill_workers == 3
    assert s.with_options(backfill_workers="1").backfill_workers == 1
    assert (guard.Settings().max_replica_lag_ms, guard.Settings().replica_wait_ms) == (
        2_000,
        600_000,
    )
    env = {"SCHEMAGEN_MAX_REPLICA_LAG": "500ms", "SCHEMAGEN_REPLICA_WAIT": "1min"}
    s = guard.Settings.from_environment(env)
    assert (s.max_replica_lag_ms, s.replica_wait_ms) == (500, 60_000)
    assert s.with_options(max_replica_lag="0").max_replica_lag_ms == 0  # off


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lock-timeout", "soon", "lock timeout: 'soon' is not a duration"),
        ("--lock-timeout", "0ms", "lock timeout: must be at least 1ms"),
        ("--lock-retries", "-1", "lock retries: '-1' is not a number"),
        ("--statement-timeout", "5 weeks", "statement timeout: '5 weeks' is not a duration"),
        ("--wait-for-runner", "forever", "wait for runner: 'forever' is not 0 to 86400"),
        ("--backfill-workers", "0", "backfill workers: '0' is not a number from 1 to 16"),
        ("--backfill-workers", "two", "backfill workers: 'two' is not a number from 1 to 16"),
        ("--max-replica-lag", "a bit", "max replica lag: 'a bit' is not a duration"),
        ("--replica-wait", "0s", "replica wait: must be at least 1ms"),
    ],
)
def test_a_bad_setting_is_a_usage_error(option: str, value: str, message: str) -> None:
    result = cli("upgrade", "--url", "sqlite:////nonexistent/dir/x.db", f"{option}={value}")
    assert result.exit_code == Exit.USAGE, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_runner_busy_has_its_own_exit_code() -> None:
    assert Exit.RUNNER_BUSY == 5
    assert all(code != 5 for code in Exit if code is not Exit.RUNNER_BUSY)
