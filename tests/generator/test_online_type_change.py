"""Change 0003 online on PostgreSQL (generator/online.py): concurrent writers during every
phase lose no row and no value drifts; killed at points across the phases, and at 20 random
moments over every phase of both directions, a re-run continues (no finished batch redone)
and an undo works from each; a tampered shadow is a drift naming its row."""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
import threading
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from support import ROOT, db_revision, dump
from test_resume import _run_killed

from generator import db, migrate
from generator.runtime import CheckFailed
from marketdata import demo

MIGRATIONS = ROOT / "generated_migrations"
pytestmark = [pytest.mark.db]


@pytest.fixture
def pg_url(pg_database: str) -> str:
    from conftest import pg_url_for

    return pg_url_for(pg_database)


def _seed(url: str, ticks: int) -> None:
    u = sa.make_url(url)
    migrate.upgrade(MIGRATIONS, u, "0002")
    engine = db.make_engine(u)
    with engine.begin() as conn:
        demo.seed(conn, ticks=ticks, alerts=300)
    engine.dispose()


def _prices(url: str) -> dict[int, Decimal | None]:
    engine = db.make_engine(sa.make_url(url))
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, price FROM market_data").all()
    engine.dispose()
    return {int(r[0]): None if r[1] is None else Decimal(str(r[1])) for r in rows}


def _plain(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_FRESH = itertools.count(int(time.time()) % 1000)


class _Writers:
    """Two application sessions inserting, updating and deleting ticks while the change runs;
    what each id should hold afterwards is recorded as each write commits."""

    def __init__(self, url: str, ids: list[int]):
        self.url = _plain(url)
        self.expected: dict[int, Decimal | None] = {}
        self.deleted: set[int] = set()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.ids = ids
        self.writes = 0
        self.spans: list[tuple[float, float]] = []  # (start, end) of each write
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(2)]

    def __enter__(self) -> _Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        mine = [i for i in self.ids if i % 2 == n]
        # fresh ids of this session, apart from every earlier _Writers' (a run in the same
        # second as the one before would otherwise insert its ids again)
        fresh = 10_000_000 * (n + 1) + next(_FRESH) * 100_000
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                instrument = conn.execute("SELECT min(id) FROM instruments").fetchone()
                assert instrument is not None
                while not self.stop.is_set():
                    began = time.monotonic()
                    kind = rng.random()
                    price = Decimal(rng.randint(1, 10**9)) / 10000
                    if kind < 0.4 and mine:
                        row = rng.choice(mine)
                        conn.execute(
                            "UPDATE market_data SET price = %s WHERE id = %s", (price, row)
                        )
                        with self.lock:
                            if row not in self.deleted:
                                self.expected[row] = price
                    elif kind < 0.55 and mine:
                        row = mine.pop(rng.randrange(len(mine)))
                        conn.execute("DELETE FROM market_data WHERE id = %s", (row,))
                        with self.lock:
                            self.deleted.add(row)
                            self.expected.pop(row, None)
                    else:
                        fresh += 1
                        got = conn.execute(
                            "INSERT INTO market_data (id, instrument_id, timestamp, price) "
                            "VALUES (%s, %s, now(), %s) RETURNING id",
                            (fresh, instrument[0], price),
                        ).fetchone()
                        assert got is not None
                        with self.lock:
                            self.expected[int(got[0])] = price
                    self.writes += 1
                    self.spans.append((began, time.monotonic()))
                    time.sleep(0.001)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


def _assert_rows(url: str, before: dict[int, Decimal | None], w: _Writers) -> None:
    """Row by row: every row the writers did not delete is there, with its value (drift
    below 0.0001); no deleted row came back."""
    after = _prices(url)
    want = {k: v for k, v in before.items() if k not in w.deleted}
    want.update(w.expected)
    assert set(after) == set(want), (set(want) - set(after), set(after) - set(want))
    drifting = [
        (k, want[k], after[k])
        for k in want
        if (want[k] is None) != (after[k] is None)
        or (want[k] is not None and abs(want[k] - after[k]) >= Decimal("0.0001"))  # type: ignore[operator]
    ]
    assert drifting == []


