"""Bulk ingest of ticks and alert logs: every row validated in Python, then COPY
(PostgreSQL) or a prepared INSERT executemany (SQLite).

:func:`insert_ticks` and :func:`insert_alerts` take an async connection
(:class:`~sqlalchemy.ext.asyncio.AsyncConnection`) of the application's engine
(:func:`marketdata.create_app_engine`: asyncpg or aiosqlite); :func:`insert_ticks_sync` and
:func:`insert_alerts_sync` take a sync :class:`~sqlalchemy.engine.Connection` (psycopg or
pysqlite) and share all of the validation.
See docs/ingest.md for the semantics; in short:

* **Rows** are mappings keyed by the model's column names (``MarketData`` / ``AlertLog``):
  required columns present and not None, optional ones may be left out (``status`` defaults
  to ``"triggered"``). ``id``, ``created_at``, ``updated_at`` and ``deleted_at`` are not
  accepted: the database numbers the rows, the ingest stamps both audit columns with the
  time of the call, and rows are written live (``deleted_at`` NULL).
* **Validation** happens before anything is written, and checks what the head schema
  enforces, with the same result on both dialects: types (``int`` ids and volumes within
  INTEGER / BIGINT; prices as ``float``, ``int`` or ``Decimal``, finite and inside
  ``ck_<table>_<column>_range``, i.e. ``-10^8 < value < 10^8``; ``datetime`` values that are
  timezone-aware, normalised to UTC; strings within their ``varchar(n)``, without NUL and
  encodable as UTF-8), NOT NULL, unknown fields, and the foreign keys: every referenced
  instrument and rule must exist (checked per call over the distinct ids, in one statement
  on PostgreSQL that also takes ``FOR KEY SHARE``, so they cannot be deleted before the
  write).
  Prices are stored as the nearest double, as the ORM's :class:`marketdata.types.Price`
  stores them (a 4-place price reads back exactly).
* **Invalid rows**: by default (``on_invalid="raise"``) one bad row refuses the whole call:
  nothing is written and :class:`InvalidRows` lists every bad row (index in the input,
  counted from 0, field and reason). With ``on_invalid="skip"`` the valid rows are written
  and the bad ones come back in :attr:`IngestResult.rejected`.
* **Atomicity**: a call is all or nothing. On a connection already in a transaction the rows
  are written inside it, under a SAVEPOINT, and the caller commits; otherwise the call
  begins and commits a transaction of its own. If the database refuses a row that passed
  validation (a trigger, a lock timeout...), the SAVEPOINT / transaction is rolled back and
  :class:`IngestRefused` is raised: nothing of the call is written, and the caller's
  transaction is still usable. To commit every N rows, call once per N rows.
* ``batch_size`` rows go into each COPY / executemany; all batches of a call share its
  transaction. On SQLite the prepared INSERT has up to 1,000 rows (``VALUES (...), (...)``)
  and is executemany'd over the batch's groups, plus one INSERT of the remainder.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from marketdata.errors import MarketDataError
from marketdata.types import PRICE_LIMIT, sqlite_timestamp_text

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FieldError",
    "IngestRefused",
    "IngestResult",
    "InvalidRows",
    "OnInvalid",
    "RejectedRow",
    "insert_alerts",
    "insert_alerts_sync",
    "insert_ticks",
    "insert_ticks_sync",
]

OnInvalid = Literal["raise", "skip"]
DEFAULT_BATCH_SIZE = 50_000  # rows per COPY / executemany: bigger is faster (docs/ingest.md)
_MESSAGE_LINES = 50  # bad rows spelled out in an InvalidRows message (all are in .errors)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
# Set by the database or by the ingest, never taken from an input row.
_NOT_ACCEPTED = ("id", "created_at", "updated_at", "deleted_at")


# --- results and errors -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem of one input row: ``index`` counts from 0 in the input; ``field`` is the
    column name (None when the row itself is not a mapping)."""

    index: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"row {self.index}" if self.field is None else f"row {self.index}, {self.field}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """An input row that was not written, with every problem found in it."""

    index: int
    row: Any
    errors: tuple[FieldError, ...]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What a call wrote: ``inserted`` rows into ``table`` in ``batches`` COPY / executemany
    statements; ``rejected`` (skip mode only) the rows left out, in input order."""

    table: str
    inserted: int
    batches: int = 0
    rejected: tuple[RejectedRow, ...] = ()


