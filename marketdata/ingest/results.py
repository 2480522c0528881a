"""What an ingest call hands back: its result, the problems of bad rows, and its errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from marketdata.errors import MarketDataError

OnInvalid = Literal["raise", "skip"]
_MESSAGE_LINES = 50  # bad rows spelled out in an InvalidRows message (all are in .errors)


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