class _Phases(logging.Handler):
    """When each online phase of market_data started and ended (the runtime's step log)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.open: dict[str, float] = {}
        self.spans: dict[str, tuple[float, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        name = str(getattr(record, "step", ""))
        if not name.endswith(" market_data"):
            return
        if getattr(record, "event", None) == "start":
            self.open[name] = time.monotonic()
        elif getattr(record, "event", None) == "end":
            self.spans[name] = (self.open.pop(name), time.monotonic())


@pytest.mark.parametrize("method", ["table", "columns"])
def test_concurrent_writers_lose_no_row_and_no_value_drifts(
    pg_url: str, caplog: Any, method: str, monkeypatch: Any
) -> None:
    """Two application sessions writing through every phase, the backfill in two slices; by
    shadow table (the default) and by shadow columns (--online-method)."""
    monkeypatch.setenv("SCHEMAGEN_ONLINE_METHOD", method)
    caplog.set_level(logging.INFO, logger="schemagen")
    _seed(pg_url, ticks=4000)
    before = _prices(pg_url)
    u = sa.make_url(pg_url)
    phases = _Phases()
    logger = logging.getLogger("schemagen")
    logger.addHandler(phases)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with _Writers(pg_url, sorted(before)) as w:
            time.sleep(0.2)
            migrate.upgrade(MIGRATIONS, u, "0003")
            mid = w.writes
            time.sleep(0.2)
    finally:
        logger.removeHandler(phases)
        logger.setLevel(level)
    assert not w.errors, w.errors
    assert w.writes > mid > 0
    # writes overlapped every phase (a write waiting on a phase's lock overlaps it too)
    for phase in ("expand", "backfill", "prepare", "contract"):
        start, end = phases.spans[f"{phase} market_data"]
        assert any(a <= end and b >= start for a, b in w.spans), phase
    assert db_revision(pg_url) == "0003"
    assert "backfill of market_data in 2 slices" in caplog.text
    assert f"path: online (shadow {method})" in caplog.text
    _assert_rows(pg_url, before, w)
    # and back, online too, with the writers again
    before = _prices(pg_url)
    with _Writers(pg_url, sorted(before)) as w:
        time.sleep(0.1)
        migrate.downgrade(MIGRATIONS, u, "0002")
    assert not w.errors, w.errors
    assert db_revision(pg_url) == "0002"
    _assert_rows(pg_url, before, w)


# Points across the phases (statement fragments, nth occurrence) where the run is killed.
KILL_POINTS = [
    ('ADD COLUMN IF NOT EXISTS "sg_up__price"', 1),  # expand, before its commit
    ('UPDATE "market_data" SET "sg_up__price"', 1),  # backfill, a batch
    ('UPDATE "market_data" SET "sg_up__price"', 2),
    ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "sg_up__ix', 1),  # prepare
    ("VALIDATE CONSTRAINT", 1),  # market_data's one: price's NOT NULL helper
    ('DROP COLUMN "price"', 1),  # contract, before its commit
    ('UPDATE "alert_logs" SET "sg_up__trigger_value"', 1),  # second table
    ('ALTER TABLE "alert_logs" DROP COLUMN "trigger_value"', 1),
]
# ... and by shadow table (the default method)
TABLE_KILL_POINTS = [
    ('ALTER TABLE "sg_up__market_data" ALTER COLUMN', 1),  # expand, before its commit
    ('sg_i AS (INSERT INTO "sg_up__market_data"', 1),  # backfill, a batch
    ('sg_i AS (INSERT INTO "sg_up__market_data"', 2),
    ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "sg_up__ix', 1),  # prepare
    ('ANALYZE "sg_up__market_data"', 1),
    ('DROP TABLE "market_data"', 1),  # contract, before its commit
    ('sg_i AS (INSERT INTO "sg_up__alert_logs"', 1),  # second table
    ('DROP TABLE "alert_logs"', 1),
    ('ALTER TABLE "alert_logs" VALIDATE CONSTRAINT', 1),  # its keys, after the swap
]


@pytest.mark.kill
@pytest.mark.parametrize("method", ["table", "columns"])
def test_killed_in_every_phase_continues_or_downgrades(
    pg_url: str, method: str, monkeypatch: Any
) -> None:
    monkeypatch.setenv("SCHEMAGEN_ONLINE_METHOD", method)
    _seed(pg_url, ticks=1500)  # two batches: the first of 1000 rows, then the rest
    original = dump(pg_url)
    rng = random.Random(14)
    started = time.monotonic()
    for i, (marker, nth) in enumerate(TABLE_KILL_POINTS if method == "table" else KILL_POINTS):
        killed = _run_killed(pg_url, marker, nth, "upgrade", "--to", "0003")
        assert killed.returncode == -9, (marker, killed.stdout, killed.stderr)
        assert db_revision(pg_url) == "0002", marker  # killed before its stamp
        if i % 2:  # undo the half-applied upgrade, from wherever it stopped
            back = _run(pg_url, "downgrade", "--to", "0002")
            assert back.returncode == 0, (marker, back.stdout, back.stderr)
            assert db_revision(pg_url) == "0002"
            assert dump(pg_url) == original, marker
        elif rng.random() < 0.5:  # continue it
            again = _run(pg_url, "upgrade", "--to", "0003")
            assert again.returncode == 0, (marker, again.stdout, again.stderr)
            assert db_revision(pg_url) == "0003"
            down = _run(pg_url, "downgrade", "--to", "0002")
            assert down.returncode == 0, (marker, down.stdout, down.stderr)
            assert dump(pg_url) == original, marker
    assert time.monotonic() - started < 60
    final = _run(pg_url, "upgrade", "--to", "0003")
    assert final.returncode == 0, final.stderr
    assert db_revision(pg_url) == "0003"


def _run(url: str, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "generator", "--root", str(ROOT), *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tamper(url: str, row: int) -> None:
    """An application trigger that moves row ``row``'s price shadow by 0.001 after the
    conversion wrote it: a drift the batch must name."""
    engine = db.make_engine(sa.make_url(url))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.id = {row} AND to_jsonb(NEW) ? 'sg_up__price' THEN "
            "NEW := jsonb_populate_record(NEW, jsonb_build_object('sg_up__price', "
            "(to_jsonb(NEW)->>'sg_up__price')::float8 + 0.001)); END IF; RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER zz_tamper BEFORE UPDATE ON market_data "
            "FOR EACH ROW EXECUTE FUNCTION tamper()"
        )
    engine.dispose()


def test_a_drifting_shadow_fails_its_batch_naming_the_row(pg_url: str) -> None:
    """A trigger of the application's that changes the shadow after the conversion (the
    conversion would then not be what was written): the batch names the row and the run
    stops before the contract; the downgrade undoes the expand."""
    _seed(pg_url, ticks=300)
    original = dump(pg_url)
    _tamper(pg_url, 42)
    with pytest.raises(CheckFailed) as failure:
        migrate.upgrade(MIGRATIONS, sa.make_url(pg_url), "0003")
    message = str(failure.value)
    assert "market_data.drift" in message
    assert "\n    42 " in message or "| 42" in message or " 42 |" in message, message
    assert db_revision(pg_url) == "0002"
    engine = db.make_engine(sa.make_url(pg_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER zz_tamper ON market_data")
    engine.dispose()
    back = _run(pg_url, "downgrade", "--to", "0002")
    assert back.returncode == 0, back.stderr
    assert dump(pg_url) == original


def test_squawk_finds_no_column_type_change_in_0003(tmp_path: Any) -> None:
    from support import cli
    from test_shop_squawk import _squawk

    from generator.cli import Exit

    result = cli("plan", "0003", "--dialect", "postgresql", "--direction", "upgrade", root=ROOT)
    assert result.exit_code == Exit.OK, result.output
    assert "phase contract [ACCESS EXCLUSIVE" in result.stdout  # the phases, with their locks
    path = tmp_path / "0003.sql"
    path.write_text(result.stdout)
    import json
    import subprocess

    run = subprocess.run(
        [_squawk(), "--reporter", "json", "--pg-version", "15", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr
    rules = {f["rule_name"] for f in json.loads(run.stdout or "[]")}
    assert "changing-column-type" not in rules


@pytest.mark.kill
def test_status_shows_the_backfill_and_a_rerun_redoes_no_finished_batch(
    pg_url: str, monkeypatch: Any
) -> None:
    """One loop (a backfill in slices: the slices' resume test below)."""
    import re

    from support import cli

    monkeypatch.setenv("SCHEMAGEN_BACKFILL_WORKERS", "1")
    _seed(pg_url, ticks=2500)
    # killed after the second batch's progress row is written: the first batch committed
    killed = _run_killed(pg_url, "UPDATE schemagen.backfill_progress SET last_key", 2, "upgrade")
    assert killed.returncode == -9, killed.stderr
    status = cli("status", "--url", pg_url, root=ROOT)
    assert "online type change of market_data:" in status.stdout
    assert "            contract: ACCESS EXCLUSIVE" in status.stdout
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("online:"))
    assert (
        "0003_convert_decimal_to_float (upgrade) market_data by shadow table: backfill running, "
        "1 batches" in line
    )
    done = int(re.search(r"(\d+) rows", line).group(1))  # type: ignore[union-attr]
    assert 0 < done < 2500
    again = _run(pg_url, "upgrade", "--to", "0003")
    assert again.returncode == 0, again.stderr
    logs = again.stdout + again.stderr
    rows = re.search(r"backfill market_data ok \(.*?rows: (\d+)", logs)
    assert rows is not None, logs
    assert int(rows.group(1)) == 2500 - done  # the finished batch is not redone
    assert db_revision(pg_url) == "0003"


