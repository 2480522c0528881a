"""Why a client statement is slow during change 0003's online path (issue 14's 100 ms goal).

The migrate suite's clients (benchmarks.typechange.Clients: single-row INSERT, SELECT, UPDATE
and DELETE on both tables, autocommit) run while a child process upgrades a copy of a base at
0002 to 0003 (the migration in a process of its own, as a runner is beside an application);
a sampler in this process reads, every ``--every-ms``:

- ``pg_stat_activity``: what each client backend waits on (``wait_event_type/wait_event``;
  none while it runs on a CPU or waits for one);
- the WAL: ``pg_current_wal_insert_lsn() - pg_current_wal_flush_lsn()`` (the backlog a
  committing client must flush before its commit returns) and the bytes written;
- ``pg_stat_bgwriter``: checkpoints finished and buffers written by the checkpointer and by
  backends;
- the machine: ``/proc/pressure/{cpu,io}`` (stall time, microseconds), ``/proc/meminfo``
  (Dirty, Writeback), ``/proc/diskstats`` (writes, in flight), ``/proc/loadavg`` (runnable).

Then it lists the slowest client statements with what the samples inside each one showed,
and the same summary over all statements above and below a threshold. Variants are trees
(``--tree name=path``: the child imports that tree's ``generator``) or environments
(``--env name=VAR=value,VAR=value``), run in alternating rounds on fresh copies.

    python -m benchmarks.experiments.stall_timeline --ticks 1000000 --alerts 500000 \\
        --tree head=. [--env sync=SCHEMAGEN_X=1] [--rounds 2] [--top 10]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.databases import postgres_admin_url, settle_disk
from benchmarks.migrate import conninfo
from benchmarks.timing import clock
from benchmarks.typechange import Base, Clients, _start_revision, converted

CHILD = """
import json, sys, time
from pathlib import Path
import sqlalchemy as sa
import generator
from benchmarks.typechange import _logged
from generator import migrate
url, migrations = sa.make_url(sys.argv[1]), Path(sys.argv[2])
print("started", time.time(), flush=True)
with _logged() as ends:
    started = time.perf_counter()
    migrate.upgrade(migrations, url, "0003")
    seconds = time.perf_counter() - started
