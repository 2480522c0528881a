"""Online column type changes on PostgreSQL: expand, backfill, prepare, contract.

A rendered migration calls :func:`online_type_change` (through ``runtime``) inside an
autocommit block, once per table, for the columns of that table a change converts. The
change's transaction so far is committed first (after the runner's data checks of what it
did, which refuse that commit on a deleted or truncated row: runtime._Attempt.check_so_far);
then each phase commits on its own:

1. **expand** (one short transaction under the runner's ``lock_timeout``, retried with
   backoff): a shadow column of the new type per converted column (all in one ALTER TABLE), the
   new checks on the shadows ``NOT VALID`` (and ``CHECK (shadow IS NOT NULL) NOT VALID`` for a
   NOT NULL column), and a trigger keeping every shadow equal to the conversion of its old
   column on INSERT and UPDATE. Catalogue changes only: no row is read under the lock. A
   range check is the shadow's type, a domain (state.Domain): it loses its CHECK for the ADD
   COLUMN (PostgreSQL 15 rewrites the table to add a column of a domain with a CHECK) and
   gets it back NOT VALID in the same transaction; it is never VALIDATEd (SHARE on every
   table using it, for a scan): the backfill's checks prove the rows.
2. **backfill**: keyset batches on the primary key (generator.batches.Batches, its progress in
   ``schemagen.backfill_progress``: a killed run resumes after the last finished batch), each
   one short transaction that lists the rows that would not fit the new type (refusing with
   their keys), sets the shadows and compares, row by row, each old value with its shadow
   (drift below the conversion's tolerance). The rows of a batch are locked by its UPDATE
   until it commits, so the comparison sees the old and the shadow value of the same row at
   the same moment: a row the application updates or deletes is never a false failure. The
   batch size follows a target batch time; lock waits pace the batches. A table keyed by one
   integer column is backfilled in slices of its key range at once (the runner's
   ``backfill_workers``, default 2), each such a loop on a connection of its own, each with
   its own progress row (:meth:`_Run.slices`, docs/online.md "Parallel slices").
3. **prepare**: the indexes naming a converted column are built again on the shadows
   ``CONCURRENTLY``; the NOT VALID checks are validated (SHARE UPDATE EXCLUSIVE).
4. **contract**: one short transaction under ``lock_timeout``, retried with backoff: the
   finished backfill (its progress row, and each slice's) and the trigger (which has converted
   every row written since the expand) prove every row converted, read from the catalogue and
   the progress table only; the old columns are dropped (their indexes and checks with them),
   the shadows renamed, NOT NULL set (proved by the validated check, no scan), the trigger
   dropped, the shadow indexes renamed.

Rolling back: a run of the other direction first drops what this one left before its
contract (trigger, function, shadow columns, shadow indexes, progress); after the contract the
derived downgrade is itself an online type change. A table with no row takes the blocking
ALTER TABLE instead (instant), proved empty under its lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from generator import batches, coltypes, guard, runtime
from generator.state import Domain

log = logging.getLogger("schemagen")

TARGET_BATCH_S = 0.2
# Each backfill batch's transaction (SET LOCAL; both settable by any role):
# - synchronous_commit off: a batch and its progress row commit together, so a crash that
#   loses a batch's commit loses its progress with it (the re-run redoes that batch), and any
#   later commit that waits for its flush (the contract, an application's write to a batch's
#   row) flushes the WAL before it, the batch's included;
# - backend_flush_after: the pages the batch's backend evicts from shared_buffers are handed
#   to the disk as they are written, not left dirty in the kernel's cache until a checkpoint
#   or an index build's sync flushes hundreds of MB at once, during which the application's
#   commits wait for their WAL flush (docs/online.md "Backfill speed").
BATCH_SETTINGS = {"synchronous_commit": "off", "backend_flush_after": "256kB"}
FIRST_BATCH = 1000
# The key types a backfill splits into slices (format_type of the single key column)
SLICED_TYPES = coltypes.INTEGER_KINDS  # ops.alter_column_type.sliced_key, in the catalogue
SLICE = "#"  # a slice's progress row: step online_<table>#<k>
STATE_SQL = (
    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
    "WHERE a.attrelid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident(?)) "
    "AND a.attnum > 0 AND NOT a.attisdropped"
)


class OnlineCheckFailed(runtime.CheckFailed):
    """A batch found rows that do not fit the new type, or shadows drifting from their old
    value: the batch is rolled back; the batches before it stay done."""


def _qi(name: str) -> str:
    return batches._qi(name)


def shadow_name(direction: str, name: str) -> str:
    from generator.ops.alter_column_type import shadow_name as name_of

    return name_of(direction, name)


def other(direction: str) -> str:
    return "downgrade" if direction == "upgrade" else "upgrade"


@dataclass(frozen=True)
class OnlineColumn:
    column: str
    shadow: str
    type: str  # the new type's DDL
    catalog: str  # the new type as the catalogue spells it (format_type)
    using: str  # the conversion of the old column (the blocking ALTER's USING)
    nullable: bool
    default: str | None  # the new column's default, SQL
    misfit: str | None  # the rows that do not fit the new type (condition on the old column)
    tolerance: str | None  # drift allowed between old value and shadow (None: not compared)
    fit_name: str = "fits"  # the fit check's name after table.column. (fits_<new type>)
    # PostgreSQL: the new column's domain (name, its CHECK's name, the CHECK's SQL), the old
    # column's domain (dropped at the contract once no column uses it)
    domain: tuple[str, str, int] | None = None
    old_domain: str | None = None

    def __post_init__(self) -> None:
        if self.domain is not None:  # read from the rendered migration: a list
            object.__setattr__(self, "domain", tuple(self.domain))


@dataclass(frozen=True)
class Spec:
    change: str
    direction: str
    table: str
    key: tuple[str, ...]
    columns: tuple[OnlineColumn, ...]
    checks: Mapping[str, str]  # name -> SQL on the shadow column
    indexes: Mapping[str, tuple[str, str]]  # index -> (shadow index, its CREATE ... CONCURRENTLY)
    blocking: str  # the ALTER TABLE an empty table takes
    # a key column or one referencing a key (widen_key): by shadow table only (a shadow
    # column would lose the keys), else the blocking ALTER
    keyed: bool = False

    def domains(self) -> list[Domain]:
        """The new columns' domains (one per bound set)."""
        found = {c.domain[0]: Domain(*c.domain) for c in self.columns if c.domain}
        return list(found.values())

    def old_domains(self) -> list[str]:
        new = {d.name for d in self.domains()}
        return sorted({c.old_domain for c in self.columns if c.old_domain} - new)

    @property
    def step(self) -> str:
        return f"online_{self.table}"

    @property
    def trigger(self) -> str:
        return shadow_name(self.direction, self.table)

    def fill_trigger(self, direction: str | None = None) -> str:
        """The second trigger: an UPDATE of other columns of a row not backfilled yet."""
        return shadow_name(direction or self.direction, f"{self.table}__fill")

    def function(self, direction: str | None = None) -> str:
        name = shadow_name(direction or self.direction, self.table)
        return f"{batches.SCHEMA}.{_qi(name)}"

    def notnull(self, col: OnlineColumn) -> str:
        from generator.ops.alter_column_type import notnull_name

        return notnull_name(col.shadow)

    def progress_spec(self, direction: str | None = None) -> batches.Spec:
        return batches.Spec(
            self.change,
            self.step,
            direction or self.direction,
            self.table,
            self.key,
            {},
            None,
            (),
            (),
            FIRST_BATCH,
        )