class InvalidRows(MarketDataError):
    """Rows failed validation and ``on_invalid="raise"``: nothing was written.

    ``rejected`` has every bad row (input order), ``errors`` every problem of them.
    """

    def __init__(self, table: str, total: int, rejected: Sequence[RejectedRow]) -> None:
        self.table = table
        self.total = total
        self.rejected = tuple(rejected)
        self.errors = tuple(e for r in self.rejected for e in r.errors)
        lines = [str(e) for e in self.errors[:_MESSAGE_LINES]]
        if len(self.errors) > _MESSAGE_LINES:
            lines.append(f"... and {len(self.errors) - _MESSAGE_LINES} more (see .errors)")
        super().__init__(
            f"{table}: {len(self.rejected)} of {total} rows are invalid, nothing was written:\n  "
            + "\n  ".join(lines)
        )


class IngestRefused(MarketDataError):
    """The database (or its driver) refused rows that passed validation; the call's SAVEPOINT
    or transaction was rolled back, so nothing of the call was written. The driver's error
    is the ``__cause__``."""

    def __init__(self, table: str, rows: int, cause: BaseException) -> None:
        self.table = table
        self.rows = rows
        super().__init__(
            f"{table}: the database refused the batch of {rows} validated rows, nothing was "
            f"written ({type(cause).__name__}: {cause})"
        )


# --- the reference validation, one field at a time ----------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    kind: Literal["int32", "int64", "price", "timestamp", "text"]
    required: bool = False
    max_length: int | None = None  # varchar(n); None: text
    default: Any = None  # used when the field is absent (not when it is None)
    references: str | None = None  # foreign key: "instruments" | "alert_rules"


_Converted = tuple[Any, str | None]  # (value, reason it is refused or None)


