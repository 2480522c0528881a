"""`schemagen check`: the application's models (``metadata`` in the configuration) against the
schema the specs build at head.

The specs' head is built for real: a scratch database (a temporary SQLite file, or the
``--url`` given) is upgraded to head by the generated migrations, and Alembic's autogenerate
comparison (types included) lists what differs between it and the models.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from generator import migrate, version_table
from generator.config import Project, load_metadata


def _differences(conn: Connection, metadata: Any) -> list[str]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "version_table": version_table.get()}
    )
    script = produce_migrations(context, metadata)
    if script.upgrade_ops is None or script.upgrade_ops.is_empty():
        return []
    code = render_python_code(script.upgrade_ops, render_as_batch=False)
    return [line for line in code.splitlines() if line.strip() and not line.startswith("#")]


def differences(project: Project, scratch_url: str | None = None) -> list[str]:
    """The operations that would make the specs' head match the models (Alembic's rendering);
    empty when they agree. ConfigError when no metadata is configured or importable."""
    metadata = load_metadata(project)
    if metadata is None:
        from generator.config import ConfigError

        raise ConfigError(
            f'no models to compare with: set metadata = "package.module:attribute" in '
            f"{project.config_file or project.root / 'schemagen.toml'}"
        )
    quiet = logging.getLogger("schemagen")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = sa.make_url(scratch_url or f"sqlite:///{Path(tmp) / 'head.db'}")
            migrate.upgrade(project.output_dir, url, "head")
            return migrate.with_connection(url, lambda c: _differences(c, metadata))
    finally:
        quiet.setLevel(level)
