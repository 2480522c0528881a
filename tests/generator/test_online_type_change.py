"""Change 0003 online on PostgreSQL (generator/online.py): concurrent writers during every
phase lose no row and no value drifts; killed at points across the phases, a re-run
continues and a downgrade works from each; a tampered shadow is a drift naming its row."""

from __future__ import annotations

import logging
import random
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
        fresh = 10_000_000 * (n + 1) + int(time.time()) % 1000 * 10_000
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


def test_concurrent_writers_lose_no_row_and_no_value_drifts(pg_url: str) -> None:
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


@pytest.mark.kill
def test_killed_in_every_phase_continues_or_downgrades(pg_url: str) -> None:
    _seed(pg_url, ticks=1500)  # two batches: the first of 1000 rows, then the rest
    original = dump(pg_url)
    rng = random.Random(14)
    started = time.monotonic()
    for i, (marker, nth) in enumerate(KILL_POINTS):
        killed = _run_killed(pg_url, marker, nth, "upgrade", "--to", "0003")
        assert killed.returncode == -9, (marker, killed.stdout, killed.stderr)
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


def test_a_drifting_shadow_fails_its_batch_naming_the_row(pg_url: str) -> None:
    """A trigger of the application's that changes the shadow after the conversion (the
    conversion would then not be what was written): the batch names the row and the run
    stops before the contract; the downgrade undoes the expand."""
    _seed(pg_url, ticks=300)
    original = dump(pg_url)
    engine = db.make_engine(sa.make_url(pg_url))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = 42 AND to_jsonb(NEW) ? 'sg_up__price' THEN "
            "NEW := jsonb_populate_record(NEW, jsonb_build_object('sg_up__price', "
            "(to_jsonb(NEW)->>'sg_up__price')::float8 + 0.001)); END IF; RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER zz_tamper BEFORE UPDATE ON market_data "
            "FOR EACH ROW EXECUTE FUNCTION tamper()"
        )
    engine.dispose()
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
def test_status_shows_the_backfill_and_a_rerun_redoes_no_finished_batch(pg_url: str) -> None:
    import re

    from support import cli

    _seed(pg_url, ticks=2500)
    # killed after the second batch's progress row is written: the first batch committed
    killed = _run_killed(pg_url, "UPDATE schemagen.backfill_progress SET last_key", 2, "upgrade")
    assert killed.returncode == -9, killed.stderr
    status = cli("status", "--url", pg_url, root=ROOT)
    assert "online type change of market_data:" in status.stdout
    assert "            contract: ACCESS EXCLUSIVE" in status.stdout
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("online:"))
    assert (
        "0003_convert_decimal_to_float (upgrade) market_data: backfill running, 1 batches" in line
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
def test_killed_at_random_moments_then_finished_loses_nothing(pg_url: str) -> None:
    """Twelve SIGKILLs at random statements, each run taking up where the last one died
    (whatever phase that was); then the upgrade finishes, every value is within 0.0001 of
    its original, and the downgrade gives back exactly the original rows."""
    from support import assert_prices_within

    _seed(pg_url, ticks=1500)
    original = dump(pg_url)
    rng = random.Random(1414)
    started = time.monotonic()
    kills = 0
    for _ in range(12):
        run = _run_killed(pg_url, "", rng.randint(5, 220), "upgrade", "--to", "0003")
        if run.returncode == 0:  # finished before the chosen statement: start over
            assert db_revision(pg_url) == "0003"
            down = _run(pg_url, "downgrade", "--to", "0002")
            assert down.returncode == 0, down.stderr
            continue
        assert run.returncode == -9, (run.stdout, run.stderr)
        kills += 1
    assert kills >= 8
    final = _run(pg_url, "upgrade", "--to", "0003")
    assert final.returncode == 0, final.stderr
    assert db_revision(pg_url) == "0003"
    assert_prices_within(original, dump(pg_url), pg_url)
    down = _run(pg_url, "downgrade", "--to", "0002")
    assert down.returncode == 0, down.stderr
    assert dump(pg_url) == original
    assert time.monotonic() - started < 60


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
