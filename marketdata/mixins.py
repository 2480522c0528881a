"""TimestampMixin (created_at / updated_at) and SoftDeleteMixin (deleted_at) for the models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Index, text
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from marketdata.types import UTCDateTime


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class TimestampMixin:
    """Adds ``created_at`` and ``updated_at`` (aware UTC, NOT NULL) to a model.

    The Python defaults serve ORM and Core inserts; the server default serves rows written
    by anything else (raw SQL, migrations backfilling existing rows).
    """

    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(),
        nullable=False,
        default=utcnow,
        server_default=text("CURRENT_TIMESTAMP"),
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(),
        nullable=False,
        default=utcnow,
        onupdate=utcnow,
        server_default=text("CURRENT_TIMESTAMP"),
    )


def soft_delete_index(table: str) -> Index:
    """``ix_<table>_deleted_at``: partial, over soft-deleted rows only (change 0005).

    Purge and restore look for soft-deleted rows (``deleted_at IS NOT NULL``, or before a
    cutoff, which implies it); live rows, nearly all of them, stay out of the index, so an
    INSERT does not maintain it. Put it in the model's ``__table_args__``.
    """
    where = text('"deleted_at" IS NOT NULL')
    return Index(f"ix_{table}_deleted_at", "deleted_at", postgresql_where=where, sqlite_where=where)


class SoftDeleteMixin:
    """Adds ``deleted_at`` (aware UTC, NULL while the row is live).

    Its index is :func:`soft_delete_index`, partial, named ``ix_<table>_deleted_at`` as the
    migrations create it. ORM queries leave soft-deleted rows out on their own (see
    :mod:`marketdata.softdelete`); ``execution_options(include_deleted=True)`` brings them
    back. Marking and unmarking changes the object only: the row changes at the next flush.
    """

    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, default=None)

    def soft_delete(self, when: datetime | None = None) -> None:
        """Mark the row deleted (now, or at ``when``); a row already deleted keeps its mark."""
        if self.deleted_at is None:
            self.deleted_at = when if when is not None else utcnow()

    def restore(self) -> None:
        """Make a soft-deleted row live again (a live row is left as it is)."""
        self.deleted_at = None

    @hybrid_property
    def is_deleted(self) -> bool:
        """True once soft-deleted; usable in queries as ``Model.is_deleted``."""
        return self.deleted_at is not None

    @is_deleted.inplace.expression
    @classmethod
    def _is_deleted_expression(cls) -> ColumnElement[bool]:
        return cls.deleted_at.is_not(None)