@pytest.mark.kill
def test_application_updates_mid_backfill_keep_every_shadow_converted(
    pg_url: str, monkeypatch: Any
) -> None:
    """The trigger fires on INSERT and on an UPDATE that sets an old column (UPDATE OF), not
    on the backfill's own UPDATE of the shadows. Killed after the first batch committed: the
    application updates the old column of a row already backfilled and of one not yet, and
    only another column of two more; each shadow is then its old column's conversion, and
    the finished change holds every row's value. One loop: the first batch is the first
    keys (slices: test_concurrent_writers_lose_no_row_and_no_value_drifts). By shadow
    columns: the shadow table has no fill trigger (a row is copied whole by its batch or by
    the trigger; test_concurrent_writers_lose_no_row_and_no_value_drifts)."""
    monkeypatch.setenv("SCHEMAGEN_BACKFILL_WORKERS", "1")
    monkeypatch.setenv("SCHEMAGEN_ONLINE_METHOD", "columns")
    _seed(pg_url, ticks=4000)
    before = _prices(pg_url)
    ids = sorted(before)
    killed = _run_killed(pg_url, "UPDATE schemagen.backfill_progress SET last_key", 2, "upgrade")
    assert killed.returncode == -9, killed.stderr
    done, later = ids[0], ids[-1]  # the first batch is the first 1000 keys; the last is not
    other_done, other_later = ids[1], ids[-2]
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        (last_key,) = conn.execute(  # type: ignore[misc]
            "SELECT last_key FROM schemagen.backfill_progress WHERE step = 'online_market_data'"
        ).fetchone()
        assert done <= json.loads(last_key)[0] < other_later
        shadow = "SELECT sg_up__price FROM market_data WHERE id = %s"
        assert conn.execute(shadow, (later,)).fetchone() == (None,)
        for row, price in ((done, Decimal("1234.5678")), (later, Decimal("8765.4321"))):
            conn.execute("UPDATE market_data SET price = %s WHERE id = %s", (price, row))
            before[row] = price
        for row in (other_done, other_later):
            conn.execute("UPDATE market_data SET volume = 7 WHERE id = %s", (row,))
        rows = conn.execute(
            "SELECT id, price, sg_up__price FROM market_data WHERE id = ANY(%s)",
            ([done, later, other_done, other_later],),
        ).fetchall()
    got = {r[0]: (r[1], r[2]) for r in rows}
    assert got[done] == (Decimal("1234.5678"), 1234.5678)
    assert got[later] == (Decimal("8765.4321"), 8765.4321)
    # another column only: the backfilled row keeps its shadow; the row not backfilled yet
    # gets it from the second trigger (its new version must hold it: the NOT NULL helper
    # check is enforced on every new row version; UPDATE OF alone failed this UPDATE)
    for row in (other_done, other_later):
        assert got[row] == (before[row], float(before[row]))  # type: ignore[arg-type]
    again = _run(pg_url, "upgrade", "--to", "0003")
    assert again.returncode == 0, again.stderr
    assert db_revision(pg_url) == "0003"
    after = _prices(pg_url)
    assert set(after) == set(before)
    assert [k for k in before if abs(after[k] - before[k]) >= Decimal("0.0001")] == []  # type: ignore[operator]
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        volumes = conn.execute(
            "SELECT id, volume FROM market_data WHERE id = ANY(%s)", ([other_done, other_later],)
        ).fetchall()
    assert sorted(volumes) == sorted([(other_done, 7), (other_later, 7)])


