"""Where a project is and how it is set up: ``[tool.schemagen]`` in ``pyproject.toml``, or
``schemagen.toml`` (the same keys at its top level).

A project is found by walking up from the working directory (or ``--root``): the first
directory holding a ``schemagen.toml``, a ``pyproject.toml`` with a ``[tool.schemagen]``
table, or both ``changes/`` and ``generated_migrations/`` (a project laid out with the
defaults and no configuration). Outside a project nothing runs: the tool never falls back to
a directory of its own, so it never writes into its installation.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.conventions import DEFAULT, PLACEHOLDERS, Conventions, template_problem

CONFIG_FILE = "schemagen.toml"
PYPROJECT = "pyproject.toml"
DIALECTS = ("postgresql", "sqlite")
METADATA_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
KEYS = (
    "changes",
    "output",
    "dialects",
    "url",
    "metadata",
    "soft_delete_column",
    "version_table",
    "foreign_tables",
    "naming",
)
# A table name, or a glob of them: ``*`` any run of characters, ``?`` one character.
FOREIGN_TABLE_PATTERN = r"[A-Za-z0-9_*?]{1,63}"


class ConfigError(Exception):
    """No project here, or a configuration that cannot be used (exit code 2)."""


@dataclass(frozen=True)
class Project:
    root: Path
    config_file: Path | None = None  # None: found by its layout, every setting a default
    changes: str = "changes"
    output: str = "generated_migrations"
    dialects: tuple[str, ...] = DIALECTS
    url: str | None = None
    # "package.module:attribute" of the application's SQLAlchemy MetaData, for env.py's
    # target_metadata and for comparing models with the specs.
    metadata: str | None = None
    # Where the database's revision is recorded: alembic_version, or a table of the tool's own
    # when another owner's Alembic history keeps alembic_version (generator.version_table).
    version_table: str = "alembic_version"
    # Tables of other owners in the same schema (names or globs): the checks, inspect and the
    # model comparisons leave them out rather than expect only the declared tables.
    foreign_tables: tuple[str, ...] = ()
    conventions: Conventions = field(default=DEFAULT)

    def is_foreign(self, table: str) -> bool:
        """Whether ``table`` is another owner's (``foreign_tables``)."""
        return is_foreign(table, self.foreign_tables)

    @property
    def changes_dir(self) -> Path:
        return self.root / self.changes

    @property
    def output_dir(self) -> Path:
        return self.root / self.output

    @property
    def config_label(self) -> str:
        if self.config_file is None:
            return "no configuration file"
        table = "[tool.schemagen] in " if self.config_file.name == PYPROJECT else ""
        return table + self.config_file.name


def is_foreign(table: str, globs: tuple[str, ...]) -> bool:
    """Whether ``table`` matches one of the globs (case-sensitive, as PostgreSQL's names)."""
    return any(fnmatch.fnmatchcase(table, glob) for glob in globs)


