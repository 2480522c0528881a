"""One ingest call, whatever the driver: its arguments, the validation, the foreign-key
verdict, the batches to write and the result."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from marketdata.ingest.results import (
    FieldError,
    IngestRefused,
    IngestResult,
    InvalidRows,
    RejectedRow,
)
from marketdata.ingest.validation import Column, Row, TableSpec
from marketdata.types import sqlite_timestamp_text

DEFAULT_BATCH_SIZE = 50_000  # rows per COPY / executemany: bigger is faster (docs/ingest.md)


class Call:
    """The driver-independent part of one call."""

    def __init__(
        self, spec: TableSpec, rows: Iterable[Any], dialect: sa.Dialect, on_invalid: str, size: int
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
        self.tuples, self.rejected = spec.validate(rows, self.sqlite, stamp)
        self.total = len(self.tuples) + len(self.rejected)
        self._ids: dict[int, set[int]] = {}  # distinct referenced ids, per tuple position

    @property
    def nothing_to_do(self) -> bool:
        return not self.tuples and not self.rejected

    def references(self) -> list[tuple[int, str, list[int]]]:
        """Per foreign key: the tuple position, the parent table, its distinct ids (sorted)."""
        out = []
        self._ids = {}
        for position, column in self.spec.references():
            assert column.references is not None
            self._ids[position] = distinct = set(map(itemgetter(position), self.tuples))
            out.append((position, column.references, sorted(distinct)))
        return out

    def settle(self, found: dict[int, set[int]]) -> None:
        """Apply the foreign-key verdict (``found``: the existing ids, per tuple position),
        then raise :class:`InvalidRows` or keep the rejected rows, per ``on_invalid``."""
        missing = {}
        for position, column in self.spec.references():
            ids = self._ids.get(position, set()) - found.get(position, set())
            if ids:
                missing[position] = (column, ids)
        if missing:
            self._reject_missing(missing)
        if self.rejected and self.on_invalid == "raise":
            raise InvalidRows(self.spec.table, self.total, self.rejected)

    def _reject_missing(self, missing: dict[int, tuple[Column, set[int]]]) -> None:
        # Rare: map each kept tuple back to its input index, then move the rows that point
        # at missing parents to the rejected ones (merged in input order).
        taken = {r.index for r in self.rejected}
        indices = (i for i in range(self.total) if i not in taken)
        keep: list[Row] = []
        newly: list[RejectedRow] = []
        for index, values in zip(indices, self.tuples, strict=True):
            errors = tuple(
                FieldError(
                    index,
                    column.name,
                    f"{column.references} id {values[position]} does not exist "
                    f"({column.constraint})",
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

    def batches(self) -> Iterator[list[Row]]:
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

    def refused(self, exc: BaseException) -> IngestRefused:
        return IngestRefused(self.spec.table, len(self.tuples), exc)

    def result(self, batches: int) -> IngestResult:
        return IngestResult(self.spec.table, len(self.tuples), batches, tuple(self.rejected))
