"""Row validation of the bulk ingest, derived from the models' tables.

Each target table is a :class:`TableSpec` built from its model's ``__table__``: the input
columns (every column but the ones the database or the ingest sets), their kind from the
column type, NOT NULL, the Python default, the ``varchar(n)`` length, the foreign key and the
range CHECK. Nothing about a column is declared here a second time.

Two checks produce the same result:

* :meth:`TableSpec.check_row`, the reference: one row, field by field, every problem named;
* :meth:`TableSpec.validate`, the one a call runs: column by column over the whole input,
  with the common case (plain ``dict`` rows of ``float`` prices, UTC datetimes, ``int`` ids,
  short printable strings) checked by C-level built-ins over each column (``set(map(type,
  ...))``, ``min`` / ``max``, ``sum`` for NaN); only the rows with another value go through
  :meth:`TableSpec.check_row`, which decides. A test runs both on thousands of random rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, Literal

import sqlalchemy as sa

from marketdata.ingest.results import FieldError, RejectedRow
from marketdata.models import AlertLog, MarketData
from marketdata.types import PRICE_LIMIT, Price, UTCDateTime, sqlite_timestamp_text

Kind = Literal["int32", "int64", "price", "timestamp", "text"]
Row = tuple[Any, ...]
_Converted = tuple[Any, str | None]  # (value, reason it is refused or None)

_BOUNDS: dict[str, tuple[int, int]] = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
_SQL_INT = {"int32": "INTEGER", "int64": "BIGINT"}
_LOW, _HIGH = -float(PRICE_LIMIT), float(PRICE_LIMIT)
# Set by the database or by the ingest, never taken from an input row.
NOT_ACCEPTED = ("id", "created_at", "updated_at", "deleted_at")
AUDIT = ("created_at", "updated_at")  # stamped with the time of the call
_NONE = type(None)
_tzinfo = attrgetter("tzinfo")


@dataclass(frozen=True, slots=True)
class Column:
    """One input column, as the model declares it."""

    name: str
    kind: Kind
    required: bool = False
    max_length: int | None = None  # varchar(n); None: text
    default: Any = None  # used when the field is absent (not when it is None)
    references: str | None = None  # foreign key: the parent table
    constraint: str | None = None  # the foreign key's or the range CHECK's name

    @property
    def nullable(self) -> bool:
        return not self.required and self.default is None

    # --- the reference check, one value -------------------------------------------------

    def convert(self, value: Any, as_text: bool) -> _Converted:
        """A present, non-None value: its driver form, or why it is refused."""
        if self.kind == "price":
            return _check_price(value, self.constraint or "")
        if self.kind == "timestamp":
            return _check_timestamp(value, as_text)
        if self.kind == "text":
            return _check_text(value, self.max_length)
        return _check_int(value, _BOUNDS[self.kind], _SQL_INT[self.kind])

    # --- the common case, a whole column at once -----------------------------------------

    def all_plain(self, values: Sequence[Any]) -> bool:
        """True when every value is of the common form :meth:`plain` takes (checked by
        built-ins over the whole column)."""
        types = set(map(type, values))
        present = values
        if _NONE in types:
            if not self.nullable:
                return False
            types.discard(_NONE)
            present = list(filter(None, values))  # zeros and "" go too: within every bound
        if not present:
            return True
        kind = self.kind
        if kind == "price":
            return (
                types == {float}
                and math.isfinite(sum(present))  # no NaN, no infinity
                and min(present) > _LOW
                and max(present) < _HIGH
            )
        if kind == "timestamp":
            return types == {datetime} and set(map(_tzinfo, present)) == {UTC}
        if kind == "text":
            return (
                types == {str}
                and (self.max_length is None or max(map(len, present)) <= self.max_length)
                and all(map(str.isprintable, present))
            )
        low, high = _BOUNDS[kind]
        return types == {int} and low <= min(present) and max(present) <= high

    def plain(self, value: Any) -> bool:
        """One value of the common form (the rows of the others go to the reference check):
        exactly what :meth:`all_plain` takes, a value at a time."""
        if value is None:
            return self.nullable
        kind = self.kind
        if kind == "price":
            return type(value) is float and _LOW < value < _HIGH  # NaN fails both
        if kind == "timestamp":
            return type(value) is datetime and value.tzinfo is UTC
        if kind == "text":
            return (
                type(value) is str
                and (self.max_length is None or len(value) <= self.max_length)
                and value.isprintable()
            )
        low, high = _BOUNDS[kind]
        return type(value) is int and low <= value <= high


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


# sqlite_timestamp_text's text from lookup tables: isoformat costs about 0.7 us a value
_HOURS_MINUTES = tuple(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_SECONDS = tuple(f"{s:02d}." for s in range(60))


_BAD = object()  # timestamp_texts' mark of a value that is not a UTC datetime


def timestamp_texts(values: Sequence[Any], nullable: bool) -> tuple[list[Any], list[int]]:
    """The UTC datetimes of a column as :func:`sqlite_timestamp_text` writes them, three
    times faster, and the positions of the values that are not of that form (None counts as
    one unless ``nullable``): checked and converted in one pass."""
    days: dict[int, str] = {}
    hm, ss, dt, utc = _HOURS_MINUTES, _SECONDS, datetime, UTC
    out: list[Any] = []
    append = out.append
    for ts in values:
        if type(ts) is not dt or ts.tzinfo is not utc:
            append(None if ts is None and nullable else _BAD)
            continue
        day = days.get(ts.toordinal())
        if day is None:
            day = days[ts.toordinal()] = f"{ts.date().isoformat()} "
        micro = ts.microsecond
        digits = "%06d" % micro if micro else "000000"  # noqa: UP031 (faster)
        append(f"{day}{hm[ts.hour * 60 + ts.minute]}{ss[ts.second]}{digits}")
    bad = [i for i, text in enumerate(out) if text is _BAD] if _BAD in out else []
    return out, bad


# --- the tables ---------------------------------------------------------------------------


def _kind(column: sa.Column[Any]) -> tuple[Kind, int | None]:
    type_ = column.type
    if isinstance(type_, Price):
        return "price", None
    if isinstance(type_, UTCDateTime):
        return "timestamp", None
    if isinstance(type_, sa.BigInteger):  # before Integer: a subclass of it
        return "int64", None
    if isinstance(type_, sa.Integer):
        return "int32", None
    if isinstance(type_, sa.String):  # Text too, without a length
        return "text", type_.length
    raise TypeError(f"{column.table.name}.{column.name}: no ingest check for {type_!r}")


def _range_check(table: sa.Table, column: str) -> str:
    """The name of the CHECK that bounds a price column (models.price_range_check)."""
    quoted = f'"{column}" '
    for constraint in table.constraints:
        if isinstance(constraint, sa.CheckConstraint) and str(constraint.sqltext).startswith(
            quoted
        ):
            return str(constraint.name)
    raise TypeError(f"{table.name}.{column}: a price column without its range CHECK")


def columns_of(table: sa.Table) -> tuple[Column, ...]:
    """The input columns of ``table``, in table order."""
    out = []
    for column in table.columns:
        if column.name in NOT_ACCEPTED:
            continue
        kind, length = _kind(column)
        default = column.default
        value = default.arg if isinstance(default, sa.ColumnDefault) and default.is_scalar else None
        references = constraint = None
        for key in column.foreign_keys:
            assert key.constraint is not None  # set once the table is built
            references, constraint = key.column.table.name, str(key.constraint.name)
        if kind == "price":
            constraint = _range_check(table, column.name)
        out.append(
            Column(
                column.name,
                kind,
                required=not column.nullable and value is None,
                max_length=length,
                default=value,
                references=references,
                constraint=constraint,
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class TableSpec:
    """One target table: its input columns (in the order of the written tuples, followed by
    ``created_at`` and ``updated_at``) and the checks of its rows."""

    table: str
    columns: tuple[Column, ...]
    by_name: dict[str, Column] = field(init=False)
    targets: tuple[str, ...] = field(init=False)
    _known: Callable[[Any], bool] = field(init=False)
    _getter: Callable[[Any], tuple[Any, ...]] = field(init=False)

    @classmethod
    def of(cls, model: type[Any]) -> TableSpec:
        table: sa.Table = model.__table__
        return cls(table.name, columns_of(table))

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen
        set_(self, "by_name", {c.name: c for c in self.columns})
        set_(self, "targets", (*(c.name for c in self.columns), *AUDIT))
        set_(self, "_known", frozenset(self.by_name).issuperset)
        set_(self, "_getter", itemgetter(*self.by_name))

    def references(self) -> Iterator[tuple[int, Column]]:
        for position, column in enumerate(self.columns):
            if column.references:
                yield position, column

    def check_row(self, index: int, row: Any, as_text: bool, now: Any) -> Row | RejectedRow:
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
                if column.nullable:
                    values.append(None)
                else:
                    errors.append(
                        FieldError(index, column.name, "is None (the column is NOT NULL)")
                    )
                continue
            converted, reason = column.convert(value, as_text)
            if reason is not None:
                errors.append(FieldError(index, column.name, reason))
            else:
                values.append(converted)
        for key in row:
            if key not in self.by_name:
                reason = (
                    "set by the database and the ingest: not accepted in input rows"
                    if key in NOT_ACCEPTED
                    else f"not a column of {self.table}"
                )
                errors.append(FieldError(index, str(key), reason))
        if errors:
            return RejectedRow(index, row, tuple(errors))
        return (*values, now, now)

    def _columns(
        self, plain: Sequence[dict[str, Any]], slow: set[int], where: list[int] | None
    ) -> list[Sequence[Any]]:
        """The values of each input column over the ``plain`` rows (absent fields: the
        column default); rows with a key that is not an input column go to ``slow``."""
        width = len(self.columns)
        if plain and sum(map(len, plain)) == width * len(plain):
            try:
                # Every row has exactly the input columns (the common case): one C call a row.
                return list(zip(*map(self._getter, plain), strict=True))
            except KeyError:
                pass  # some row has another key instead of one of them
        known = self._known
        if not all(map(known, plain)):
            unknown = (i for i, row in enumerate(plain) if not known(row))
            slow.update(unknown if where is None else (where[i] for i in unknown))
        get = dict.get
        return [list(map(get, plain, repeat(c.name), repeat(c.default))) for c in self.columns]

    def validate(
        self, rows: Sequence[Any], as_text: bool, now: Any
    ) -> tuple[list[Row], list[RejectedRow]]:
        """Every row checked: the tuples to write and the rejected rows, both in input order;
        the same as :meth:`check_row` over each row, column by column (see the module)."""
        slow: set[int] = set()
        plain: Sequence[Any] = rows
        where: list[int] | None = None  # input index of each plain row; None: all of them
        if not set(map(type, rows)) <= {dict}:
            where = [i for i, row in enumerate(rows) if type(row) is dict]
            slow.update(i for i, row in enumerate(rows) if type(row) is not dict)
            plain = [rows[i] for i in where]
        columns = self._columns(plain, slow, where)
        for n, (column, values) in enumerate(zip(self.columns, columns, strict=True)):
            bad: Iterable[int] = ()
            if as_text and column.kind == "timestamp":
                columns[n], bad = timestamp_texts(values, column.nullable)
            elif not column.all_plain(values):
                bad = (i for i, value in enumerate(values) if not column.plain(value))
            slow.update(bad if where is None else (where[i] for i in bad))
        tuples = list(zip(*columns, repeat(now), repeat(now), strict=False))
        if not slow:
            return tuples, []
        # Some rows take the reference check: merge them back in input order.
        slot = range(len(rows)) if where is None else {i: k for k, i in enumerate(where)}
        out: list[Row] = []
        rejected: list[RejectedRow] = []
        for index, row in enumerate(rows):
            if index not in slow:
                out.append(tuples[slot[index]])
                continue
            checked = self.check_row(index, row, as_text, now)
            if isinstance(checked, RejectedRow):
                rejected.append(checked)
            else:
                out.append(checked)
        return out, rejected


TICKS = TableSpec.of(MarketData)
ALERTS = TableSpec.of(AlertLog)