def like_pattern(glob: str) -> str:
    """A glob of ``foreign_tables`` as a LIKE pattern with ``\\`` as its escape."""
    return glob.replace("_", "\\_").replace("*", "%").replace("?", "_")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _settings_at(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The configuration file in ``directory`` and its schemagen settings, if it has one."""
    own = directory / CONFIG_FILE
    pyproject = directory / PYPROJECT
    found: list[tuple[Path, dict[str, Any]]] = []
    if own.is_file():
        found.append((own, _read_toml(own)))
    # Another project's pyproject.toml above this one is none of our business, even broken.
    if pyproject.is_file() and "schemagen" in _text(pyproject):
        tool = _read_toml(pyproject).get("tool", {})
        if isinstance(tool, dict) and "schemagen" in tool:
            settings = tool["schemagen"]
            if not isinstance(settings, dict):
                raise ConfigError(f"{pyproject}: tool.schemagen must be a table")
            found.append((pyproject, settings))
    if len(found) > 1:
        raise ConfigError(
            f"{directory}: both {CONFIG_FILE} and [tool.schemagen] in {PYPROJECT} configure "
            "schemagen; keep one"
        )
    return found[0] if found else None


def _string(path: Path, key: str, value: Any, pattern: str | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {key}: expected a non-empty string, got {value!r}")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ConfigError(f"{path}: {key}: {value!r} is not of the form package.module:attribute")
    return value


def _relative_dir(path: Path, key: str, value: Any) -> str:
    text = _string(path, key, value)
    if Path(text).is_absolute() or ".." in Path(text).parts:
        raise ConfigError(f"{path}: {key}: {text!r} must be a path inside the project")
    return Path(text).as_posix()


def parse(root: Path, config_file: Path | None, settings: dict[str, Any]) -> Project:
    """Check every key of the settings; the first problem is a ConfigError naming file and key."""
    where = config_file or root
    prefix = "tool.schemagen." if config_file is not None and config_file.name == PYPROJECT else ""
    for key in settings:
        if key not in KEYS:
            raise ConfigError(
                f"{where}: {prefix}{key}: unknown setting (expected one of {', '.join(KEYS)})"
            )
    values: dict[str, Any] = {}
    for key in ("changes", "output"):
        if key in settings:
            values[key] = _relative_dir(where, prefix + key, settings[key])
    if values.get("changes", "changes") == values.get("output", "generated_migrations"):
        raise ConfigError(f"{where}: {prefix}changes and {prefix}output must differ")
    if "dialects" in settings:
        dialects = settings["dialects"]
        if (
            not isinstance(dialects, list)
            or not dialects
            or any(d not in DIALECTS for d in dialects)
        ):
            raise ConfigError(
                f"{where}: {prefix}dialects: expected a non-empty list of "
                f"{' and '.join(repr(d) for d in DIALECTS)}, got {dialects!r}"
            )
        values["dialects"] = tuple(d for d in DIALECTS if d in dialects)
    if "url" in settings:
        values["url"] = _string(where, prefix + "url", settings["url"])
    if "metadata" in settings:
        values["metadata"] = _string(
            where, prefix + "metadata", settings["metadata"], METADATA_PATTERN
        )
    if "version_table" in settings:
        table = settings["version_table"]
        if not isinstance(table, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", table):
            raise ConfigError(
                f"{where}: {prefix}version_table: expected a table name, got {table!r}"
            )
        values["version_table"] = table
    if "foreign_tables" in settings:
        globs = settings["foreign_tables"]
        if not isinstance(globs, list) or any(
            not isinstance(g, str) or not re.fullmatch(FOREIGN_TABLE_PATTERN, g) for g in globs
        ):
            raise ConfigError(
                f"{where}: {prefix}foreign_tables: expected a list of table names or globs "
                f'(letters, digits, _, * and ?; e.g. ["optuna_*"]), got {globs!r}'
            )
        values["foreign_tables"] = tuple(globs)
    conventions: dict[str, Any] = {}
    if "soft_delete_column" in settings:
        column = settings["soft_delete_column"]
        if column == "":
            conventions["soft_delete_column"] = None  # no soft delete in this project
        elif not isinstance(column, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", column):
            raise ConfigError(
                f"{where}: {prefix}soft_delete_column: expected a column name "
                f'(or "" for none), got {column!r}'
            )
        else:
            conventions["soft_delete_column"] = column
    naming = settings.get("naming", {})
    if not isinstance(naming, dict):
        raise ConfigError(f"{where}: {prefix}naming must be a table")
    for key, template in naming.items():
        name = f"{prefix}naming.{key}"
        if key not in PLACEHOLDERS:
            raise ConfigError(
                f"{where}: {name}: unknown constraint kind (expected one of "
                f"{', '.join(PLACEHOLDERS)})"
            )
        problem = template_problem(key, _string(where, name, template))
        if problem:
            raise ConfigError(f"{where}: {name}: {template!r}: {problem}")
        conventions[key] = template
    return Project(root, config_file, conventions=Conventions(**conventions), **values)


def find_project(start: Path | None = None) -> Project:
    """The project holding ``start`` (default: the working directory); ConfigError if none.

    A ``start`` given explicitly (``--root``) that holds a ``changes/`` folder is a project
    with the default layout even before anything was generated into it.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        found = _settings_at(directory)
        if found is not None:
            return parse(directory, *found)
        changes = (directory / "changes").is_dir()
        if changes and (
            (directory / "generated_migrations").is_dir()
            or (start is not None and directory == here)
        ):
            return parse(directory, None, {})
    raise ConfigError(
        f"not in a schemagen project: no {CONFIG_FILE}, no [tool.schemagen] in {PYPROJECT} "
        f"and no changes/ with generated_migrations/ in {here} or any directory above it; "
        "run `schemagen init` to start one"
    )


def load_metadata(project: Project) -> Any:
    """The application's SQLAlchemy ``MetaData`` named by ``metadata`` in the configuration
    (``package.module:attribute``), imported with the project's root on ``sys.path``; None
    when none is configured. Only the Alembic environment and the model comparisons call
    this: the tool itself never imports an application."""
    if project.metadata is None:
        return None
    import importlib
    import sys

    from sqlalchemy import MetaData

    module_name, _, attribute = project.metadata.partition(":")
    where = f"{project.config_file or project.root}: metadata = {project.metadata!r}"
    root = str(project.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name}: {exc}") from exc
    except AttributeError as exc:
        raise ConfigError(f"{where}: {module_name} has no {attribute}: {exc}") from exc
    if not isinstance(value, MetaData):
        raise ConfigError(
            f"{where}: {attribute} is a {type(value).__name__}, not a SQLAlchemy MetaData"
        )
    return value
