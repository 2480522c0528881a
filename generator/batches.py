"""Keyset batches outside the change's transaction, resumable after a kill (``backfill``).

A rendered migration calls :func:`run` (through ``runtime.backfill``) inside an autocommit
block: the change's transaction so far is committed, then each batch is one short
transaction of its own that

1. picks the next ``batch_size`` primary keys after the last one done (keyset, composite keys
   compared as row values, so a batch never rescans what is done),
2. keeps aside the old values of the rows it changes (an archive named from the change, keyed
   by the primary key) - upgrade only, and only for columns that existed before the change,
3. updates those rows (upgrade: the expressions; downgrade: the archived values),
4. records the last key done in the progress table,

and commits. The progress row and the rows' new values commit together, so a run killed at
any point leaves every batch either done and recorded or not done at all; the next run starts
after the last recorded key and never redoes a finished batch. Each batch waits for row locks
at most the runner's ``lock_timeout`` (generator.guard); a batch that times out is rolled back
and retried after a pause, and the batches after it are paced.

The progress and archive tables live outside the application's schema, so that no table check
of a change sees them: in the schema ``schemagen`` on PostgreSQL, in a database file attached
as ``schemagen`` on SQLite (``<database file>-schemagen``, beside it; SQLite commits the two
files atomically in its default rollback-journal mode, so WAL mode is refused).

This module is reusable for any operation that rewrites values in batches (issue 14's shadow
columns): :class:`Batches` is the loop, :func:`run` the backfill and its restore.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from generator import dialects, guard, runtime

log = logging.getLogger("schemagen")

SCHEMA = "schemagen"
# A question mark of the SQL itself (the jsonb ? operator), not a placeholder: see literal()
LITERAL_QM = "\x00qm\x00"


def literal(sql: str) -> str:
    """Generated SQL put into a batch statement: its question marks stay question marks."""
    return sql.replace("?", LITERAL_QM)


PROGRESS = "backfill_progress"
MAX_SHOWN = 20


class BackfillFailed(runtime.CheckFailed):
    """A backfill's check after its batches found rows that are not what it wrote (a check
    failure like any other: the same report and exit code)."""


class ArchiveMissing(RuntimeError):
    """The archive a downgrade restores from is gone."""


def _qi(name: str) -> str:
    return dialects.quote_ident(name)


def archive_name(change: str, step: str) -> str:
    """The archive of a backfill step: named from the change's number and the step's key."""
    return f"archive_{change.split('_', 1)[0]}_{step}"


@dataclass(frozen=True)
class Spec:
    """One backfill step as the migration states it (see generator/ops/backfill.py)."""

    change: str
    step: str  # the step's key (stable: derived from table, set and where)
    direction: str  # "upgrade" (run the expressions) or "downgrade" (restore the archive)
    table: str
    key: tuple[str, ...]
    values: dict[str, str]  # column -> SQL of its expression (upgrade)
    where: str | None  # SQL of the condition (upgrade)
    kept: tuple[str, ...]  # columns whose old values are archived and restored
    checked: tuple[str, ...]  # columns the check after the batches compares with the expression
    batch_size: int

    @property
    def archive(self) -> str:
        return f"{SCHEMA}.{_qi(archive_name(self.change, self.step))}"


def _attach(connection: Connection) -> None:
    """SQLite: attach the side database that holds progress and archives (once)."""
    attached = {row[1] for row in connection.exec_driver_sql("PRAGMA database_list")}
    if SCHEMA in attached:
        return
    main = next(r[2] for r in connection.exec_driver_sql("PRAGMA database_list") if r[1] == "main")
    mode = str(connection.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()
    if mode == "wal":
        raise RuntimeError(
            "backfill on SQLite needs the rollback journal: in WAL mode a batch and its "
            "progress, kept in an attached file, would not commit atomically"
        )
    side = f"{main}-{SCHEMA}" if main else ":memory:"
    connection.exec_driver_sql(
        f"ATTACH DATABASE '{side.replace(chr(39), chr(39) * 2)}' AS {SCHEMA}"
    )


def slice_family(step: str) -> tuple[str, list[Any]]:
    """SQL (and its parameters) matching the progress rows of a step's slices
    (``<step>#<k>``, generator.online)."""
    return "substr(step, 1, ?) = ?", [len(step) + 1, f"{step}#"]


def step_family(step: str) -> tuple[str, list[Any]]:
    """SQL (and its parameters) matching a step's progress row and its slices' rows."""
    cond, params = slice_family(step)
    return f"(step = ? OR {cond})", [step, *params]


class Replicas:
    """Pacing on the replicas (PostgreSQL), between batches, looked at most once every
    ``EVERY_S``: when a replica is more than the runner's ``max_replica_lag`` behind, the
    batches pause until it has replayed the WAL written so far (its ``replay_lsn`` past the
    ``pg_current_wal_lsn()`` of the moment), for at most ``replica_wait``; then the run stops,
    the batches done kept and recorded. How far behind: the longer of the server's
    ``replay_lag`` (the lag of the last WAL the replica replayed: it shows only once replay
    moves, and a caught-up replica's goes NULL) and the time since the oldest WAL position
    this loop saw (one per look) that the replica has not replayed yet, which grows from the
    first batches of a burst on, while replay stands still."""

    EVERY_S = 1.0
    POLL_S = 0.1
    SQL = (
        "SELECT pid, coalesce(application_name, '') || coalesce(' at ' || "
        "host(client_addr), ''), extract(epoch FROM replay_lag) * 1000, "
        "pg_wal_lsn_diff(replay_lsn, '0/0') FROM pg_stat_replication"
    )
    NOW = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"

    def __init__(self, loop: Batches):
        self.loop = loop
        self.max_ms = loop.settings.max_replica_lag_ms
        self.looked = -self.EVERY_S
        self.seen: list[tuple[float, int]] = []  # (when, WAL position then), oldest first
        self.hidden_said = False

    def _replicas(self) -> list[tuple[int, str, float | None, int | None]]:
        return [
            (
                int(r[0]),
                str(r[1]),
                None if r[2] is None else float(r[2]),
                None if r[3] is None else int(r[3]),
            )
            for r in self.loop.sql(self.SQL).fetchall()
        ]

    def _behind_ms(self, now: float, lag_ms: float | None, replayed: int) -> float:
        waiting = next((t for t, lsn in self.seen if lsn > replayed), now)
        return max(lag_ms or 0.0, (now - waiting) * 1000)

    def pace(self) -> None:
        loop = self.loop
        if not self.max_ms or loop.dialect != "postgresql":
            return
        now = time.perf_counter()
        if now - self.looked < self.EVERY_S:
            return
        self.looked = now
        replicas = self._replicas()
        if not replicas:  # no replica: one query a second, nothing kept
            self.seen = []
            return
        position = int(loop.sql(self.NOW).scalar() or 0)
        self.seen.append((now, position))
        visible = [
            (pid, name, lag, replayed)
            for pid, name, lag, replayed in replicas
            if replayed is not None
        ]
        if not visible:
            if not self.hidden_said:
                self.hidden_said = True
                log.warning(
                    "%s: %d replica(s) connected, but how far behind is not visible to this "
                    "role (it needs pg_read_all_stats): the batches are not paced on them",
                    loop.title,
                    len(replicas),
                )
            return
        oldest = min(replayed for _, _, _, replayed in visible)
        self.seen = [s for s in self.seen if s[1] > oldest] or [(now, position)]
        behind = {
            pid: (name, ms)
            for pid, name, lag, replayed in visible
            if (ms := self._behind_ms(now, lag, replayed)) > self.max_ms
        }
        if not behind:
            return
        names = ", ".join(f"{name} ({ms / 1000:.1f} s)" for name, ms in behind.values())
        log.warning(
            "%s: replica %s replaying more than %.1f s behind: the batches pause until it has "
            "replayed what they wrote (at most %.0f s)",
            loop.title,
            names,
            self.max_ms / 1000,
            loop.settings.replica_wait_ms / 1000,
        )
        while True:
            waiting = [r for r in self._replicas() if r[0] in behind and (r[3] or 0) < position]
            waited = time.perf_counter() - now
            if not waiting:
                log.info(
                    "%s: replica caught up after %.1f s, the batches go on", loop.title, waited
                )
                self.looked = time.perf_counter()
                return
            if waited * 1000 >= loop.settings.replica_wait_ms:
                raise guard.ReplicaLagging(
                    f"{loop.title}: replica {', '.join(behind[r[0]][0] for r in waiting)} has "
                    f"not replayed the batches' WAL in {waited:.1f} s (--replica-wait); the "
                    "batches before are done and recorded: run the same command again to "
                    "continue"
                )
            if loop.stop is not None and loop.stop.is_set():
                return
            loop._sleep(self.POLL_S)


class Batches:
    """The batch loop: each batch is ``BEGIN``, the caller's statements, progress, ``COMMIT``."""

    def __init__(self, connection: Connection, spec: Spec):
        self.connection = connection
        self.spec = spec
        self.dialect = connection.dialect.name
        self.settings = guard.settings_of(connection)
        self.pause_s = 0.0  # pacing after lock waits
        self.size = spec.batch_size  # rows per batch; adapted when target_s is set
        self.target_s: float | None = None  # a batch's target time (online type changes)
        self.max_size = 50_000
        # PostgreSQL: add each batch's deletes to the change's count (runtime.XACT_DELETED)
        # before it commits, as the change's own transactions do
        self.carry = False
        # PostgreSQL: settings of each batch's transaction (online type changes: its commit
        # not waiting for the WAL flush, its evicted pages written back as it goes;
        # docs/online.md "Backfill speed" says why)
        self.local: dict[str, str] = {}
        # A slice of the keys (online type changes, generator.online): the last key it covers
        # (None: every key after its start); ``stop`` set by another slice's failure ends the
        # loop before its next batch (what is done stays recorded)
        self.upper: list[Any] | None = None
        self.stop: threading.Event | None = None
        self.last: list[Any] | None = None  # the last key done, as recorded
        self.label = ""  # in the messages after the table: " slice k/n" of a slice

    @property
    def title(self) -> str:
        """``<change>: backfill of <table>[ slice k/n]``: how its messages begin."""
        return f"{self.spec.change}: backfill of {self.spec.table}{self.label}"

    def sql(self, text: str, params: Sequence[Any] = ()) -> Any:
        connection = self.connection
        style = connection.dialect.paramstyle
        if style in ("format", "pyformat"):  # psycopg
            text = text.replace("%", "%%").replace("?", "%s")
        elif style == "numeric_dollar":  # asyncpg: $1, $2, ...
            parts = text.split("?")
            text = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))
        return connection.exec_driver_sql(text.replace(LITERAL_QM, "?"), tuple(params))

    def begin(self) -> None:
        if self.dialect == "postgresql":
            self.sql("BEGIN")
            # Row locks wait the runner's short lock_timeout, never the change's own.
            local = {"lock_timeout": f"{self.settings.lock_timeout_ms}ms", **self.local}
            sets = ", ".join("set_config(?, ?, true)" for _ in local)
            self.sql(f"SELECT {sets}", [v for pair in local.items() for v in pair])
        else:
            self.sql("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self.carry and self.dialect == "postgresql":
            self.sql(runtime._CARRY_SQL)
        self.sql("COMMIT")

    def rollback(self) -> None:
        try:
            self.sql("ROLLBACK")
        except Exception:
            log.debug("no transaction to roll back")

    def setup(self, archive_of: str | None) -> None:
        """Progress table, the step's progress row, the archive (empty, keyed)."""
        s = self.spec
        self.begin()
        self.ensure()
        fresh = self.sql(
            f"INSERT INTO {SCHEMA}.{PROGRESS} VALUES (?, ?, ?, NULL, 0, 0, 0) "
            "ON CONFLICT (change_name, step, direction) DO NOTHING",
            (s.change, s.step, s.direction),
        ).rowcount
        if fresh and archive_of is not None:
            # No batch of this run of the step is recorded: an archive of the same name is
            # left from another database under the same file or schema (never this run's).
            self.sql(f"DROP TABLE IF EXISTS {s.archive}")
        if archive_of is not None and not self.archive_exists():
            cols = ", ".join(_qi(c) for c in (*s.key, *s.kept))
            self.sql(f"CREATE TABLE {s.archive} AS SELECT {cols} FROM {archive_of} WHERE 1 = 0")
            name = _qi(f"{archive_name(s.change, s.step)}_key")
            keys = ", ".join(_qi(c) for c in s.key)
            if self.dialect == "postgresql":
                self.sql(f"CREATE UNIQUE INDEX {name} ON {s.archive} ({keys})")
            else:
                bare = _qi(archive_name(s.change, s.step))
                self.sql(f"CREATE UNIQUE INDEX {SCHEMA}.{name} ON {bare} ({keys})")
        self.sql("COMMIT")

    def ensure(self) -> None:
        """The progress table (and PostgreSQL's schema), in the open transaction."""
        if self.dialect == "postgresql":
            self.sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        self.sql(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{PROGRESS} (change_name TEXT NOT NULL, "
            "step TEXT NOT NULL, direction TEXT NOT NULL, last_key TEXT, batches INTEGER NOT "
            "NULL, rows_done INTEGER NOT NULL, done INTEGER NOT NULL, "
            "PRIMARY KEY (change_name, step, direction))"
        )

    def archive_exists(self) -> bool:
        name = archive_name(self.spec.change, self.spec.step)
        if self.dialect == "postgresql":
            found = self.sql(
                "SELECT 1 FROM pg_tables WHERE schemaname = ? AND tablename = ?", (SCHEMA, name)
            ).first()
        else:
            found = self.sql(
                f"SELECT 1 FROM {SCHEMA}.sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).first()
        return found is not None

    def record(self) -> tuple[Any, int, bool] | None:
        """This step's progress row: (last_key as recorded, batches, done); None: none yet."""
        s = self.spec
        row = self.sql(
            f"SELECT last_key, batches, done FROM {SCHEMA}.{PROGRESS} "
            "WHERE change_name = ? AND step = ? AND direction = ?",
            (s.change, s.step, s.direction),
        ).first()
        if row is None:
            return None
        return (json.loads(row[0]) if row[0] is not None else None), int(row[1]), bool(row[2])

    def progress(self) -> tuple[list[Any] | None, bool]:
        found = self.record()
        return (None, False) if found is None else (found[0], found[2])

    def range_sql(self, last: list[Any] | None, end: list[Any]) -> tuple[str, list[Any]]:
        """The batch's keys, after ``last`` up to ``end`` (unqualified: the updated table's)."""
        keys = ", ".join(_qi(c) for c in self.spec.key)
        marks = ", ".join("?" for _ in self.spec.key)
        cond, params = f"({keys}) <= ({marks})", list(end)
        if last is not None:
            cond = f"({keys}) > ({marks}) AND {cond}"
            params = [*last, *end]
        return cond, params

    def run(self, source: str, batch: Any) -> tuple[int, int]:
        """Batches over the keys of ``source`` until none is left; ``batch(cond, params)``
        runs one batch's statements and returns the rows it changed. Returns (batches, rows)
        of this run."""
        s = self.spec
        keys = ", ".join(_qi(c) for c in s.key)
        marks = ", ".join("?" for _ in s.key)
        batches = rows = 0
        last, done = self.progress()
        self.last = last
        if done:
            return 0, 0
        below = ""
        if self.upper is not None:
            below = f"({keys}) <= ({marks}) "
        # PostgreSQL: who holds the rows a batch waits for, asked while it waits (the run's
        # probe; a slice asks for its own session)
        blockers = guard.Blockers(self.connection) if self.dialect == "postgresql" else None
        replicas = Replicas(self)
        with blockers or contextlib.nullcontext():
            while True:
                if self.stop is not None and self.stop.is_set():
                    return batches, rows
                replicas.pace()
                for attempt in range(1, self.settings.lock_retries + 2):
                    started = time.perf_counter()
                    self.begin()
                    try:
                        bounds = [f"({keys}) > ({marks}) "] if last is not None else []
                        bounds += [below] if below else []
                        where = f"WHERE {'AND '.join(bounds)}" if bounds else ""
                        found = self.sql(
                            f"SELECT {keys} FROM {source} {where}ORDER BY {keys} LIMIT {self.size}",
                            [*(last or ()), *(self.upper or ())],
                        ).fetchall()
                        if not found:
                            self.sql(
                                f"UPDATE {SCHEMA}.{PROGRESS} SET done = 1 "
                                "WHERE change_name = ? AND step = ? AND direction = ?",
                                (s.change, s.step, s.direction),
                            )
                            self.commit()
                            return batches, rows
                        end = [_plain(v) for v in found[-1]]
                        cond, params = self.range_sql(last, end)
                        changed = batch(cond, params)
                        self.sql(
                            f"UPDATE {SCHEMA}.{PROGRESS} SET last_key = ?, batches = batches + 1, "
                            "rows_done = rows_done + ? "
                            "WHERE change_name = ? AND step = ? AND direction = ?",
                            (json.dumps(end), changed, s.change, s.step, s.direction),
                        )
                        self.commit()
                        last, batches, rows = end, batches + 1, rows + changed
                        self.last = last
                        self.adapt(time.perf_counter() - started, len(found))
                        break
                    except Exception as exc:
                        self.rollback()
                        who, backoff = guard.lock_wait(
                            exc,
                            attempt,
                            self.settings,
                            blockers,
                            lambda n, who: (
                                f"{self.title}: a batch could not get its row locks in {n} "
                                f"attempt(s), blocked by {who}; the batches before it are done "
                                "and recorded: run the same command again to continue"
                            ),
                        )
                        self.pause_s = max(self.pause_s * 2, backoff)
                        log.warning(
                            "%s: lock wait (attempt %d, blocked by %s), pausing %.0f ms",
                            self.title,
                            attempt,
                            who,
                            self.pause_s * 1000,
                        )
                        self._sleep(self.pause_s)
                if self.pause_s:  # paced after a lock wait, easing off batch by batch
                    self._sleep(self.pause_s)
                    self.pause_s = self.pause_s / 2 if self.pause_s > 0.001 else 0.0

    def _sleep(self, seconds: float) -> None:
        """A pause, cut short when another slice stops the run."""
        if self.stop is not None:
            self.stop.wait(seconds)
        else:
            time.sleep(seconds)

    def adapt(self, elapsed_s: float, found: int) -> None:
        """Batch size toward the target batch time: at most doubled, at least halved, per
        batch; smaller after a lock wait (pacing)."""
        if self.target_s is None or found < self.size:
            return
        ratio = self.target_s / max(elapsed_s, 1e-4)
        ratio = min(2.0, max(0.5, ratio))
        if self.pause_s:
            ratio = min(ratio, 1.0)
        self.size = int(min(self.max_size, max(self.spec.batch_size // 10 or 1, self.size * ratio)))


def _plain(value: Any) -> Any:
    """A key value as JSON keeps it (and binds it back): numbers as they are, others as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _distinct(dialect: str, a: str, b: str) -> str:
    return f"{a} IS DISTINCT FROM {b}" if dialect == "postgresql" else f"{a} IS NOT {b}"


def run(connection: Connection, spec: Spec) -> tuple[int, int]:
    """One backfill step in one direction, resumed from its progress; then its check.
    Returns the (batches, rows) this run did."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        _attach(connection)
    table = _qi(spec.table)
    loop = Batches(connection, spec)
    if spec.direction == "upgrade":
        loop.setup(table if spec.kept else None)
        result = loop.run(table, lambda cond, params: _upgrade_batch(loop, cond, params))
        _check_upgrade(loop)
        return result
    if not spec.kept:
        return 0, 0
    loop.setup(None)
    if not loop.archive_exists():
        raise ArchiveMissing(
            f"{spec.change}: the archive {spec.archive} that holds the values {spec.table} had "
            "before the backfill is missing: they cannot be restored"
        )
    result = loop.run(spec.archive, lambda cond, params: _restore_batch(loop, cond, params))
    _check_restore(loop)
    return result


def _upgrade_batch(loop: Batches, cond: str, params: list[Any]) -> int:
    s = loop.spec
    table = _qi(s.table)
    where = f"{cond} AND ({s.where})" if s.where else cond
    if s.kept:
        cols = ", ".join(_qi(c) for c in (*s.key, *s.kept))
        loop.sql(
            f"INSERT INTO {s.archive} ({cols}) SELECT {cols} FROM {table} WHERE {where}", params
        )
    sets = ", ".join(f"{_qi(c)} = {sql}" for c, sql in s.values.items())
    result = loop.sql(f"UPDATE {table} SET {sets} WHERE {where}", params)
    return int(result.rowcount)


def _restore_batch(loop: Batches, cond: str, params: list[Any]) -> int:
    s = loop.spec
    table = _qi(s.table)
    match = " AND ".join(f"a.{_qi(k)} = {table}.{_qi(k)}" for k in s.key)
    sets = ", ".join(
        f"{_qi(c)} = (SELECT a.{_qi(c)} FROM {s.archive} AS a WHERE {match})" for c in s.kept
    )
    result = loop.sql(
        f"UPDATE {table} SET {sets} WHERE {cond} "
        f"AND EXISTS (SELECT 1 FROM {s.archive} AS a WHERE {match})",
        params,
    )
    return int(result.rowcount)


def _failing(loop: Batches, sql: str, what: str) -> None:
    loop.begin()
    result = loop.sql(sql)
    columns, rows = list(result.keys()), result.fetchmany(MAX_SHOWN + 1)
    loop.sql("COMMIT")
    if rows:
        s = loop.spec
        phase = "post" if s.direction == "upgrade" else "pre"
        check = runtime.Check(what, sql)
        result = runtime.CheckResult(check, columns, [tuple(r) for r in rows])
        raise BackfillFailed(s.change, phase, loop.dialect, [result])


def _check_upgrade(loop: Batches) -> None:
    """No row matching ``where`` still differs from its expression (for the columns whose
    expression reads no column the backfill sets and does not read the clock)."""
    s = loop.spec
    if not s.checked:
        return
    differs = " OR ".join(_distinct(loop.dialect, _qi(c), f"({s.values[c]})") for c in s.checked)
    where = f"({s.where}) AND ({differs})" if s.where else differs
    keys = ", ".join(_qi(c) for c in s.key)
    cols = ", ".join(_qi(c) for c in s.checked)
    _failing(
        loop,
        f"SELECT {keys}, {cols} FROM {_qi(s.table)} WHERE {where} ORDER BY {keys} "
        f"LIMIT {MAX_SHOWN + 1}",
        f"{s.table}.backfill: rows still differing from the expression",
    )


def _check_restore(loop: Batches) -> None:
    """Every archived row has its old values back."""
    s = loop.spec
    table = _qi(s.table)
    match = " AND ".join(f"a.{_qi(k)} = t.{_qi(k)}" for k in s.key)
    differs = " OR ".join(_distinct(loop.dialect, f"t.{_qi(c)}", f"a.{_qi(c)}") for c in s.kept)
    keys = ", ".join(f"a.{_qi(c)}" for c in s.key)
    _failing(
        loop,
        f"SELECT {keys} FROM {s.archive} AS a LEFT JOIN {table} AS t ON {match} "
        f"WHERE t.{_qi(s.key[0])} IS NULL OR {differs} ORDER BY {keys} LIMIT {MAX_SHOWN + 1}",
        f"{s.table}.restore: rows whose values differ from the archive (or are gone)",
    )


def finish(connection: Connection, specs: Sequence[Spec]) -> None:
    """In the change's last transaction, which commits with its revision stamp (runtime
    calls it after the change's steps): an upgrade's progress rows go (a re-run of a stamped
    change never happens, and a later one starts clean); a downgrade's archive and progress
    rows go. Until then a killed run resumes from them, never redoing a batch."""
    for spec in specs:
        loop = Batches(connection, spec)
        loop.ensure()
        family, params = step_family(spec.step)  # the step's row and its slices' (online)
        params = [spec.change, *params]
        if spec.direction == "upgrade":
            loop.sql(
                f"DELETE FROM {SCHEMA}.{PROGRESS} WHERE change_name = ? AND {family} "
                "AND direction = 'upgrade'",
                params,
            )
        else:
            loop.sql(f"DROP TABLE IF EXISTS {spec.archive}")
            loop.sql(f"DELETE FROM {SCHEMA}.{PROGRESS} WHERE change_name = ? AND {family}", params)


def backfill(
    op: Any,
    script_file: str,
    direction: str,
    *,
    step: str,
    table: str,
    key: list[str],
    values: dict[str, str] | None = None,
    where: str | None = None,
    kept: list[str] | None = None,
    checked: list[str] | None = None,
    batch_size: int = 1000,
) -> None:
    """What a rendered backfill unit calls, inside its autocommit block."""
    change = Path(script_file).stem
    spec = Spec(
        change,
        step,
        direction,
        table,
        tuple(key),
        dict(values or {}),
        where,
        tuple(kept or ()),
        tuple(checked or ()),
        batch_size,
    )
    name = f"backfill {table}" if direction == "upgrade" else f"restore {table}"
    if runtime._offline(op):
        runtime._note(
            op,
            f"{name}: keyset batches of {batch_size} rows on ({', '.join(key)}), each its own "
            f"transaction; progress in {SCHEMA}.{PROGRESS} ({change}, {step})"
            + (
                f"; old values of {', '.join(spec.kept)} kept in {spec.archive}"
                if spec.kept
                else ""
            ),
        )
        keys = ", ".join(_qi(c) for c in key)
        batch = f"({keys}) > (<last key done>) AND ({keys}) <= (<batch end>)"
        if direction == "upgrade" and spec.values:
            sets = ", ".join(f"{_qi(c)} = {sql}" for c, sql in spec.values.items())
            cond = f" AND ({where})" if where else ""
            runtime._note(op, f"per batch: UPDATE {_qi(table)} SET {sets} WHERE {batch}{cond}")
        elif spec.kept:
            runtime._note(op, f"per batch: the kept values back from {spec.archive} WHERE {batch}")
        return
    connection: Connection = op.get_bind()
    with committed_phase(connection, name, "batches, each committed on its own", spec) as record:
        batches, rows = run(connection, spec)
        record.extra.update(batches=batches, rows=rows)


@contextmanager
def committed_phase(
    connection: Connection, name: str, commits: str, progress: Spec
) -> Iterator[runtime.StepRecord]:
    """A step of a change that commits on its own, in its autocommit block (a backfill's
    batches, an online type change's phases), its progress in the progress table under
    ``progress``'s (change, step, direction): logged as ``runtime.step`` ``name``. While it
    runs, ``connection.info["schemagen.batches"]`` says so (read by runtime: the half-applied
    report's one line for all of it, and its own transactions let through the refusal of row
    changes outside a transaction); once it is done, its progress is recorded for
    ``runtime.finish_backfills`` to clear in the transaction of the revision stamp."""
    connection.info["schemagen.batches"] = (
        f"{name}: {commits} (progress in {SCHEMA}.{PROGRESS}, "
        f"{progress.change} {progress.step} {progress.direction})"
    )
    try:
        with runtime.step(progress.change, name, connection.dialect.name) as record:
            yield record
        key = (progress.change, progress.step, progress.direction)
        connection.info.setdefault("schemagen.backfills", {})[key] = progress
    finally:
        connection.info.pop("schemagen.batches", None)
