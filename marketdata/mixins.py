"""TimestampMixin: created_at / updated_at columns kept by both the ORM and the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
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
