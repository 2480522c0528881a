"""A long history is rendered by several processes (generator.render._render_in_parallel):
the same bytes as one process renders, and a child that fails leaves its share to the parent.
Run in a subprocess: a fork belongs in a process without other threads (pytest-xdist's
workers have some, and render.jobs() renders in one process there)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from support import ROOT

from benchmarks import gencheck
from generator import render

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from generator import render
    from generator.load import load_changes

    changes = load_changes(Path(sys.argv[1]))
    render.PARALLEL_MIN = 2
    serial = render._hashed(render._render(render.make_env(), changes))
    parallel = render._render_in_parallel(render.make_env(), changes, 3)
    assert parallel == serial, "parallel rendering differs"
    parent, hashed = os.getpid(), render._hashed

    def failing(files):
        if os.getpid() != parent:
            raise RuntimeError("a child fails")
        return hashed(files)

    render._hashed = failing  # every child fails: the parent renders their shares
    assert render._render_in_parallel(render.make_env(), changes, 3) == serial
    print("same", len(serial))
    """
)


def test_processes_render_the_same_bytes(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_baseline.yaml").write_bytes(gencheck.BASELINE.read_bytes())
    for number in range(1, 12):
        ident, text = gencheck._change(number)
        (changes / f"{number:04d}_{ident}.yaml").write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(changes)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["same", "12"]


def test_jobs_is_one_where_a_fork_is_unsafe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(render.JOBS_ENV, "1")
    assert render.jobs() == 1
    monkeypatch.setenv(render.JOBS_ENV, "3")
    expected = 3 if sys.platform == "linux" and hasattr(os, "fork") else 1
    if threading.active_count() > 1:  # pytest-xdist's worker: never forks
        expected = 1
    assert render.jobs() == expected