class _Run:
    def __init__(self, connection: Connection, spec: Spec):
        self.connection = connection
        self.spec = spec
        self.loop = batches.Batches(connection, spec.progress_spec())
        self.loop.carry = bool(
            self.loop.sql(f"SELECT to_regclass('pg_temp.{runtime.XACT_DELETED}')").scalar()
        )
        self.settings = self.loop.settings
        self.table = _qi(spec.table)

    def sql(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self.loop.sql(text, params)

    # --------------------------------------------------------------- catalogue

    def column_types(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.sql(STATE_SQL, (self.spec.table,))}

    def has_trigger(self, name: str) -> bool:
        found = self.sql(
            "SELECT 1 FROM pg_trigger WHERE tgname = ? AND tgrelid = "
            "to_regclass(quote_ident(current_schema()) || '.' || quote_ident(?))",
            (name, self.spec.table),
        ).first()
        return found is not None

    def index_state(self, name: str) -> bool | None:
        """None: no such index; else whether it is valid."""
        row = self.sql(
            "SELECT x.indisvalid FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid "
            "JOIN pg_namespace AS n ON n.oid = i.relnamespace "
            "WHERE n.nspname = current_schema() AND i.relname = ?",
            (name,),
        ).first()
        return None if row is None else bool(row[0])

    # --------------------------------------------------------------- transactions

    def short(self, what: str, statements: Any) -> None:
        """One transaction under the runner's short lock_timeout, retried with backoff; each
        wait names the session holding the lock (guard.Blockers, the run's probe)."""
        s = self.settings
        with guard.Blockers(self.connection) as blockers:
            for attempt in range(1, s.lock_retries + 2):
                self.loop.begin()
                try:
                    statements()
                    self.loop.commit()
                    return
                except Exception as exc:
                    self.loop.rollback()
                    who, pause = guard.lock_wait(
                        exc,
                        attempt,
                        s,
                        blockers,
                        lambda n, who: (
                            f"{self.spec.change}: {what} of {self.spec.table} could not get "
                            f"its lock in {n} attempt(s) of {s.lock_timeout_ms} ms, "
                            f"blocked by {who}; what ran before is kept: run the same command "
                            "again to continue"
                        ),
                    )
                    log.warning(
                        "%s: %s of %s: lock wait (attempt %d, blocked by %s), retrying in %.0f ms",
                        self.spec.change,
                        what,
                        self.spec.table,
                        attempt,
                        who,
                        pause * 1000,
                    )
                    time.sleep(pause)

    # --------------------------------------------------------------- phases

    def undo_other(self) -> bool:
        """Drop what a run of the other direction left before its contract."""
        s = self.spec
        back = other(s.direction)
        shadows = [shadow_name(back, c.column) for c in s.columns]
        present = [c for c in shadows if c in self.column_types()]
        trigger = shadow_name(back, s.table)
        fill = s.fill_trigger(back)
        indexes = [shadow_name(back, name) for name in s.indexes]
        built = [i for i in indexes if self.index_state(i) is not None]
        if not (present or built or self.has_trigger(trigger)):
            self._forget(back)
            return False
        with runtime.step(
            s.change, f"undo the {back} of {s.table} (before its contract)", "postgresql"
        ):
            guard.set_block_lock_wait(self.connection, short=True)
            for index in built:
                self.sql(f"DROP INDEX CONCURRENTLY IF EXISTS {_qi(index)}")

            def drop() -> None:
                self.sql(f"DROP TRIGGER IF EXISTS {_qi(trigger)} ON {self.table}")
                self.sql(f"DROP TRIGGER IF EXISTS {_qi(fill)} ON {self.table}")
                self.sql(f"DROP FUNCTION IF EXISTS {s.function(back)}()")
                if present:
                    drops = ", ".join(f"DROP COLUMN IF EXISTS {_qi(c)}" for c in present)
                    self.sql(f"ALTER TABLE {self.table} {drops}")

            self.short("undo", drop)
        self._forget(back)
        return True

    def _forget(self, direction: str) -> None:
        self.loop.begin()
        self.loop.ensure()
        family, params = batches.step_family(self.spec.step)
        self.sql(
            f"DELETE FROM {batches.SCHEMA}.{batches.PROGRESS} "
            f"WHERE change_name = ? AND {family} AND direction = ?",
            (self.spec.change, *params, direction),
        )
        self.sql("COMMIT")

    def converted(self) -> bool:
        """Every column has its new type and no shadow is left: contracted (or never needed)."""
        types = self.column_types()
        return all(c.shadow not in types for c in self.spec.columns) and all(
            types.get(c.column) == c.catalog for c in self.spec.columns
        )

    def expanded(self) -> bool:
        types = self.column_types()
        return all(c.shadow in types for c in self.spec.columns) and self.has_trigger(
            self.spec.trigger
        )

    def blocking_if_empty(self, empty: bool = True) -> bool:
        """An empty table takes the blocking ALTER (instant), proved empty under its lock;
        ``empty=False``: the blocking ALTER whatever the table holds (a keyed conversion of a
        table the shadow table cannot carry)."""
        if empty and self.sql(f"SELECT 1 FROM {self.table} LIMIT 1").first() is not None:
            return False
        done = False

        def alter() -> None:
            nonlocal done
            self.sql(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
            if empty and self.sql(f"SELECT 1 FROM {self.table} LIMIT 1").first() is not None:
                return  # rows came meanwhile: online after all
            for statement in domain_sql(self.spec, "create"):
                self.sql(statement)
            self.sql(self.spec.blocking)
            for statement in domain_sql(self.spec, "drop"):
                self.sql(statement)
            # The rewrite of an empty table loses nothing: the row-count check's snapshot
            # follows the table's new file (it compares relfilenodes).
            if self.sql("SELECT to_regclass('pg_temp.schemagen_row_counts')").scalar():
                self.sql(
                    "UPDATE pg_temp.schemagen_row_counts AS s SET relfilenode = c.relfilenode "
                    "FROM pg_class AS c WHERE c.oid = s.relid AND s.table_name = ?",
                    (self.spec.table,),
                )
            done = True

        self.short("blocking ALTER of the empty table", alter)
        return done

    def expand(self) -> None:
        s = self.spec

        def run() -> None:
            self.sql(f"CREATE SCHEMA IF NOT EXISTS {batches.SCHEMA}")
            for statement in expand_sql(s):
                self.sql(statement)

        with runtime.step(s.change, f"expand {s.table}", "postgresql"):
            self.short("expand", run)

    def backfill(self) -> tuple[int, int]:
        s = self.spec
        loop = self.loop
        loop.setup(None)
        loop.target_s = TARGET_BATCH_S
        loop.local = BATCH_SETTINGS
        with runtime.step(s.change, f"backfill {s.table}", "postgresql") as record:
            uppers = self.slices()
            if uppers is None:
                done, rows = loop.run(self.table, lambda c, p: self._batch(loop, c, p))
                record.extra.update(batches=done, rows=rows, last_batch_size=loop.size)
            else:
                done, rows = self.run_slices(uppers)
                record.extra.update(batches=done, rows=rows, slices=len(uppers))
        return done, rows

    # --------------------------------------------------------------- slices

    def _coordinator(self) -> tuple[Any, int, bool]:
        """The table's own progress row: (last_key as recorded, batches, done)."""
        found = self.loop.record()
        if found is None:  # Batches.setup wrote it before any slice ran
            raise RuntimeError(f"{self.spec.change}: no backfill progress of {self.spec.table}")
        return found

    def slices(self) -> list[int | None] | None:
        """The slices of this backfill: each one's last key (the last one None: no upper
        bound), or None for one loop. A backfill's first run decides, and records the split
        in the table's progress row (``{"slices": [...]}`` as its last_key) together with a
        progress row per slice (``online_<table>#<k>``, its last key the slice's start) in
        one transaction; a resumed run follows what is recorded, whatever the setting now."""
        s = self.spec
        recorded, done_batches, done = self._coordinator()
        if isinstance(recorded, dict):
            return [None if u is None else int(u) for u in recorded["slices"]]
        workers = self.settings.backfill_workers
        if done or recorded is not None or done_batches or workers < 2 or len(s.key) != 1:
            return None  # finished, or started as one loop (resumed as one), or one wanted
        if self.column_types().get(s.key[0]) not in SLICED_TYPES:
            return None
        key = _qi(s.key[0])
        low, high = self.sql(f"SELECT min({key}), max({key}) FROM {self.table}").one()
        if low is None:
            return None
        n = int(min(workers, high - low + 1))
        if n < 2:
            return None
        # Contiguous slices of [min, max]. The first has no lower bound and the last no
        # upper one: together they cover every key, a row inserted after the split (above
        # max, below min or in a gap) included. Such a row needs no batch (the trigger,
        # there since the expand, wrote its shadows), but the last slice reaches it anyway.
        uppers: list[int | None] = [low - 1 + (high - low + 1) * k // n for k in range(1, n)]
        uppers.append(None)
        table = f"{batches.SCHEMA}.{batches.PROGRESS}"
        self.loop.begin()
        self.sql(
            f"UPDATE {table} SET last_key = ? WHERE change_name = ? AND step = ? AND direction = ?",
            (json.dumps({"slices": uppers}), s.change, s.step, s.direction),
        )
        for k in range(1, n + 1):
            start = None if k == 1 else json.dumps([uppers[k - 2]])
            self.sql(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, 0, 0, 0) "
                "ON CONFLICT (change_name, step, direction) DO UPDATE SET "
                "last_key = excluded.last_key, batches = 0, rows_done = 0, done = 0",
                (s.change, slice_step(s.step, k), s.direction, start),
            )
        self.sql("COMMIT")
        log.info("%s: backfill of %s in %d slices, up to keys %s", s.change, s.table, n, uppers)
        return uppers

    def run_slices(self, uppers: list[int | None]) -> tuple[int, int]:
        """Every unfinished slice at once, each on a connection of its own (guard.worker),
        each the batch loop of one loop (fit and drift checks, its progress committed with
        each batch, lock waits and pacing, adapted size). A failing slice stops the others
        before their next batch; the first failure is raised once all have stopped, after a
        log line saying what each slice did. Returns (batches, rows) of this run."""
        s = self.spec
        n = len(uppers)
        stop = threading.Event()
        done: dict[int, tuple[int, int]] = {}
        failures: list[tuple[int, BaseException]] = []

        def work(k: int) -> None:
            try:
                label = f"backfill {s.table} slice {k}/{n}"
                with guard.worker(self.connection, label) as conn:
                    step = slice_step(s.step, k)
                    loop = batches.Batches(conn, replace(s.progress_spec(), step=step))
                    upper = uppers[k - 1]
                    loop.upper = None if upper is None else [upper]
                    loop.stop = stop
                    loop.target_s = TARGET_BATCH_S
                    loop.local = BATCH_SETTINGS  # as one loop's (backfill())
                    loop.label = f" slice {k}/{n}"
                    # no carry: a batch deletes no row (its UPDATE and the triggers only set
                    # shadows), so nothing is added to the change's count of deleted rows
                    began = time.perf_counter()
                    done[k] = loop.run(self.table, lambda c, p: self._batch(loop, c, p))
                    if not stop.is_set():
                        log.info(
                            "%s: backfill of %s slice %d/%d finished: %d batches, %d rows in "
                            "%.1f s",
                            s.change,
                            s.table,
                            k,
                            n,
                            *done[k],
                            time.perf_counter() - began,
                        )
            except BaseException as exc:  # raised in the main thread, below
                failures.append((k, exc))
                stop.set()

        threads = [
            threading.Thread(target=work, args=(k,), name=f"schemagen-slice-{k}", daemon=True)
            for k in range(1, n + 1)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        finally:
            stop.set()  # an interrupt of this thread stops the slices too
            for thread in threads:
                thread.join()
        report = self.slice_report()
        if failures:
            k, first = min(failures, key=lambda f: f[0])
            log.error(
                "%s: backfill of %s stopped: slice %d/%d failed (%s); recorded: %s; "
                "a re-run continues every unfinished slice from its last key",
                s.change,
                s.table,
                k,
                n,
                type(first).__name__,
                report,
            )
            raise first
        self.loop.begin()
        table = f"{batches.SCHEMA}.{batches.PROGRESS}"
        family, params = batches.slice_family(s.step)
        # the table's row finished only when every slice is (in one statement)
        finished = self.sql(
            f"UPDATE {table} AS t SET done = 1, batches = x.b, rows_done = x.r "
            f"FROM (SELECT count(*) AS n, sum(done) AS d, sum(batches) AS b, "
            f"sum(rows_done) AS r FROM {table} WHERE change_name = ? AND {family} "
            "AND direction = ?) AS x "
            "WHERE t.change_name = ? AND t.step = ? AND t.direction = ? AND x.n = ? AND x.d = ?",
            (s.change, *params, s.direction, s.change, s.step, s.direction, n, n),
        ).rowcount
        self.sql("COMMIT")
        if finished != 1:
            raise RuntimeError(
                f"{s.change}: backfill of {s.table}: not every slice is recorded as finished "
                f"({report}); run the same command again to continue"
            )
        log.info("%s: backfill of %s: %s", s.change, s.table, report)
        return sum(b for b, _ in done.values()), sum(r for _, r in done.values())

    def slice_rows(self) -> list[tuple[int, Any, int, int, bool]]:
        """Each slice's progress: (slice, last key, batches, rows, done)."""
        s = self.spec
        family, params = batches.slice_family(s.step)
        rows = self.sql(
            "SELECT step, last_key, batches, rows_done, done "
            f"FROM {batches.SCHEMA}.{batches.PROGRESS} "
            f"WHERE change_name = ? AND {family} AND direction = ?",
            (s.change, *params, s.direction),
        ).fetchall()
        out = [
            (int(r[0].rsplit(SLICE, 1)[1]), json.loads(r[1]) if r[1] else None, r[2], r[3], r[4])
            for r in rows
        ]
        return sorted((k, last, int(b), int(n), bool(d)) for k, last, b, n, d in out)

    def slice_report(self) -> str:
        return "; ".join(
            f"slice {k}: " + ("finished" if d else f"up to key {last}") + f", {n} rows"
            for k, last, _, n, d in self.slice_rows()
        )

    def slices_finished(self) -> bool:
        """Every slice the split recorded is recorded finished (True: no split)."""
        recorded, _, _ = self._coordinator()
        if not isinstance(recorded, dict):
            return True
        rows = self.slice_rows()
        return len(rows) == len(recorded["slices"]) and all(r[4] for r in rows)

    def _batch(self, loop: batches.Batches, cond: str, params: list[Any]) -> int:
        """One batch on ``loop``'s connection (the migration's, or a slice's)."""
        s = self.spec
        keys = ", ".join(_qi(k) for k in s.key)
        self.misfits(loop, cond, params)
        sets = ", ".join(f"{_qi(c.shadow)} = {batches.literal(c.using)}" for c in s.columns)
        drift = [drift_sql(c, _qi(c.column), _qi(c.shadow)) for c in s.columns]
        shown = ", ".join(f"{_qi(c.column)}, {_qi(c.shadow)}" for c in s.columns)
        # One scan: the UPDATE returns each row it wrote (old and shadow of the same row
        # version, locked to the commit); the rows drifting are picked from that, and the
        # first result row carries how many rows the UPDATE changed (a LEFT JOIN: one row
        # even when none drifts; a drifting row always has its key, never NULL).
        return self.counted(
            loop,
            f"WITH sg_u AS (UPDATE {self.table} SET {sets} WHERE {cond} "
            f"RETURNING {keys}, {shown}), "
            f"sg_drift AS (SELECT {keys}, {shown} FROM sg_u WHERE {' OR '.join(drift)} "
            f"ORDER BY {keys} LIMIT {batches.MAX_SHOWN + 1}) "
            "SELECT (SELECT count(*) FROM sg_u) AS sg_changed, sg_drift.* "
            "FROM (SELECT 1) AS sg_one LEFT JOIN sg_drift ON true",
            params,
            "shadow values drifting from the old",
        )

    def counted(self, loop: batches.Batches, statement: str, params: list[Any], what: str) -> int:
        """Run a batch's statement: its first column the rows it wrote, the others (where
        not NULL) a drifting row, refused naming it. Returns the rows written."""
        found = loop.sql(statement, params)
        columns = list(found.keys())[1:]
        rows = found.fetchall()
        failing = [tuple(r[1:]) for r in rows if r[1] is not None]
        self._refuse_rows(columns, failing, f"{self.spec.table}.drift: {what}", "post")
        return int(rows[0][0])

    def misfits(self, loop: batches.Batches, cond: str, params: list[Any]) -> None:
        """Refuse a batch where a row does not fit its column's new type, naming the rows."""
        s = self.spec
        keys = ", ".join(_qi(k) for k in s.key)
        for c in s.columns:
            if c.misfit is None:
                continue
            # named as the blocking path's fit-check (checks.Fit.name)
            found = loop.sql(
                f"SELECT {keys}, {_qi(c.column)} FROM {self.table} WHERE {cond} AND "
                f"({batches.literal(c.misfit)}) ORDER BY {keys} LIMIT {batches.MAX_SHOWN + 1}",
                params,
            )
            self._refuse(found, f"{s.table}.{c.column}.{c.fit_name}", "pre")

    def _refuse(self, result: Any, what: str, phase: str) -> None:
        columns, rows = list(result.keys()), result.fetchmany(batches.MAX_SHOWN + 1)
        self._refuse_rows(columns, [tuple(r) for r in rows], what, phase)

    def _refuse_rows(
        self, columns: list[str], rows: list[tuple[Any, ...]], what: str, phase: str
    ) -> None:
        if rows:
            check = runtime.Check(what, "(per batch)")
            failure = runtime.CheckResult(check, columns, rows)
            raise OnlineCheckFailed(self.spec.change, phase, "postgresql", [failure])

    def prepare(self) -> None:
        s = self.spec
        with runtime.step(s.change, f"prepare {s.table}", "postgresql"):
            guard.set_block_lock_wait(self.connection, short=False)
            for _, (shadow, _create) in s.indexes.items():
                if self.index_state(shadow) is False:
                    self.sql(f"DROP INDEX CONCURRENTLY IF EXISTS {_qi(shadow)}")
            # The index builds' and VALIDATEs' scans set the hint bits of every row the
            # backfill wrote, dirtying the whole table: written back as they go (see
            # BATCH_SETTINGS), not left for a checkpoint's sync.
            flush = BATCH_SETTINGS["backend_flush_after"]
            self.sql(f"SET backend_flush_after = '{flush}'")
            for statement in prepare_sql(s):
                self.sql(statement)
            self.sql("RESET backend_flush_after")

    def contract(self) -> None:
        s = self.spec

        def run() -> None:
            # The proof, from the catalogue and the progress table only (no scan under the
            # lock): the backfill finished, and the trigger converted every row since.
            _, finished = self.loop.progress()
            if not finished or not self.slices_finished() or not self.has_trigger(s.trigger):
                raise RuntimeError(
                    f"{s.change}: contract of {s.table} refused: the backfill (each of its "
                    "slices) is not recorded as finished or the trigger is missing"
                )
            for statement in contract_sql(s):
                self.sql(statement)

        with runtime.step(s.change, f"contract {s.table}", "postgresql"):
            self.short("contract", run)


def drift_sql(c: OnlineColumn, old: str, new: str) -> str:
    """The condition of a value ``new`` (SQL) drifting from its old value ``old``."""
    terms = f"({old} IS NULL) <> ({new} IS NULL)"
    if c.tolerance == "0":  # must be equal (an integer type, the same scale)
        terms += f" OR {new} <> {old}"
    elif c.tolerance is not None:
        terms += f" OR abs({new} - {old}) >= {c.tolerance}"
    return terms


def slice_step(step: str, k: int) -> str:
    return f"{step}{SLICE}{k}"


def domain_sql(s: Spec, what: str) -> list[str]:
    """The domains' DDL (state.Domain, dialects.domain_*_sql). ``create``: each new column's
    domain with its CHECK (NOT VALID), if missing; ``unconstrain``: each without its CHECK
    (PostgreSQL 15 rewrites the table to add a column of a domain with a CHECK, even one NOT
    VALID); ``constrain``: each CHECK put back NOT VALID, in the same transaction (the other
    sessions never see the domain without it); ``drop``: the old columns' domains, once no
    column uses them."""
    from generator import dialects

    out: list[str] = []
    for domain in s.domains():
        if what == "create":
            out += [dialects.domain_create_sql(domain), dialects.domain_constraint_sql(domain)]
        elif what == "unconstrain":
            out += [dialects.domain_create_sql(domain), dialects.domain_unconstrain_sql(domain)]
        elif what == "constrain":
            out.append(dialects.domain_add_sql(domain))
    if what == "drop":
        out += [dialects.domain_drop_sql(Domain(name, "", 0)) for name in s.old_domains()]
    return out


def expand_sql(s: Spec) -> list[str]:
    """The expand's DDL: shadow columns and NOT VALID checks in one ALTER TABLE, the trigger;
    a shadow's domain (state.Domain) loses its CHECK for the ADD COLUMN and gets it back NOT
    VALID in the same transaction (no rewrite; new rows are checked from then on)."""
    table = _qi(s.table)
    clauses = [f"ADD COLUMN IF NOT EXISTS {_qi(c.shadow)} {c.type}" for c in s.columns]
    checks = dict(s.checks)
    for c in s.columns:
        if not c.nullable:
            checks[s.notnull(c)] = f"{_qi(c.shadow)} IS NOT NULL"
    for name, sql in checks.items():
        clauses.append(f"DROP CONSTRAINT IF EXISTS {_qi(name)}")
        clauses.append(f"ADD CONSTRAINT {_qi(name)} CHECK ({sql}) NOT VALID")
    olds = ", ".join(f"NEW.{_qi(c.column)} AS {_qi(c.column)}" for c in s.columns)
    values = ", ".join(c.using for c in s.columns)
    into = ", ".join(f"NEW.{_qi(c.shadow)}" for c in s.columns)
    body = f"BEGIN SELECT {values} INTO {into} FROM (SELECT {olds}) AS sg_old; RETURN NEW; END"
    # The lock first (one request, under lock_timeout), the triggers before the columns: no
    # row is written without its shadow, not even by this transaction. The first trigger
    # fires on every INSERT and on an UPDATE that sets an old column (UPDATE OF); the second
    # on any other UPDATE of a row whose shadow is still missing (not backfilled yet: its
    # new version must have its shadows, the NOT NULL helper check is enforced on it). An
    # UPDATE of other columns of a backfilled row keeps its shadows, its old columns'
    # conversion; the backfill's own UPDATE sets only the shadows (a NULL shadow only for a
    # NULL old value), so it fires neither: no function call per row.
    columns = ", ".join(_qi(c.column) for c in s.columns)
    missing = " OR ".join(
        f"(NEW.{_qi(c.shadow)} IS NULL AND NEW.{_qi(c.column)} IS NOT NULL)" for c in s.columns
    )
    return [
        f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE",
        f"CREATE OR REPLACE FUNCTION {s.function()}() RETURNS trigger LANGUAGE plpgsql "
        f"AS $$ {body} $$",
        f"DROP TRIGGER IF EXISTS {_qi(s.trigger)} ON {table}",
        f"CREATE TRIGGER {_qi(s.trigger)} BEFORE INSERT OR UPDATE OF {columns} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {s.function()}()",
        *domain_sql(s, "unconstrain"),
        f"ALTER TABLE {table} {', '.join(clauses)}",
        # after the columns it reads (same transaction, the table locked: no row between)
        f"DROP TRIGGER IF EXISTS {_qi(s.fill_trigger())} ON {table}",
        f"CREATE TRIGGER {_qi(s.fill_trigger())} BEFORE UPDATE ON {table} FOR EACH ROW "
        f"WHEN ({missing}) EXECUTE FUNCTION {s.function()}()",
        *domain_sql(s, "constrain"),
    ]


def prepare_sql(s: Spec) -> list[str]:
    """Shadow indexes CONCURRENTLY, then VALIDATE of each NOT VALID check."""
    out = [create for _, create in s.indexes.values()]
    names = list(s.checks) + [s.notnull(c) for c in s.columns if not c.nullable]
    out += [f"ALTER TABLE {_qi(s.table)} VALIDATE CONSTRAINT {_qi(n)}" for n in names]
    return out


def contract_sql(s: Spec) -> list[str]:
    """The contract's statements, one transaction: catalogue changes only."""
    table = _qi(s.table)
    # The triggers first: they name the old columns, which cannot go before them (the
    # second IF EXISTS: an expand of an earlier version had one trigger only)
    out = [
        f"DROP TRIGGER {_qi(s.trigger)} ON {table}",
        f"DROP TRIGGER IF EXISTS {_qi(s.fill_trigger())} ON {table}",
    ]
    out.append(f"DROP FUNCTION {s.function()}()")
    out.append(
        f"ALTER TABLE {table} {', '.join(f'DROP COLUMN {_qi(c.column)}' for c in s.columns)}"
    )
    out += [
        f"ALTER TABLE {table} RENAME COLUMN {_qi(c.shadow)} TO {_qi(c.column)}" for c in s.columns
    ]
    # SET NOT NULL while the validated CHECK (shadow IS NOT NULL) is still there, so it is
    # proved without a scan; the check goes in a statement after it (in the same ALTER TABLE,
    # PostgreSQL would drop it first, then scan the table under the lock).
    after = []
    for c in s.columns:
        if not c.nullable:
            after.append(f"ALTER COLUMN {_qi(c.column)} SET NOT NULL")
        if c.default is not None:
            after.append(f"ALTER COLUMN {_qi(c.column)} SET DEFAULT {c.default}")
    if after:
        out.append(f"ALTER TABLE {table} {', '.join(after)}")
    helpers = [f"DROP CONSTRAINT {_qi(s.notnull(c))}" for c in s.columns if not c.nullable]
    if helpers:
        out.append(f"ALTER TABLE {table} {', '.join(helpers)}")
    out += [f"ALTER INDEX {_qi(shadow)} RENAME TO {_qi(i)}" for i, (shadow, _) in s.indexes.items()]
    return out + domain_sql(s, "drop")


def run(connection: Connection, spec: Spec) -> str:
    """Every phase not done yet; returns how the table was converted."""
    from generator import online_table

    r = _Run(connection, spec)
    r.loop.begin()
    r.loop.ensure()
    r.sql("COMMIT")
    t = online_table.TableRun(connection, spec)
    t.undo_other()  # the other direction's shadow table, else its shadow columns
    if r.converted():
        t.finish()  # the foreign keys a contract of the table left NOT VALID
        r._forget(spec.direction)
        return "already converted"
    if t.expanded():
        run: _Run = t  # a change continues as it began
    elif r.expanded():
        run = r
    else:
        if r.blocking_if_empty():
            r._forget(spec.direction)
            return "blocking ALTER (empty table)"
        r._forget(spec.direction)  # a new expand starts a new backfill
        method = online_table.choose(t, "table" if spec.keyed else r.settings.online_method)
        if method == "blocking":  # keyed, and the table cannot be swapped (logged)
            r.blocking_if_empty(empty=False)
            r._forget(spec.direction)
            return "blocking ALTER (the table cannot be swapped)"
        run = t if method == "table" else r
        run.expand()
    run.backfill()
    run.prepare()
    run.contract()
    return "online (shadow table)" if run is t else "online (shadow columns)"


def online_type_change(
    op: Any,
    script_file: str,
    direction: str,
    *,
    table: str,
    key: list[str],
    columns: list[dict[str, Any]],
    checks: dict[str, str],
    indexes: dict[str, tuple[str, str]],
    blocking: str,
    keyed: bool = False,
) -> None:
    """What a rendered online_type_change unit calls, inside its autocommit block."""
    change = Path(script_file).stem
    spec = Spec(
        change,
        direction,
        table,
        tuple(key),
        tuple(OnlineColumn(**c) for c in columns),
        dict(checks),
        {k: (v[0], v[1]) for k, v in indexes.items()},
        blocking,
        keyed,
    )
    if runtime._offline(op):
        _plan(op, spec)
        return
    connection: Connection = op.get_bind()
    name, commits = f"online type change of {table}", "phases committed one by one"
    with batches.committed_phase(connection, name, commits, spec.progress_spec()) as record:
        record.extra.update(path=run(connection, spec))


def _plan(op: Any, spec: Spec) -> None:
    """The phases with their locks, and the DDL each runs (printed as it would run)."""

    def note(text: str) -> None:
        runtime._note(op, text)

    def out(statements: list[str]) -> None:
        for statement in statements:
            op.get_context().impl.static_output(f"{statement};\n")

    cols = ", ".join(f"{c.column} -> {c.type}" for c in spec.columns)
    if spec.keyed:  # never by shadow columns: nothing of theirs to print
        note(
            f"online type change of {spec.table} ({cols}), a key's (widen_key): by shadow "
            f"table only (expand [SHARE ROW EXCLUSIVE] CREATE TABLE "
            f"{shadow_name(spec.direction, spec.table)} (LIKE {spec.table} ...) with the new "
            "types and a trigger copying each write; backfill INSERT ... SELECT ... FOR KEY "
            "SHARE; prepare: its indexes CONCURRENTLY, its foreign keys NOT VALID then "
            "VALIDATE; contract: the tables swapped, the keys pointing at it moved NOT VALID "
            "and validated after; the statements are read from the catalogue at run time); a "
            "table with no row, or one the swap cannot carry, takes instead:"
        )
        for line in spec.blocking.splitlines():
            note(f"    {line}")
        # the two statements of the shadow table that do not depend on the catalogue: the
        # expand's lock and the contract's (generator/online_table.py)
        new = _qi(shadow_name(spec.direction, spec.table))
        note("phase expand [SHARE ROW EXCLUSIVE, brief; lock_timeout, retried]:")
        out([f"LOCK TABLE {_qi(spec.table)} IN SHARE ROW EXCLUSIVE MODE"])
        note("phase contract [ACCESS EXCLUSIVE, brief, catalogue only; lock_timeout, retried]:")
        out([f"LOCK TABLE {_qi(spec.table)}, {new} IN ACCESS EXCLUSIVE MODE"])
        return
    note(f"online type change of {spec.table} ({cols}); a table with no row takes instead:")
    for line in spec.blocking.splitlines():
        note(f"    {line}")
    note(
        "method: by shadow table where the runner's --online-method allows (auto: unless a "
        "view, rule, policy, publication, trigger, ... is in the way; generator/online_table.py, "
        "decided against the catalogue at run time): expand [SHARE ROW EXCLUSIVE] CREATE TABLE "
        f"{shadow_name(spec.direction, spec.table)} (LIKE {spec.table} ...) with the new types "
        "and a trigger copying each write; backfill INSERT ... SELECT ... FOR KEY SHARE; "
        "prepare: its indexes CONCURRENTLY, foreign keys NOT VALID then VALIDATE; contract: "
        "the tables swapped. Otherwise by shadow columns:"
    )
    note(
        "phase expand [ACCESS EXCLUSIVE, brief, catalogue only; lock_timeout, retried]: "
        "shadow columns, NOT VALID checks, triggers keeping each shadow converted (on INSERT "
        "and an UPDATE of an old column; on other UPDATEs of a row not backfilled yet)"
    )
    out(expand_sql(spec))
    keys = ", ".join(spec.key)
    note(
        f"phase backfill [ROW EXCLUSIVE per batch]: keyset batches on ({keys}), size adapted "
        f"to {TARGET_BATCH_S * 1000:.0f} ms, each its own transaction: fit check, UPDATE "
        f"{spec.table} SET "
        + ", ".join(f"{c.shadow} = {c.using}" for c in spec.columns)
        + ", drift check row by row; progress in "
        f"{batches.SCHEMA}.{batches.PROGRESS} ({spec.change}, {spec.step}); a single integer "
        "key: in slices of the key range at once, each on its own connection, progress per "
        f"slice ({spec.step}{SLICE}<k>; runner setting --backfill-workers, default "
        f"{guard.Settings().backfill_workers})"
    )
    note("phase prepare [SHARE UPDATE EXCLUSIVE]: shadow indexes CONCURRENTLY, VALIDATE")
    out(prepare_sql(spec))
    note(
        "phase contract [ACCESS EXCLUSIVE, brief, catalogue only; lock_timeout, retried]: "
        "one transaction, proved by the finished backfill and the trigger (no scan)"
    )
    out(contract_sql(spec))


def progress(connection: Connection) -> list[dict[str, Any]]:
    """Online changes in their backfill phase (for `schemagen status`), each with its method
    (a shadow table of its direction there, or shadow columns); a backfill in slices shows
    their sums, each slice's last key, and how many slices finished. A table swapped in whose
    pointing foreign keys are not validated yet (online_table.VALIDATE_STEP) says which."""
    from generator.online_table import VALIDATE_STEP

    table = f"{batches.SCHEMA}.{batches.PROGRESS}"
    if not connection.exec_driver_sql(f"SELECT to_regclass('{table}')").scalar():
        return []
    sql = (
        "SELECT change_name, step, direction, last_key, batches, rows_done, done, "
        "to_regclass(quote_ident(current_schema()) || '.' || quote_ident(CASE WHEN direction "
        "= 'upgrade' THEN 'sg_up__' ELSE 'sg_down__' END || substr(step, 8))) IS NOT NULL "
        f"FROM {table} WHERE step LIKE 'online_%' OR step LIKE '{VALIDATE_STEP}%' "
        "ORDER BY change_name, step"
    )
    rows = connection.exec_driver_sql(runtime._driver_sql(connection, sql)).fetchall()
    slices: dict[tuple[str, str, str], list[Any]] = {}
    for r in rows:
        if SLICE in r[1]:
            slices.setdefault((r[0], r[1].rsplit(SLICE, 1)[0], r[2]), []).append(r)
    out: list[dict[str, Any]] = []
    for r in rows:
        if SLICE in r[1]:
            continue
        if r[1].startswith(VALIDATE_STEP):
            keys = ", ".join(f"{t}.{n}" for t, n in json.loads(r[3]))
            out.append(
                {
                    "change": r[0],
                    "table": r[1][len(VALIDATE_STEP) :],
                    "direction": r[2],
                    "method": "shadow table",
                    "phase": f"swapped in; foreign keys to validate: {keys}",
                }
            )
            continue
        last = json.loads(r[3]) if r[3] else None
        entry = {
            "change": r[0],
            "table": r[1][len("online_") :],
            "direction": r[2],
            "method": "shadow table" if r[7] else "shadow columns",
            "last_key": last,
            "batches": r[4],
            "rows": r[5],
            "phase": "backfill finished" if r[6] else "backfill running",
        }
        mine = sorted(
            slices.get((r[0], r[1], r[2]), []), key=lambda x: int(x[1].rsplit(SLICE, 1)[1])
        )
        if isinstance(last, dict) and mine:
            entry.update(
                last_key=[json.loads(x[3])[0] if x[3] else None for x in mine],
                batches=sum(int(x[4]) for x in mine),
                rows=sum(int(x[5]) for x in mine),
                slices=f"{sum(1 for x in mine if x[6])}/{len(mine)} slices finished",
            )
        out.append(entry)
    return out
