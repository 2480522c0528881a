"""runtime.step logs each step's depth (0: a phase of the change; 1 and more: a step inside
one, as the online type change's phases are): the step context carries it, so a failed inner
step and steps run in another context (a thread) leave no depth behind."""

from __future__ import annotations

import logging
import threading

import pytest

from generator import runtime


def _ends(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    return [
        (r.step, r.depth, r.result)  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "event", None) == "end"
    ]


def test_nested_steps_log_their_depth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with runtime.step("c", "outer", "sqlite") as outer:
        assert outer.depth == 0
        with runtime.step("c", "inner", "sqlite") as inner:
            assert inner.depth == 1
            with runtime.step("c", "innermost", "sqlite") as innermost:
                assert innermost.depth == 2
        with pytest.raises(RuntimeError), runtime.step("c", "failing", "sqlite"):
            raise RuntimeError("boom")
        with runtime.step("c", "after the failure", "sqlite") as after:
            assert after.depth == 1
    with runtime.step("c", "next phase", "sqlite") as nxt:
        assert nxt.depth == 0
    assert _ends(caplog) == [
        ("innermost", 2, "ok"),
        ("inner", 1, "ok"),
        ("failing", 1, "failed"),
        ("after the failure", 1, "ok"),
        ("outer", 0, "ok"),
        ("next phase", 0, "ok"),
    ]


def test_a_step_in_another_thread_starts_at_depth_zero() -> None:
    depths: list[int] = []

    def other() -> None:
        with runtime.step("c", "elsewhere", "sqlite") as record:
            depths.append(record.depth)

    with runtime.step("c", "outer", "sqlite"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert depths == [0]