PHASES = ("expand", "backfill", "prepare", "contract")
ONLINE_TABLES = ("market_data", "alert_logs")


def _phase_steps(url: str, direction: str, target: str) -> list[tuple[str, int]]:
    """Run ``direction`` to ``target`` in this process, uncut: the online phases in the order
    they ran (``expand market_data``, ...), each with the number of statements it ran."""
    from kill_after import counting

    counts: dict[str, int] = {}

    def on_statement(statement: str, step: str | None) -> None:
        if step is not None and step.split(" ", 1)[0] in PHASES:
            counts[step] = counts.get(step, 0) + 1

    run = migrate.upgrade if direction == "upgrade" else migrate.downgrade
    with counting(on_statement):
        run(MIGRATIONS, sa.make_url(url), target)
    return list(counts.items())


def _forked(url: str, out: Any, *args: str, step: str | None = None, nth: int = 0) -> Any:
    """``schemagen ARGS --url URL`` in a process forked from this one (the interpreter and
    its imports are ready: a run costs the migration, not seconds of start-up), killed with
    SIGKILL after the ``nth`` statement of ``step`` (or at its end). Returns (exit code, or
    minus the signal; its output)."""
    import sys
    import traceback

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 70
        try:
            log = open(out, "w", buffering=1)  # noqa: SIM115 (closed by the exit)
            sys.stdout = sys.stderr = log
            if step is not None:
                from kill_after import arm

                arm("", nth, step)
            from generator.cli import main

            try:
                main(["--root", str(ROOT), *args, "--url", url], prog_name="schemagen")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, out.read_text()


Span = tuple[Any, Any]  # keys done: (after this key or None, up to this key or None: all)


def _progress(url: str) -> dict[tuple[str, str], tuple[list[Span], int, int, bool]]:
    """0003's backfill progress: (table, direction) -> (the key spans done, batches, rows,
    finished). One loop: one span up to its last key. In slices (online_<table>#<k>, the
    split in the table's row): a span per slice, from the slice's start up to its last key
    (to its end once finished), batches and rows summed over the slices."""
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            if not conn.exec_driver_sql(
                "SELECT to_regclass('schemagen.backfill_progress')"
            ).scalar():
                return {}
            rows = conn.exec_driver_sql(
                "SELECT step, direction, last_key, batches, rows_done, done "
                "FROM schemagen.backfill_progress WHERE change_name LIKE '0003%%' "
                "AND step LIKE 'online%%'"  # not the keys to validate after a swap
            ).all()
    finally:
        engine.dispose()
    slices = {(r[0], r[1]): r for r in rows if "#" in r[0]}
    out: dict[tuple[str, str], tuple[list[Span], int, int, bool]] = {}
    for step, direction, last_key, batches, done_rows, done in rows:
        if "#" in step:
            continue
        last = None if last_key is None else json.loads(last_key)
        key = (step.removeprefix("online_"), direction)
        if not isinstance(last, dict):
            out[key] = ([(None, None if last is None else last[0])], batches, done_rows, done)
            continue
        uppers, spans, total_b, total_r = last["slices"], [], 0, 0
        for k, upper in enumerate(uppers, start=1):
            r = slices[(f"{step}#{k}", direction)]
            start = None if k == 1 else uppers[k - 2]
            end = upper if r[5] else (None if r[2] is None else json.loads(r[2])[0])
            if r[5] or end is not None:
                spans.append((start, end if end is not None else float("inf")))
            total_b, total_r = total_b + r[3], total_r + r[4]
        # the table's row is finished only once every slice is (a kill between the last
        # slice's end and that row's update leaves them all finished, the table's not yet)
        every = all(slices[(f"{step}#{k}", direction)][5] for k in range(1, len(uppers) + 1))
        assert every or not done
        out[key] = (spans, total_b, total_r, every)
    return out


