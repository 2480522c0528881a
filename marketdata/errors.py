"""Domain errors of the market-data layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class MarketDataError(Exception):
    """Base class of the errors this package raises on purpose."""


class ParentHasChildren(MarketDataError):
    """A parent row cannot be deleted: rows of other tables still reference it.

    Every foreign key of the schema is ``ON DELETE RESTRICT`` (revision 0004): deleting an
    instrument or an alert rule never deletes, nor orphans, its rules, ticks or alert logs.
    Soft-deleted children count too: they are still rows, and the database refuses the
    delete while they exist.

    ``child_tables`` lists every table with referencing rows (sorted), ``constraints`` the
    foreign keys concerned; ``child_table`` is the first of them.
    """

    def __init__(
        self,
        parent_table: str,
        parent_key: Mapping[str, Any],
        child_tables: Sequence[str],
        constraints: Sequence[str] = (),
    ) -> None:
        if not child_tables:
            raise ValueError("ParentHasChildren needs at least one child table")
        self.parent_table = parent_table
        self.parent_key = dict(parent_key)
        self.child_tables = tuple(child_tables)
        self.constraints = tuple(constraints)
        key = ", ".join(f"{k}={v!r}" for k, v in self.parent_key.items())
        children = ", ".join(self.child_tables)
        via = f" through {', '.join(self.constraints)}" if self.constraints else ""
        super().__init__(
            f"cannot delete {parent_table} row ({key}): rows of {children} still reference "
            f"it{via} (ON DELETE RESTRICT; soft-deleted rows count too). Delete or reassign "
            "those rows first."
        )

    @property
    def child_table(self) -> str:
        return self.child_tables[0]
