"""Where the tool's own files are, without importing what uses them."""

from __future__ import annotations

from pathlib import Path


def _templates_dir() -> Path:
    """Installed from a wheel, the templates are package data (generator/templates, mapped
    from the repository's top-level templates/ by pyproject.toml); in a checkout, or an
    editable install of one, they are read where they are kept."""
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    return packaged if (packaged / "migration.py.j2").is_file() else here.parent / "templates"


TEMPLATES_DIR = _templates_dir()
