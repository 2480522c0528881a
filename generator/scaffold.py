"""``schemagen init``: a new project's folders, Alembic environment, configuration and CI job.

Everything comes from the package (templates/init, shipped as generator/templates/init), so
the env.py a new project gets is the one this repository runs. Nothing existing is ever
overwritten: one file in the way and nothing is written at all.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import jinja2

from generator.config import CONFIG_FILE, PYPROJECT, ConfigError, parse
from generator.resources import TEMPLATES_DIR

INIT_DIR = TEMPLATES_DIR / "init"
SCHEMA_NAME = "change.schema.json"


class InitError(Exception):
    """Something in the way (exit code 2); the message names it."""


@dataclass(frozen=True)
class Plan:
    root: Path
    files: dict[str, str]  # path relative to root -> text


def version() -> str:
    try:
        return metadata.version("schemagen")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _render(name: str, **values: str) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(INIT_DIR)),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return env.get_template(name).render(**values)


def env_py() -> str:
    """The Alembic environment every project runs (this repository's is a copy of it)."""
    return (INIT_DIR / "env.py").read_text(encoding="utf-8")


def script_mako() -> str:
    return (INIT_DIR / "script.py.mako").read_text(encoding="utf-8")


def alembic_ini(output: str) -> str:
    return _render("alembic.ini.j2", output=output)


def config_toml(changes: str, output: str) -> str:
    return _render("schemagen.toml.j2", changes=changes, output=output)


def ci_workflow() -> str:
    return _render("schemagen.yml.j2", version=version())


def plan(directory: Path, changes: str, output: str, schema_json: str) -> Plan:
    root = directory.resolve()
    text = config_toml(changes, output)
    try:  # the same checks as reading it back: a bad --changes/--output fails here
        parse(root, root / CONFIG_FILE, tomllib.loads(text))
    except ConfigError as exc:
        raise InitError(str(exc).replace(f"{root / CONFIG_FILE}: ", "")) from exc
    files = {
        CONFIG_FILE: text,
        f"{changes}/{SCHEMA_NAME}": schema_json,
        f"{output}/env.py": env_py(),
        f"{output}/script.py.mako": script_mako(),
        "alembic.ini": alembic_ini(output),
        ".github/workflows/schemagen.yml": ci_workflow(),
    }
    return Plan(root, files)


def in_the_way(p: Plan) -> list[str]:
    """Every existing file the plan would overwrite, and a configuration already there."""
    problems = [path for path in p.files if (p.root / path).exists()]
    pyproject = p.root / PYPROJECT
    if pyproject.is_file() and "[tool.schemagen" in pyproject.read_text(encoding="utf-8"):
        problems.append(f"{PYPROJECT} ([tool.schemagen] configures schemagen already)")
    return problems


def write(p: Plan) -> list[str]:
    problems = in_the_way(p)
    if problems:
        raise InitError(
            f"refusing to overwrite {', '.join(problems)} in {p.root}; nothing was written"
        )
    for path, text in p.files.items():
        target = p.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as fh:  # "x": never over a file
            fh.write(text)
    return list(p.files)