print(json.dumps({"s": seconds, "generator": generator.__file__, "ends": ends}))
"""


def _proc_pressure(kind: str) -> int:
    try:
        for line in Path(f"/proc/pressure/{kind}").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    except OSError:
        pass
    return 0


def _meminfo() -> tuple[int, int]:
    dirty = writeback = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Dirty:"):
            dirty = int(line.split()[1])
        elif line.startswith("Writeback:"):
            writeback = int(line.split()[1])
    return dirty, writeback


def _disk() -> tuple[int, int]:
    """(sectors written, I/Os in flight) of the first whole virtio/nvme/sd disk."""
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] in ("vda", "sda", "nvme0n1", "xvda"):
            return int(f[9]), int(f[11])
    return 0, 0


def _runnable() -> int:
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])


class Sampler:
    SQL = (
        "SELECT pid, coalesce(wait_event_type, '') || ':' || coalesce(wait_event, ''), "
        "state, left(query, 12), backend_type, application_name FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid()"
    )
    WAL = (
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn()), "
        "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0'), "
        "checkpoints_timed + checkpoints_req, buffers_checkpoint, buffers_backend "
        "FROM pg_stat_bgwriter"
    )

    def __init__(self, dsn: str, every_s: float, clients: set[int]):
        self.dsn = dsn
        self.every_s = every_s
        self.clients = clients
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                at = clock()
                acts = conn.execute(self.SQL).fetchall()
                backlog, wal, ckpts, buf_ckpt, buf_backend = conn.execute(self.WAL).fetchone()  # type: ignore[misc]
                dirty, writeback = _meminfo()
                sectors, in_flight = _disk()
                self.samples.append(
                    {
                        "at": at,
                        "clients": {
                            int(pid): w for pid, w, st, q, bt, app in acts if pid in self.clients
                        },
                        "kinds": {
                            int(pid): str(q).split(" ", 1)[0].lower()
                            for pid, w, st, q, bt, app in acts
                            if pid in self.clients
                        },
                        "others": Counter(
                            f"{bt}/{app[:24]}:{w}"
                            for pid, w, st, q, bt, app in acts
                            if pid not in self.clients and st != "idle"
                        ),
                        "backlog": int(backlog),
                        "wal": int(wal),
                        "ckpts": int(ckpts),
                        "buf_ckpt": int(buf_ckpt),
                        "buf_backend": int(buf_backend),
                        "dirty_kb": dirty,
                        "writeback_kb": writeback,
                        "sectors": sectors,
                        "in_flight": in_flight,
                        "cpu_psi": _proc_pressure("cpu"),
                        "io_psi": _proc_pressure("io"),
                        "runnable": _runnable(),
                    }
                )
                self._stop.wait(max(0.0, self.every_s - (clock() - at)))


def _window(samples: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [s for s in samples if start - 0.005 <= s["at"] <= end + 0.005]


def describe(samples: list[dict[str, Any]], start: float, end: float, pid: int) -> dict[str, Any]:
    inside = _window(samples, start, end)
    before = [s for s in samples if s["at"] < start][-1:] or inside[:1]
    after = [s for s in samples if s["at"] > end][:1] or inside[-1:]
    if not inside or not before or not after:
        return {"samples": 0}
    a, b = before[0], after[0]
    span = max(b["at"] - a["at"], 1e-6)
    return {
        "samples": len(inside),
        "own_waits": dict(Counter(s["clients"].get(pid, "?") for s in inside)),
        "other_clients": dict(
            Counter(w for s in inside for p, w in s["clients"].items() if p != pid)
        ),
        "others": dict(sum((s["others"] for s in inside), Counter()).most_common(6)),
        "backlog_kb_max": max(s["backlog"] for s in inside) // 1024,
        "wal_mb_s": (b["wal"] - a["wal"]) / span / 1e6,
        "checkpoint_ended": b["ckpts"] - a["ckpts"],
        "ckpt_buffers_s": (b["buf_ckpt"] - a["buf_ckpt"]) / span,
        "backend_buffers_s": (b["buf_backend"] - a["buf_backend"]) / span,
        "dirty_mb": max(s["dirty_kb"] for s in inside) // 1024,
        "writeback_mb": max(s["writeback_kb"] for s in inside) // 1024,
        "disk_mb_s": (b["sectors"] - a["sectors"]) * 512 / span / 1e6,
        "in_flight_max": max(s["in_flight"] for s in inside),
        "cpu_psi_share": (b["cpu_psi"] - a["cpu_psi"]) / 1e6 / span,
        "io_psi_share": (b["io_psi"] - a["io_psi"]) / 1e6 / span,
        "runnable_max": max(s["runnable"] for s in inside),
    }


def one_round(
    base: Base, name: str, tree: Path, env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    url = base.copy(f"st_{name}")
    dsn = conninfo(url)
    settle_disk(base.admin_url, most_s=args.settle)
    columns = converted()
    sizes = {"market_data": base.ticks, "alert_logs": base.alerts}
    gc.collect()
    gc.disable()  # as the migrate suite: the collector pauses every client thread
    try:
        return _round(base, name, tree, env, args, url, dsn, sizes, columns)
    finally:
        gc.enable()


def _round(
    base: Base,
    name: str,
    tree: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    url: Any,
    dsn: str,
    sizes: dict[str, int],
    columns: dict[str, tuple[str, ...]],
) -> dict[str, Any]:
    with Clients(dsn, sizes, columns, args.pause) as clients:
        with psycopg.connect(dsn, autocommit=True) as probe:
            pids = {
                int(r[0])
                for r in probe.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                ).fetchall()
            }
        with Sampler(dsn, args.every_ms / 1000, pids) as sampler:
            time.sleep(1.0)
            t0 = clock()
            idle = clients.take()
            started = clock()
            child_env = dict(os.environ, PYTHONPATH=str(tree), **env)
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    url.render_as_string(hide_password=False),
                    str(tree / "generated_migrations"),
                ],
                cwd=tree,
                env=child_env,
                capture_output=True,
                text=True,
                check=False,
            )
            seconds = clock() - started
            during = clients.take()
        clients.stop()
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # client samples: start relative to the Clients' own clock start at take(); rebuild
    # absolute times: Clients.take() resets _started to clock() at each take
    rows = []
    for kind, items in during.items():
        for s in items:
            rows.append((s.seconds, kind, t0 + s.at, t0 + s.at + s.seconds, s.error))
    rows.sort(reverse=True)
    samples = sampler.samples
    pid_of = _pids_by_kind(pids, samples)
    top = []
    for took, kind, a, b, error in rows[: args.top]:
        top.append(
            {
                "ms": round(took * 1000, 1),
                "kind": kind,
                "at_s": round(a - started, 2),
                "error": error,
                **describe(samples, a, b, pid_of.get(kind, -1)),
            }
        )
    durations = [r[0] * 1000 for r in rows]
    # the machine over the whole change and over the idle second
    whole = describe(samples, started, started + seconds, -1)
    phases = {e["step"]: round(e["ms"]) for e in result["ends"] if e.get("depth", 0) == 0}
    return {
        "variant": name,
        "change_s": round(seconds, 1),
        "phases_ms": phases,
        "statements": len(rows),
        "p50_ms": round(statistics.median(durations), 2) if durations else None,
        "p99_ms": round(sorted(durations)[int(len(durations) * 0.99)], 1) if durations else None,
        "over_50ms": sum(d > 50 for d in durations),
        "over_100ms": sum(d > 100 for d in durations),
        "max_ms": round(max(durations), 1) if durations else None,
        "max_by_kind": {
            k: round(max((s.seconds * 1000 for s in v), default=0), 1) for k, v in during.items()
        },
        "insert_select_over_50ms": sum(r[0] > 0.05 for r in rows if r[1] in ("insert", "select")),
        "idle_max_ms": round(
            max((s.seconds * 1000 for v in idle.values() for s in v), default=0), 1
        ),
        "whole": whole,
        "top": top,
        "samples": len(samples),
        "sampler_gaps_ms": sorted(
            (round((b["at"] - a["at"]) * 1000, 1), round(a["at"] - started, 2))
            for a, b in itertools.pairwise(samples)
        )[-5:],
    }


def _pids_by_kind(pids: set[int], samples: list[dict[str, Any]]) -> dict[str, int]:
    """Each client connection runs one kind of statement: its pid from its query's verb."""
    seen: dict[str, Counter[int]] = {}
    for s in samples:
        for pid, verb in s["kinds"].items():
            seen.setdefault(verb, Counter())[pid] += 1
    return {verb: c.most_common(1)[0][0] for verb, c in seen.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ticks", type=int, default=1_000_000)
    p.add_argument("--alerts", type=int, default=500_000)
    p.add_argument("--tree", action="append", default=[], help="name=path")
    p.add_argument("--env", action="append", default=[], help="name=VAR=value,VAR=value")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--every-ms", type=float, default=10.0)
    p.add_argument("--pause", type=float, default=0.001)
    p.add_argument("--settle", type=float, default=60.0)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    variants: list[tuple[str, Path, dict[str, str]]] = []
    for spec in args.tree or ["head=."]:
        name, path = spec.split("=", 1)
        variants.append((name, Path(path).resolve(), {}))
    for spec in args.env:
        name, pairs = spec.split("=", 1)
        env = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        variants.append((name, variants[0][1], env))
    base = Base(postgres_admin_url(None), args.ticks, args.alerts)
    results: list[dict[str, Any]] = []
    try:
        print(f"filling the base ({args.ticks:,} / {args.alerts:,})", file=sys.stderr)
        base.build(_start_revision())
        for r in range(args.rounds):
            for name, tree, env in variants:
                print(f"round {r + 1}: {name}", file=sys.stderr)
                res = one_round(base, f"{name}_{r}", tree, env, args)
                results.append(res)
                print(json.dumps(res, indent=1, default=str), flush=True)
                url = base.made.pop()
                from benchmarks.databases import admin_sql

                admin_sql(base.admin_url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        base.drop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
