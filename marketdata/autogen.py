"""Compare the models with a live database the way ``alembic revision --autogenerate`` does.

Alembic compares types and server defaults well on both dialects, with one gap on SQLite:
SQLite has no identity columns. SQLAlchemy emits nothing for ``Identity()`` there (an
``INTEGER PRIMARY KEY`` is the rowid and numbers itself), and reflection reports no
default, but Alembic's SQLite implementation still compares the two and reports
``Identity()`` as a server default to add on every identity primary key. The
:func:`compare_server_default` hook below answers "no difference" for exactly that case
(an ``Identity`` in the models, nothing reflected, on SQLite, on an INTEGER primary key)
and hands every other column back to Alembic's own comparison. The hook is given to
SQLite only: with a reflected PostgreSQL identity column, Alembic (1.20) fails inside its
hook dispatch before calling it (it reads ``.arg`` of the reflected ``Identity``), and
PostgreSQL needs no help anyway.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, Identity, MetaData


def compare_server_default(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Alembic's ``compare_server_default`` hook: False for SQLite's implicit identity."""
    if (
        context.dialect.name == "sqlite"
        and isinstance(metadata_default, Identity)
        and inspected_default is None
        and metadata_column.primary_key
        and inspected_column.primary_key
        and inspected_column.type.compile(dialect=context.dialect) == "INTEGER"
    ):
        return False
    return None  # Alembic's own comparison decides


def compare_options(dialect_name: str) -> dict[str, Any]:
    """``MigrationContext`` options comparing types and server defaults on ``dialect_name``."""
    from generator.models import types_differ  # a range check's domain as its base type

    hook = compare_server_default if dialect_name == "sqlite" else True
    return {"compare_type": types_differ, "compare_server_default": hook}


def schema_differences(conn: Connection, metadata: MetaData | None = None) -> list[Any]:
    """What autogenerate would change to make ``conn``'s schema match the models."""
    if metadata is None:
        from marketdata.base import Base

        metadata = Base.metadata
    context = MigrationContext.configure(conn, opts=compare_options(conn.dialect.name))
    return list(compare_metadata(context, metadata))