def _keys_up_to(url: str, table: str, spans: list[Span]) -> tuple[int, int]:
    """(rows of ``table`` with an id in one of the spans done, all its rows)."""
    terms = []
    for after, upto in spans:
        if upto is None:
            continue
        cond = [] if after is None else [f"id > {int(after)}"]
        cond += [] if upto == float("inf") else [f"id <= {int(upto)}"]
        terms.append("(" + (" AND ".join(cond) or "true") + ")")
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                f"SELECT count(*) FILTER (WHERE {' OR '.join(terms) or 'false'}), "
                f'count(*) FROM "{table}"'
            ).one()
    finally:
        engine.dispose()
    return int(row[0]), int(row[1])


def _kill_plan(steps: list[tuple[str, int]], rng: random.Random) -> list[tuple[str, int, bool]]:
    """Ten moments along one direction's phases: one in each of its eight online phases (a
    random statement of it, or its end, after its commit), two more in a backfill or a
    prepare (which a resumed run opens again); in the order a run meets them. Each with
    whether the run after it undoes the change (one per phase kind, never the last) instead of
    continuing it."""
    kills = [(i, rng.randint(1, n + 1)) for i, (_, n) in enumerate(steps)]
    again = [i for i, (name, _) in enumerate(steps) if name.split()[0] in ("backfill", "prepare")]
    for _ in range(2):
        i = rng.choice(again)
        kills.append((i, rng.randint(1, steps[i][1])))
    kills.sort()
    undo = set()
    for phase in PHASES:
        mine = [j for j, (i, _) in enumerate(kills[:-1]) if steps[i][0].startswith(phase)]
        undo.add(rng.choice(mine))
    return [(steps[i][0], nth, j in undo) for j, (i, nth) in enumerate(kills)]


def _last_phase(output: str) -> str | None:
    """The online phase the runtime's log last started or ended."""
    phases, tables = "|".join(PHASES), "|".join(ONLINE_TABLES)
    found = re.findall(rf": ((?:{phases}) (?:{tables})) (?:\.\.\.|ok)", output)
    return found[-1] if found else None