# The fast paths build the same text from these (isoformat costs about 0.7 us a value).
_HOURS_MINUTES = tuple(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_SECONDS = tuple(f"{s:02d}." for s in range(60))


def _check_int(value: Any, bounds: tuple[int, int], sql_type: str) -> _Converted:
    if isinstance(value, bool) or not isinstance(value, int):
        return None, f"expected an int, got {_describe(value)}"
    if not bounds[0] <= value <= bounds[1]:
        return None, f"{value} is out of the {sql_type} range"
    return int(value), None


def _check_price(value: Any, check: str) -> _Converted:
    if isinstance(value, bool) or not isinstance(value, float | int | Decimal):
        return None, f"expected a float, int or Decimal price, got {_describe(value)}"
    if (isinstance(value, float) and not math.isfinite(value)) or (
        isinstance(value, Decimal) and not value.is_finite()
    ):
        return None, f"{value!r} is not finite (NaN and infinities are refused)"
    try:
        number = float(value)
    except OverflowError:  # an int beyond the doubles
        number = math.inf
    if not -PRICE_LIMIT < number < PRICE_LIMIT:
        return None, (
            f"{value!r} is out of range: {check} needs -{PRICE_LIMIT} < value < {PRICE_LIMIT}"
        )
    return number, None


def _check_timestamp(value: Any, as_text: bool) -> _Converted:
    if not isinstance(value, datetime):
        return None, f"expected a timezone-aware datetime, got {_describe(value)}"
    if value.tzinfo is None or value.utcoffset() is None:
        return None, f"naive datetime {value.isoformat()}: give a timezone-aware value"
    utc = value.astimezone(UTC)
    return (sqlite_timestamp_text(utc) if as_text else utc), None


def _check_text(value: Any, max_length: int | None) -> _Converted:
    if not isinstance(value, str):
        return None, f"expected a str, got {_describe(value)}"
    if max_length is not None and len(value) > max_length:
        return None, f"{len(value)} characters, more than varchar({max_length}) holds"
    if "\x00" in value:
        return None, "contains a NUL character, which PostgreSQL text cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None, "is not valid Unicode (a lone surrogate): it cannot be encoded as UTF-8"
    return str(value), None


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _convert(table: str, column: _Column, value: Any, as_text: bool) -> _Converted:
    kind = column.kind
    if kind == "price":
        return _check_price(value, f"ck_{table}_{column.name}_range")
    if kind == "timestamp":
        return _check_timestamp(value, as_text)
    if kind == "text":
        return _check_text(value, column.max_length)
    if kind == "int32":
        return _check_int(value, _INT32, "INTEGER")
    return _check_int(value, _INT64, "BIGINT")


# --- the tables ---------------------------------------------------------------------------

_Row = tuple[Any, ...]


@dataclass(frozen=True)
class _Spec:
    """One target table: its input columns (in the order of the written tuples, followed by
    ``created_at`` and ``updated_at``) and its fast row converter."""

    table: str
    columns: tuple[_Column, ...]
    fast: Callable[[_Spec, Iterable[Any], bool, Any], tuple[list[_Row], list[RejectedRow]]]
    by_name: dict[str, _Column] = field(init=False)
    targets: tuple[str, ...] = field(init=False)
    insert_sql: str = field(init=False)
    copy_sql: str = field(init=False)
    _values_sql: dict[int, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen
        set_(self, "by_name", {c.name: c for c in self.columns})
        set_(self, "targets", (*(c.name for c in self.columns), "created_at", "updated_at"))
        names = ", ".join(f'"{n}"' for n in self.targets)
        marks = ", ".join("?" for _ in self.targets)
        set_(self, "insert_sql", f"INSERT INTO {self.table} ({names}) VALUES ({marks})")
        set_(self, "copy_sql", f"COPY {self.table} ({names}) FROM STDIN")

    def values_sql(self, rows: int, keep: bool = False) -> str:
        """SQLite: one INSERT of ``rows`` rows (``VALUES (?, ...), (?, ...)``), kept for the
        next call when ``keep`` (the full-group sizes: one or two; a remainder's is built
        each time, rather than keeping up to a thousand of up to 40 kB)."""
        sql = self._values_sql.get(rows)
        if sql is None:
            one = "(" + ", ".join("?" for _ in self.targets) + ")"
            head = self.insert_sql.partition(" VALUES ")[0]
            sql = f"{head} VALUES {', '.join([one] * rows)}"
            if keep:
                self._values_sql[rows] = sql
        return sql

    def references(self) -> Iterator[tuple[int, _Column]]:
        for position, column in enumerate(self.columns):
            if column.references:
                yield position, column

    def check_row(self, index: int, row: Any, as_text: bool, now: Any) -> _Row | RejectedRow:
        """The reference validation of one row: its tuple, or every problem of it."""
        if not isinstance(row, Mapping):
            problem = f"expected a mapping of column names to values, got {_describe(row)}"
            return RejectedRow(index, row, (FieldError(index, None, problem),))
        errors = []
        values = []
        for column in self.columns:
            try:
                value = row[column.name]
            except KeyError:
                if column.required:
                    errors.append(FieldError(index, column.name, "missing (the field is required)"))
                    continue
                values.append(column.default)
                continue
            if value is None:
                if column.required or column.default is not None:
                    errors.append(
                        FieldError(index, column.name, "is None (the column is NOT NULL)")
                    )
                else:
                    values.append(None)
                continue
            converted, reason = _convert(self.table, column, value, as_text)
            if reason is not None:
                errors.append(FieldError(index, column.name, reason))
            else:
                values.append(converted)
        for key in row:
            if key not in self.by_name:
                reason = (
                    "set by the database and the ingest: not accepted in input rows"
                    if key in _NOT_ACCEPTED
                    else f"not a column of {self.table}"
                )
                errors.append(FieldError(index, str(key), reason))
        if errors:
            return RejectedRow(index, row, tuple(errors))
        return (*values, now, now)


_LOW, _HIGH = -float(PRICE_LIMIT), float(PRICE_LIMIT)


def _fast_ticks(
    spec: _Spec, rows: Iterable[Any], as_text: bool, now: Any
) -> tuple[list[_Row], list[RejectedRow]]:
    """market_data rows: the common case (float prices, UTC datetimes, plain ints) checked
    inline; anything else goes through :meth:`_Spec.check_row`, which decides."""
    out: list[_Row] = []
    rejected: list[RejectedRow] = []
    append = out.append
    known = frozenset(spec.by_name).issuperset
    check_row = spec.check_row
    lo, hi = _LOW, _HIGH
    i_lo, i_hi = _INT32
    b_lo, b_hi = _INT64
    dt, utc, fl, nt = datetime, UTC, float, int
    days: dict[int, str] = {}
    hm, ss = _HOURS_MINUTES, _SECONDS
    for row in rows:
        try:
            iid = row["instrument_id"]
            ts = row["timestamp"]
            price = row["price"]
            get = row.get
            bid = get("bid")
            ask = get("ask")
            open_ = get("open_price")
            high = get("high_price")
            low = get("low_price")
            volume = get("volume")
        except Exception:  # not a mapping, or a required field missing: check_row says which
            ok = False
        else:
            ok = (
                type(iid) is nt
                and i_lo <= iid <= i_hi
                and type(ts) is dt
                and ts.tzinfo is utc
                and type(price) is fl
                and lo < price < hi  # NaN fails every comparison
                and (bid is None or (type(bid) is fl and lo < bid < hi))
                and (ask is None or (type(ask) is fl and lo < ask < hi))
                and (open_ is None or (type(open_) is fl and lo < open_ < hi))
                and (high is None or (type(high) is fl and lo < high < hi))
                and (low is None or (type(low) is fl and lo < low < hi))
                and (volume is None or (type(volume) is nt and b_lo <= volume <= b_hi))
                and known(row)
            )
        if ok:
            if as_text:  # as sqlite_timestamp_text(ts), three times faster
                day = days.get(ts.toordinal())
                if day is None:
                    day = days[ts.toordinal()] = f"{ts.date().isoformat()} "
                micro = ts.microsecond
                micro = "%06d" % micro if micro else "000000"  # noqa: UP031 (faster)
                ts = f"{day}{hm[ts.hour * 60 + ts.minute]}{ss[ts.second]}{micro}"
            append((iid, ts, price, bid, ask, open_, high, low, volume, now, now))
        else:
            checked = check_row(len(out) + len(rejected), row, as_text, now)
            if isinstance(checked, RejectedRow):
                rejected.append(checked)
            else:
                append(checked)
    return out, rejected


def _fast_alerts(
    spec: _Spec, rows: Iterable[Any], as_text: bool, now: Any
) -> tuple[list[_Row], list[RejectedRow]]:
    """alert_logs rows: as :func:`_fast_ticks`. Strings pass inline when printable (no NUL,
    no lone surrogate) and short enough; others go through :meth:`_Spec.check_row`."""
    out: list[_Row] = []
    rejected: list[RejectedRow] = []
    append = out.append
    known = frozenset(spec.by_name).issuperset
    check_row = spec.check_row
    lo, hi = _LOW, _HIGH
    i_lo, i_hi = _INT32
    dt, utc, fl, nt, st = datetime, UTC, float, int, str
    status_len = spec.by_name["status"].max_length or 0
    severity_len = spec.by_name["severity"].max_length or 0
    by_len = spec.by_name["acknowledged_by"].max_length or 0
    days: dict[int, str] = {}
    hm, ss = _HOURS_MINUTES, _SECONDS
    for row in rows:
        try:
            rid = row["rule_id"]
            iid = row["instrument_id"]
            ts = row["timestamp"]
            trigger = row["trigger_value"]
            threshold = row["threshold_value"]
            severity = row["severity"]
            get = row.get
            status = get("status", "triggered")
            message = get("message")
            acked_at = get("acknowledged_at")
            acked_by = get("acknowledged_by")
        except Exception:
            ok = False
        else:
            ok = (
                type(rid) is nt
                and i_lo <= rid <= i_hi
                and type(iid) is nt
                and i_lo <= iid <= i_hi
                and type(ts) is dt
                and ts.tzinfo is utc
                and type(trigger) is fl
                and lo < trigger < hi
                and type(threshold) is fl
                and lo < threshold < hi
                and type(status) is st
                and len(status) <= status_len
                and status.isprintable()
                and type(severity) is st
                and len(severity) <= severity_len
                and severity.isprintable()
                and (message is None or (type(message) is st and message.isprintable()))
                and (acked_at is None or (type(acked_at) is dt and acked_at.tzinfo is utc))
                and (
                    acked_by is None
                    or (type(acked_by) is st and len(acked_by) <= by_len and acked_by.isprintable())
                )
                and known(row)
            )
        if ok:
            if as_text:  # as sqlite_timestamp_text(), three times faster
                day = days.get(ts.toordinal())
                if day is None:
                    day = days[ts.toordinal()] = f"{ts.date().isoformat()} "
                micro = ts.microsecond
                micro = "%06d" % micro if micro else "000000"  # noqa: UP031 (faster)
                ts = f"{day}{hm[ts.hour * 60 + ts.minute]}{ss[ts.second]}{micro}"
                if acked_at is not None:
                    day = days.get(acked_at.toordinal())
                    if day is None:
                        day = days[acked_at.toordinal()] = f"{acked_at.date().isoformat()} "
                    hour, minute, second = acked_at.hour, acked_at.minute, acked_at.second
                    micro = acked_at.microsecond
                    micro = "%06d" % micro if micro else "000000"  # noqa: UP031 (faster)
                    acked_at = f"{day}{hm[hour * 60 + minute]}{ss[second]}{micro}"
            append(
                (
                    rid,
                    iid,
                    ts,
                    trigger,
                    threshold,
                    status,
                    severity,
                    message,
                    acked_at,
                    acked_by,
                    now,
                    now,
                )
            )
        else:
            checked = check_row(len(out) + len(rejected), row, as_text, now)
            if isinstance(checked, RejectedRow):
                rejected.append(checked)
            else:
                append(checked)
    return out, rejected


def _price(name: str, required: bool = False) -> _Column:
    return _Column(name, "price", required=required)


TICKS = _Spec(
    "market_data",
    (
        _Column("instrument_id", "int32", required=True, references="instruments"),
        _Column("timestamp", "timestamp", required=True),
        _price("price", required=True),
        _price("bid"),
        _price("ask"),
        _price("open_price"),
        _price("high_price"),
        _price("low_price"),
        _Column("volume", "int64"),
    ),
    _fast_ticks,
)
ALERTS = _Spec(
    "alert_logs",
    (
        _Column("rule_id", "int32", required=True, references="alert_rules"),
        _Column("instrument_id", "int32", required=True, references="instruments"),
        _Column("timestamp", "timestamp", required=True),
        _price("trigger_value", required=True),
        _price("threshold_value", required=True),
        _Column("status", "text", max_length=16, default="triggered"),
        _Column("severity", "text", required=True, max_length=16),
        _Column("message", "text"),
        _Column("acknowledged_at", "timestamp"),
        _Column("acknowledged_by", "text", max_length=64),
    ),
    _fast_alerts,
)
_ID_CHUNK = 5_000  # ids per existence query (SQLite binds each; PostgreSQL one array)
# Rows per SQLite INSERT statement, at most (and at most the connection's limit on bound
# parameters, 32,766 since SQLite 3.32, 999 before). Measured on 20 1,000-row calls against
# the ceiling (sqlite3 executemany of one-row INSERTs): 75 % with 1 row per statement, 86 %
# with 50, 93 % with 250, 96 % with 1,000 (ticks; alerts 77 / 88 / 96 / 100 %).
_VALUES_ROWS = 1_000


def _pg_exists(parent: str, param: str) -> str:
    """PostgreSQL's parent check, on the driver connection (``param``: its placeholder).

    FOR KEY SHARE is held to the end of the transaction, so the parents cannot be deleted
    between the check and the write (it is the lock the FK trigger takes anyway)."""
    return f"SELECT id FROM {parent} WHERE id = ANY({param}::integer[]) FOR KEY SHARE"


# --- one call, shared by the async and sync functions ------------------------------------


class _Call:
    """The driver-independent part of one call: validation, the foreign-key verdict, the
    batches to write, the result."""

    def __init__(
        self, spec: _Spec, rows: Iterable[Any], dialect: sa.Dialect, on_invalid: str, size: int
    ) -> None:
        if on_invalid not in ("raise", "skip"):
            raise ValueError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"batch_size must be a positive int, not {size!r}")
        if dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported dialect {dialect.name!r}: SQLite or PostgreSQL only")
        if isinstance(rows, Mapping | str | bytes):
            raise TypeError("rows must be an iterable of mappings (one per row), not a single row")
        if not isinstance(rows, Sequence):
            rows = list(rows)  # kept: a row refused by a foreign key is returned as given
        self.rows: Sequence[Any] = rows
        self.spec = spec
        self.on_invalid = on_invalid
        self.size = size
        self.sqlite = dialect.name == "sqlite"
        now = datetime.now(UTC)
        stamp: Any = sqlite_timestamp_text(now) if self.sqlite else now
        self.tuples, self.rejected = spec.fast(spec, rows, self.sqlite, stamp)
        self.total = len(self.tuples) + len(self.rejected)
        self._ids: dict[int, set[int]] = {}  # distinct referenced ids, per tuple position

    @property
    def nothing_to_do(self) -> bool:
        return not self.tuples and not self.rejected

    def references(self) -> list[tuple[int, str, list[list[int]]]]:
        """Per foreign key: the tuple position, the parent table, its distinct ids in chunks."""
        out = []
        self._ids = {}
        for position, column in self.spec.references():
            assert column.references is not None
            self._ids[position] = distinct = set(map(itemgetter(position), self.tuples))
            ids = sorted(distinct)
            chunks = [ids[i : i + _ID_CHUNK] for i in range(0, len(ids), _ID_CHUNK)]
            out.append((position, column.references, chunks))
        return out

    def settle(self, found: dict[int, set[int]] | None) -> None:
        """Apply the foreign-key verdict (``found``: the existing ids, per tuple position;
        None when all exist), then raise :class:`InvalidRows` or keep the rejected rows, per
        ``on_invalid``."""
        missing = {}
        if found is not None:
            for position, column in self.spec.references():
                ids = self._ids.get(position, set()) - found.get(position, set())
                if ids:
                    missing[position] = (column, ids)
        if missing:
            self._reject_missing(missing)
        if self.rejected and self.on_invalid == "raise":
            raise InvalidRows(self.spec.table, self.total, self.rejected)

    def _reject_missing(self, missing: dict[int, tuple[_Column, set[int]]]) -> None:
        # Rare: map each kept tuple back to its input index, then move the rows that point
        # at missing parents to the rejected ones (merged in input order).
        taken = {r.index for r in self.rejected}
        indices = (i for i in range(self.total) if i not in taken)
        keep: list[_Row] = []
        newly: list[RejectedRow] = []
        table = self.spec.table
        for index, values in zip(indices, self.tuples, strict=True):
            errors = tuple(
                FieldError(
                    index,
                    column.name,
                    f"{column.references} id {values[position]} does not exist "
                    f"(fk_{table}_{column.name}_{column.references})",
                )
                for position, (column, ids) in missing.items()
                if values[position] in ids
            )
            if errors:
                newly.append(RejectedRow(index, self.rows[index], errors))
            else:
                keep.append(values)
        self.tuples = keep
        self.rejected = sorted([*self.rejected, *newly], key=lambda r: r.index)

    def batches(self) -> Iterator[list[_Row]]:
        tuples, size = self.tuples, self.size
        if len(tuples) <= size:
            if tuples:
                yield tuples
            return
        for start in range(0, len(tuples), size):
            yield tuples[start : start + size]

    @property
    def batch_count(self) -> int:
        return -(-len(self.tuples) // self.size)

    def sqlite_statements(self, max_params: int) -> Iterator[tuple[str, list[_Row]]]:
        """Per batch, the SQLite executemany calls: one multi-row INSERT (``VALUES (...),
        (...)``, :data:`_VALUES_ROWS` rows or as many as ``max_params`` allows) executed over
        the batch's full groups, then one INSERT of the rest. A statement step per group
        instead of one per row: the per-row work left is binding the values."""
        group = max(1, min(_VALUES_ROWS, max_params // len(self.spec.targets)))
        flatten = chain.from_iterable
        for batch in self.batches():
            full = len(batch) - len(batch) % group
            if full:
                params = [tuple(flatten(batch[i : i + group])) for i in range(0, full, group)]
                yield self.spec.values_sql(group, keep=True), params
            if full < len(batch):
                yield self.spec.values_sql(len(batch) - full), [tuple(flatten(batch[full:]))]

    def refused(self, exc: BaseException) -> IngestRefused:
        return IngestRefused(self.spec.table, len(self.tuples), exc)

    def result(self, batches: int) -> IngestResult:
        return IngestResult(self.spec.table, len(self.tuples), batches, tuple(self.rejected))


# --- async --------------------------------------------------------------------------------


async def insert_ticks(
    conn: AsyncConnection,
    rows: Iterable[Mapping[str, Any]],
    *,
    on_invalid: OnInvalid = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> IngestResult:
    """Insert ticks into ``market_data``: validate every row, then COPY / executemany.

    ``rows``: mappings with ``instrument_id``, ``timestamp``, ``price`` and optionally
    ``bid``, ``ask``, ``open_price``, ``high_price``, ``low_price``, ``volume``.

    ``on_invalid="raise"`` (default): any bad row refuses the call, :class:`InvalidRows`
    lists them all (input index from 0, field, reason) and nothing is written.
    ``on_invalid="skip"``: the valid rows are written, the others come back in
    :attr:`IngestResult.rejected`.

    The call is atomic: inside the caller's transaction it runs under a SAVEPOINT (the caller
    commits); on a connection outside a transaction it begins and commits its own. If the
    database refuses a validated row, that SAVEPOINT / transaction is rolled back and
    :class:`IngestRefused` is raised. ``batch_size`` rows go into each COPY (PostgreSQL,
    asyncpg ``copy_records_to_table``) or executemany (SQLite). See docs/ingest.md.
    """
    return await _insert(conn, TICKS, rows, on_invalid, batch_size)


async def insert_alerts(
    conn: AsyncConnection,
    rows: Iterable[Mapping[str, Any]],
    *,
    on_invalid: OnInvalid = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> IngestResult:
    """Insert alert logs into ``alert_logs``; semantics as :func:`insert_ticks`.

    ``rows``: mappings with ``rule_id``, ``instrument_id``, ``timestamp``,
    ``trigger_value``, ``threshold_value``, ``severity`` and optionally ``status`` (default
    ``"triggered"``), ``message``, ``acknowledged_at``, ``acknowledged_by``. Both the rule
    and the instrument must exist (they are not checked against each other: the schema does
    not tie them).
    """
    return await _insert(conn, ALERTS, rows, on_invalid, batch_size)


async def _insert(
    conn: AsyncConnection, spec: _Spec, rows: Iterable[Any], on_invalid: str, size: int
) -> IngestResult:
    call = _Call(spec, rows, conn.dialect, on_invalid, size)
    if call.nothing_to_do:
        return call.result(0)
    if call.sqlite:
        return await _aiosqlite(conn, call)
    if conn.dialect.driver != "asyncpg":
        raise ValueError(f"unsupported async driver {conn.dialect.driver!r}: asyncpg only")
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if conn.in_transaction():
        # SQLAlchemy's SAVEPOINT: it also starts the asyncpg transaction, which SQLAlchemy
        # begins lazily, so the COPY runs inside the caller's transaction.
        async with conn.begin_nested():
            return call.result(await _asyncpg_write(raw, call))
    if raw.is_in_transaction():
        # SQLAlchemy is outside a transaction but its asyncpg adapter has begun one (the
        # schema guard's read at checkout does): SQLAlchemy's commit is the one that ends it.
        async with conn.begin():
            return call.result(await _asyncpg_write(raw, call))
    # Otherwise a transaction of the call's own, on the driver connection: its BEGIN travels
    # with the parent check, so the call costs the round trips of the bare COPY (BEGIN, COPY,
    # COMMIT). Each more is about 1 ms here, 5 % of a 1,000-tick call; SQLAlchemy's begin /
    # commit as much again.
    try:
        written = await _asyncpg_write(raw, call, begin="BEGIN")
        await raw.execute("COMMIT")
    except BaseException:
        if raw.is_in_transaction():
            await raw.execute("ROLLBACK")
        raise
    return call.result(written)


async def _asyncpg_write(raw: Any, call: _Call, begin: str = "") -> int:
    """PostgreSQL, on the asyncpg connection, in a transaction (``begin`` starts it): the
    parent check, then the COPYs; the number of batches written.

    The check is one statement sent with ``begin`` in one message: it locks every referenced
    parent (FOR KEY SHARE) and its command tag, ``SELECT <n>``, counts the ones found. Only
    when some are missing does a second query say which (the ids are validated ints, so
    they are written into the statement as an array literal)."""
    references = call.references()
    checks = [
        f"p{position} AS (SELECT id FROM {parent} WHERE id = ANY("
        f"'{{{','.join(map(str, chain.from_iterable(chunks)))}}}'::integer[]) FOR KEY SHARE)"
        for position, parent, chunks in references
    ]
    union = " UNION ALL ".join(f"SELECT id FROM p{position}" for position, _, _ in references)
    check = f"WITH {', '.join(checks)} {union}"
    status = await raw.execute(f"{begin}; {check}" if begin else check)
    expected = sum(len(chunk) for _, _, chunks in references for chunk in chunks)
    found: dict[int, set[int]] | None = None  # None: all of them
    if int(status.rpartition(" ")[2]) != expected:
        found = {}
        for position, parent, chunks in references:
            query = _pg_exists(parent, "$1")
            for chunk in chunks:
                records = await raw.fetch(query, chunk)
                found.setdefault(position, set()).update(r[0] for r in records)
    call.settle(found)
    written = 0
    try:
        for batch in call.batches():
            await raw.copy_records_to_table(
                call.spec.table, records=batch, columns=call.spec.targets
            )
            written += 1
    except Exception as exc:
        raise call.refused(exc) from exc
    return written


async def _aiosqlite(conn: AsyncConnection, call: _Call) -> IngestResult:
    """SQLite, async: :func:`_sqlite_write` in aiosqlite's worker thread, in one hop.

    aiosqlite runs each call on its connection in a worker thread; a statement at a time,
    BEGIN, the parent query, the executemany and COMMIT would cost four thread round trips
    (20 to 50 us each, about 4 % of a 1,000-row call); SQLAlchemy's own begin / execute /
    commit about 0.5 ms more. ``Connection._execute``, the (private) method every aiosqlite
    call goes through to reach that thread, takes them all in one trip.
    """
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    run_in_worker = getattr(raw, "_execute", None)
    if run_in_worker is None:  # pragma: no cover - an aiosqlite without it
        raise RuntimeError(f"{type(raw).__name__} has no _execute(): see docs/ingest.md")
    written: int = await run_in_worker(_sqlite_write, raw._conn, call, conn.in_transaction())
    return call.result(written)


def _sqlite_write(dbapi: Any, call: _Call, nested: bool) -> int:
    """SQLite, on the ``sqlite3`` connection: the parent check and the INSERTs in one
    transaction (or a SAVEPOINT when ``nested``); the number of batches written.

    Outside a transaction the driver connection is in autocommit (the application's engine
    begins with an explicit BEGIN, see marketdata.db), so BEGIN / COMMIT here are the whole
    transaction; inside one (``nested``), a SAVEPOINT nests in it.
    """
    rollback: tuple[str, ...]
    if nested:
        begin, commit = "SAVEPOINT marketdata_ingest", "RELEASE marketdata_ingest"
        rollback = ("ROLLBACK TO marketdata_ingest", "RELEASE marketdata_ingest")
    else:
        begin, commit, rollback = "BEGIN", "COMMIT", ("ROLLBACK",)
    dbapi.execute(begin)
    try:
        found: dict[int, set[int]] = {}
        for position, parent, chunks in call.references():
            for chunk in chunks:
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT id FROM {parent} WHERE id IN ({marks})"
                found.setdefault(position, set()).update(r[0] for r in dbapi.execute(query, chunk))
        call.settle(found)
        try:
            max_params = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            for sql, params in call.sqlite_statements(max_params):
                dbapi.executemany(sql, params)
            dbapi.execute(commit)
        except Exception as exc:
            raise call.refused(exc) from exc
    except BaseException:
        if dbapi.in_transaction:  # some errors (SQLITE_FULL...) roll back by themselves
            for statement in rollback:
                dbapi.execute(statement)
        raise
    return call.batch_count


# --- sync ---------------------------------------------------------------------------------


def insert_ticks_sync(
    conn: Connection,
    rows: Iterable[Mapping[str, Any]],
    *,
    on_invalid: OnInvalid = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> IngestResult:
    """:func:`insert_ticks` on a sync connection: pysqlite (executemany) or psycopg
    (``cursor.copy``); the same validation, semantics and results.

    On SQLite, use an engine with :func:`marketdata.db.install_sqlite_listeners` (as
    ``generator.db.make_engine`` does): without it pysqlite's own transaction handling
    breaks SAVEPOINTs, and the database does not enforce foreign keys.
    """
    return _insert_sync(conn, TICKS, rows, on_invalid, batch_size)


def insert_alerts_sync(
    conn: Connection,
    rows: Iterable[Mapping[str, Any]],
    *,
    on_invalid: OnInvalid = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> IngestResult:
    """:func:`insert_alerts` on a sync connection; see :func:`insert_ticks_sync`."""
    return _insert_sync(conn, ALERTS, rows, on_invalid, batch_size)


def _insert_sync(
    conn: Connection, spec: _Spec, rows: Iterable[Any], on_invalid: str, size: int
) -> IngestResult:
    call = _Call(spec, rows, conn.dialect, on_invalid, size)
    if call.nothing_to_do:
        return call.result(0)
    if call.sqlite:
        dbapi = conn.connection.driver_connection
        return call.result(_sqlite_write(dbapi, call, conn.in_transaction()))
    if conn.dialect.driver != "psycopg":
        raise ValueError(f"unsupported sync driver {conn.dialect.driver!r}: psycopg only")
    with conn.begin_nested() if conn.in_transaction() else conn.begin():
        found: dict[int, set[int]] = {}
        for position, parent, chunks in call.references():
            query = _pg_exists(parent, "%s")
            for chunk in chunks:
                result = conn.exec_driver_sql(query, (chunk,))
                found.setdefault(position, set()).update(r[0] for r in result)
        call.settle(found)
        written = 0
        if call.tuples:
            raw = conn.connection.driver_connection
            assert raw is not None
            try:
                with raw.cursor() as cursor:
                    for batch in call.batches():
                        with cursor.copy(spec.copy_sql) as copy:
                            write_row = copy.write_row
                            for values in batch:
                                write_row(values)
                        written += 1
            except Exception as exc:
                raise call.refused(exc) from exc
    return call.result(written)