@pytest.mark.kill
def test_killed_at_random_moments_then_finished_loses_nothing(pg_url: str, tmp_path: Any) -> None:
    """Twenty SIGKILLs at random moments spread over every online phase of both tables, ten
    in the upgrade and ten in the downgrade (each phase at least once: a random statement of
    it, or its end). After a kill the next run either continues where it stopped (the
    backfill's progress record shows no batch done twice: rows done = rows up to the last
    key, and a resumed backfill converts only the rows after it) or undoes it (once from
    each phase kind in each direction), which gives back exactly the rows it started from.
    Each direction then finishes: row by row, the upgrade ends with exactly the values an
    uncut upgrade gives (within 0.0001 of the originals), the downgrade with the originals."""
    from support import assert_prices_within

    _seed(pg_url, ticks=1500)  # market_data: two batches and the last, empty one
    original = dump(pg_url)
    started = time.monotonic()
    # an uncut run each way, counting each phase's statements (the kills' ranges)
    steps = {"upgrade": _phase_steps(pg_url, "upgrade", "0003")}
    at_head = dump(pg_url)
    assert_prices_within(original, at_head, pg_url)
    steps["downgrade"] = _phase_steps(pg_url, "downgrade", "0002")
    assert dump(pg_url) == original
    for direction, found in steps.items():
        assert sorted(name for name, _ in found) == sorted(
            f"{p} {t}" for p in PHASES for t in ONLINE_TABLES
        ), (direction, found)
    seed = int(os.environ.get("KILL_SEED", "1414"))  # another seed: other moments
    rng = random.Random(seed)
    commands = {"upgrade": ("upgrade", "--to", "0003"), "downgrade": ("downgrade", "--to", "0002")}
    start = {"upgrade": ("0002", original), "downgrade": ("0003", at_head)}
    kills, undone, log = 0, set(), []
    for direction, back in (("upgrade", "downgrade"), ("downgrade", "upgrade")):
        revision, state = start[direction]
        if direction == "downgrade":
            done = _forked(pg_url, tmp_path / "to-head.log", *commands["upgrade"])
            assert done[0] == 0, done[1]
            assert dump(pg_url) == at_head
        seen: dict[str, tuple[list[Span], int, int, bool]] = {}  # since the last undo
        for step, nth, undo in _kill_plan(steps[direction], rng):
            out = tmp_path / f"kill{kills}.log"
            code, output = _forked(pg_url, out, *commands[direction], step=step, nth=nth)
            assert code == -9, (seed, step, nth, code, output)
            assert _last_phase(output) == step, (step, nth, output)
            kills += 1
            log.append(f"{direction} {step} #{nth}{' (undone)' if undo else ''}")
            assert db_revision(pg_url) == revision
            # the progress record: no batch done twice; a resumed backfill did only the rest
            progress = {t: p for (t, d), p in _progress(pg_url).items() if d == direction}
            for table, (last, batches, rows, finished) in progress.items():
                upto, total = _keys_up_to(pg_url, table, last)
                assert rows == (total if finished else upto), (step, table, progress)
                if table in seen:
                    _, was_batches, was_rows, _ = seen[table]
                    assert batches >= was_batches and rows >= was_rows, (step, table)
                    ran = re.search(
                        rf"backfill {table} ok \(.*?batches: (\d+), rows: (\d+)", output
                    )
                    if ran:  # the resumed backfill converted only the rows not done yet
                        log.append(f"  resumed: {ran.group(0)} after {was_rows}")
                        assert int(ran.group(2)) == total - was_rows, (step, output)
            seen.update(progress)
            if undo:
                code, output = _forked(pg_url, tmp_path / f"undo{kills}.log", *commands[back])
                assert code == 0, (step, output)
                assert db_revision(pg_url) == revision
                assert dump(pg_url) == state, ("undo after a kill in", step)
                undone.add((direction, step.split()[0]))
                seen = {}
        code, output = _forked(pg_url, tmp_path / f"finish-{direction}.log", *commands[direction])
        assert code == 0, output
        assert db_revision(pg_url) == ("0003" if direction == "upgrade" else "0002")
        assert dump(pg_url) == (at_head if direction == "upgrade" else original)
        assert _progress(pg_url) == {}
    assert kills == 20, log
    assert undone == {(d, p) for d in ("upgrade", "downgrade") for p in PHASES}, undone
    assert_prices_within(original, dump(pg_url), pg_url)
    print("\n".join(log), f"\n{time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 300, log


def test_online_false_keeps_the_blocking_alter(tmp_path: Any) -> None:
    """`online: false` renders the blocking ALTER TABLE (range check in the same statement),
    the default renders the online unit; SQLite is the same table rebuild either way."""
    import shutil

    from generator.load import load_changes
    from generator.render import generate

    rendered = {}
    for online in ("true", "false"):
        changes = tmp_path / online / "changes"
        changes.mkdir(parents=True)
        for name in ("0000_baseline.yaml", "0001_optimize_market_data_indexes.yaml"):
            shutil.copy(ROOT / "changes" / name, changes)
        (changes / "0002_convert.yaml").write_text(
            "id: convert\ndescription: x\nacknowledge: {SG102: x}\noperations:\n"
            "  - {op: alter_column_type, table: market_data, column: price, "
            f'from: "decimal(12,4)", to: float, range_check: true, online: {online}}}\n',
            encoding="utf-8",
        )
        files = generate(load_changes(changes, display_base=tmp_path / online))
        rendered[online] = files["versions/0002_convert.py"]
    online_py, blocking_py = rendered["true"], rendered["false"]
    assert "runtime.online_type_change(" in online_py
    assert "runtime.online_type_change(" not in blocking_py
    # the range check is the column's type, domain float_within_1e8, created (with its CHECK)
    # before the ALTER TABLE
    assert 'ALTER COLUMN "price" TYPE "float_within_1e8" USING "price"::double precision' in (
        blocking_py
    )
    assert r"CREATE DOMAIN \"float_within_1e8\" AS double precision" in blocking_py
    assert 'ADD CONSTRAINT "ck_market_data_price_range"' not in blocking_py
    sqlite = [
        t.split("def _upgrade_sqlite", 1)[1].split("def _downgrade", 1)[0]
        for t in rendered.values()
    ]
    assert sqlite[0] == sqlite[1]


def test_an_empty_table_takes_the_blocking_alter(pg_url: str, caplog: Any) -> None:
    u = sa.make_url(pg_url)
    migrate.upgrade(MIGRATIONS, u, "0002")
    with caplog.at_level(logging.INFO, logger="schemagen"):
        migrate.upgrade(MIGRATIONS, u, "0003")
    paths = [getattr(r, "path", None) for r in caplog.records if getattr(r, "path", None)]
    assert paths == ["blocking ALTER (empty table)"] * 2, paths
    assert db_revision(pg_url) == "0003"
    with caplog.at_level(logging.INFO, logger="schemagen"):
        migrate.downgrade(MIGRATIONS, u, "0002")
    assert db_revision(pg_url) == "0002"


def _split(ids: list[int], n: int = 2) -> int:
    """The last key of the first of ``n`` slices (online.Run.slices' arithmetic)."""
    low, high = min(ids), max(ids)
    return low - 1 + (high - low + 1) // n


def _slice_rows(text: str) -> list[int]:
    found = re.search(r"backfill of market_data: (slice 1: .*)", text)
    assert found is not None, text
    return [int(n) for n in re.findall(r"slice \d+: finished, (\d+) rows", found.group(1))]


def test_two_slices_fill_every_row_exactly(pg_url: str, caplog: Any) -> None:
    """Two slices, each on its own connection, convert every row, each exactly once (the
    rows they report add up to the table), and leave exactly the rows one loop leaves."""
    from generator import guard

    _seed(pg_url, ticks=3000)
    before = _prices(pg_url)
    u = sa.make_url(pg_url)
    caplog.set_level(logging.INFO, logger="schemagen")
    migrate.upgrade(MIGRATIONS, u, "0003")
    assert f"backfill of market_data in 2 slices, up to keys [{_split(list(before))}, None]" in (
        caplog.text
    )
    first, second = _slice_rows(caplog.text)
    assert first > 0 and second > 0 and first + second == len(before)
    assert db_revision(pg_url) == "0003"
    sliced = dump(pg_url)
    after = _prices(pg_url)
    assert set(after) == set(before)
    assert all(
        abs(after[k] - before[k]) < Decimal("0.0001")  # type: ignore[operator]
        for k in before
        if before[k] is not None
    )
    assert [k for k in before if (before[k] is None) != (after[k] is None)] == []
    # one loop, from the same rows: the same table, row by row
    migrate.downgrade(MIGRATIONS, u, "0002")
    caplog.clear()
    migrate.upgrade(MIGRATIONS, u, "0003", settings=guard.Settings(backfill_workers=1))
    assert "slices" not in caplog.text
    assert dump(pg_url) == sliced


def test_a_drift_in_the_second_slice_names_the_row_and_nothing_is_contracted(
    pg_url: str, caplog: Any
) -> None:
    """A shadow tampered in the second slice: its batch names the row, the first slice
    stops too, the failure is raised once; no table is contracted (the old column and its
    shadow both there, the backfill not recorded finished); the downgrade undoes it all."""
    _seed(pg_url, ticks=3000)
    original = dump(pg_url)
    ids = sorted(_prices(pg_url))
    row = ids[-50]
    assert row > _split(ids)  # in the second slice
    _tamper(pg_url, row)
    caplog.set_level(logging.INFO, logger="schemagen")
    with pytest.raises(CheckFailed) as failure:
        migrate.upgrade(MIGRATIONS, sa.make_url(pg_url), "0003")
    message = str(failure.value)
    assert "market_data.drift" in message
    assert f" {row} " in message or f"| {row}" in message or f"{row} |" in message, message
    assert message.count("market_data.drift") == 1, message
    stopped = [
        r.getMessage()
        for r in caplog.records
        if "backfill of market_data stopped" in r.getMessage()
    ]
    assert len(stopped) == 1 and "slice 2/2 failed (OnlineCheckFailed)" in stopped[0], stopped
    assert db_revision(pg_url) == "0002"
    engine = db.make_engine(sa.make_url(pg_url))
    with engine.connect() as conn:
        columns = {
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'market_data'"
            )
        }
    engine.dispose()
    assert {"price", "sg_up__price"} <= columns  # expanded, not contracted
    *_, finished = _progress(pg_url)[("market_data", "upgrade")]
    assert not finished
    engine = db.make_engine(sa.make_url(pg_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER zz_tamper ON market_data")
        conn.exec_driver_sql("DROP FUNCTION tamper()")
    engine.dispose()
    back = _run(pg_url, "downgrade", "--to", "0002")
    assert back.returncode == 0, back.stderr
    assert dump(pg_url) == original
    assert _progress(pg_url) == {}


@pytest.mark.kill
@pytest.mark.parametrize("method", ["table", "columns"])
def test_lock_waits_name_the_holding_session_then_the_run_continues(
    pg_url: str, caplog: Any, tmp_path: Any, method: str, monkeypatch: Any
) -> None:
    """An application session holds a row of the second slice (FOR UPDATE) past every
    retry: first the expand waits for its table lock, then (the expand done by a run killed
    at its end) the second slice for the row. Each wait is logged naming the phase (the
    slice) and the holding session (its pid: pg_blocking_pids of the waiting backend, the
    slice's own), the run stops saying the same; once the session lets go, the same command
    finishes from where it stopped and every value is converted. By shadow table the expand
    takes SHARE ROW EXCLUSIVE, which a row lock (ROW SHARE) does not block: the slice waits
    at once."""
    from generator import guard

    monkeypatch.setenv("SCHEMAGEN_ONLINE_METHOD", method)
    _seed(pg_url, ticks=3000)
    before = _prices(pg_url)
    ids = sorted(before)
    row = ids[-100]
    assert row > _split(ids)  # in the second slice
    settings = guard.Settings(
        lock_timeout_ms=200, lock_retries=2, backoff_ms=20, online_method=method
    )
    caplog.set_level(logging.INFO, logger="schemagen")

    def held(what: str) -> tuple[str, list[str]]:
        caplog.clear()
        with psycopg.connect(_plain(pg_url)) as holder:
            pid = holder.execute("SELECT pg_backend_pid()").fetchone()
            assert pid is not None
            holder.execute("SELECT * FROM market_data WHERE id = %s FOR UPDATE", (row,)).fetchall()
            with pytest.raises(guard.LockTimeout) as stopped:
                migrate.upgrade(MIGRATIONS, sa.make_url(pg_url), "0003", settings=settings)
            holder.rollback()
        message = str(stopped.value)
        assert f"{what} in 3 attempt(s)" in message and f"blocked by pid {pid[0]}, " in message
        waits = [r.getMessage() for r in caplog.records if "lock wait (attempt" in r.getMessage()]
        assert len(waits) == 2, waits
        assert all(f"blocked by pid {pid[0]}, " in w for w in waits), waits
        assert db_revision(pg_url) == "0002"
        return message, waits

    if method == "columns":
        _, waits = held("expand of market_data could not get its lock")
        assert all("expand of market_data: lock wait" in w for w in waits), waits
        code, output = _forked(
            pg_url, tmp_path / "expand.log", "upgrade", step="expand market_data", nth=10**6
        )
        assert code == -9, output
    _, waits = held("backfill of market_data slice 2/2: a batch could not get its row locks")
    assert all("backfill of market_data slice 2/2: lock wait" in w for w in waits), waits
    migrate.upgrade(MIGRATIONS, sa.make_url(pg_url), "0003", settings=settings)
    assert db_revision(pg_url) == "0003"
    after = _prices(pg_url)
    assert set(after) == set(before)
    assert [k for k in ids if (before[k] is None) != (after[k] is None)] == []
    assert all(
        abs(after[k] - before[k]) < Decimal("0.0001")  # type: ignore[operator]
        for k in ids
        if before[k] is not None
    )


@pytest.mark.kill
def test_killed_mid_backfill_resumes_each_slice_and_redoes_no_finished_one(pg_url: str) -> None:
    """SIGKILL once the first slice has finished and the second has committed a batch (the
    second slowed by a trigger of the test's): the next run continues the second slice
    from its last key and redoes nothing of the first (the rows it converts are exactly
    the rows not recorded done); every row ends converted."""
    import signal
    import subprocess
    import sys

    _seed(pg_url, ticks=3000)
    before = _prices(pg_url)
    split = _split(list(before))
    first = sum(1 for k in before if k <= split)
    engine = db.make_engine(sa.make_url(pg_url))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM pg_sleep(0.003); RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER zz_slow BEFORE UPDATE ON market_data FOR EACH ROW "
            f"WHEN (NEW.id > {split}) EXECUTE FUNCTION slow()"
        )
    engine.dispose()
    command = [sys.executable, "-m", "generator", "--root", str(ROOT)]
    run = subprocess.Popen(
        [*command, "upgrade", "--to", "0003", "--url", pg_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and run.poll() is None:
            rows = _slice_progress(pg_url)
            one, two = rows.get("online_market_data#1"), rows.get("online_market_data#2")
            if one and two and one[2] and two[0] >= 1 and not two[2]:
                seen = rows
                break
            time.sleep(0.02)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert seen, "the first slice never finished while the second ran"
    assert db_revision(pg_url) == "0002"
    done = _slice_progress(pg_url)
    assert done["online_market_data#1"] == seen["online_market_data#1"]
    assert done["online_market_data#1"][1] == first  # the whole first slice, once
    assert 0 < done["online_market_data#2"][1] < len(before) - first
    from support import cli

    status = cli("status", "--url", pg_url, root=ROOT)
    line = next(ln for ln in status.stdout.splitlines() if "market_data by " in ln)
    # the test's own trigger on market_data keeps the shadow columns (online_table.blockers)
    assert "market_data by shadow columns: backfill" in line, line
    assert "backfill running" in line and "1/2 slices finished" in line, line
    rows_done = first + done["online_market_data#2"][1]
    assert f" {rows_done} rows" in line, line
    engine = db.make_engine(sa.make_url(pg_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER zz_slow ON market_data")
    engine.dispose()
    again = _run(pg_url, "upgrade", "--to", "0003")
    assert again.returncode == 0, again.stderr
    logs = again.stdout + again.stderr
    ran = re.search(r"backfill market_data ok \(.*?rows: (\d+)", logs)
    assert ran is not None, logs
    # only the rest of the second slice: nothing of the finished first one
    assert int(ran.group(1)) == len(before) - first - done["online_market_data#2"][1], logs
    assert db_revision(pg_url) == "0003"
    after = _prices(pg_url)
    assert set(after) == set(before)
    assert all(
        abs(after[k] - before[k]) < Decimal("0.0001")  # type: ignore[operator]
        for k in before
        if before[k] is not None
    )


def _slice_progress(url: str) -> dict[str, tuple[int, int, bool]]:
    """market_data's upgrade progress rows: step -> (batches, rows, done)."""
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            if not conn.exec_driver_sql(
                "SELECT to_regclass('schemagen.backfill_progress')"
            ).scalar():
                return {}
            rows = conn.exec_driver_sql(
                "SELECT step, batches, rows_done, done FROM schemagen.backfill_progress "
                "WHERE step LIKE 'online_market_data%%' AND direction = 'upgrade'"
            ).all()
    finally:
        engine.dispose()
    return {r[0]: (int(r[1]), int(r[2]), bool(r[3])) for r in rows}
