"""The templates compiled ahead of the runs, as Jinja ships the mechanism: each template's
Python module written by :meth:`jinja2.Environment.compile` (``raw=True``, what
``Environment.compile_templates`` writes) and loaded with :class:`jinja2.ModuleLoader`.

Compiling the templates a history uses is a fixed cost of every run that renders (Jinja's
parsing and code generation, then Python's ``compile``): about 1.1e9 of a cold check's 13e9
instructions. ``python -m generator.precompiled`` (``scripts/setup.sh`` runs it after the
install, as it compiles the tool's modules) writes the modules into ``COMPILED_DIR``, in the
environment the tool is installed in, and their bytecode beside them; a run loads a
template's module instead of compiling it.

A module is found by a key of everything its code depends on: the template's name and
source, Jinja's version and the environment's settings that reach the compiled code
(:func:`signature`). A run reads each template's source as ever and computes its key: a
template edited since (or an environment or Jinja changed) has no module of that key, and is
compiled from its source as without precompiled templates; a module is never trusted for any
other source. The folder is the installed tool's, like its bytecode, not a project's cache:
``--no-cache`` does not concern it, and removing it is always safe (every template is then
compiled by each run).
"""

from __future__ import annotations

import compileall
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import jinja2

# The environment's (a virtualenv's) data folder, as a wheel's data files: not the package, whose
# sources are the tool's fingerprint (generator.cache), nor a project's cache, nor the home folder.
COMPILED_DIR = Path(sys.prefix) / "share" / "schemagen" / "compiled_templates"


def signature(env: jinja2.Environment) -> str:
    """What of the environment reaches a template's compiled code (its syntax, the
    extensions, autoescaping, the optimizer), with Jinja's version. A setting whose repr is
    not stable (an autoescape function) makes a key no module has: compiled from source."""
    settings = (
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        sorted(env.extensions),
        env.optimized,
        env.autoescape,
        env.is_async,
    )
    return f"jinja2 {jinja2.__version__} {settings!r}"


def module_key(env: jinja2.Environment, name: str, source: str) -> str:
    """The name :class:`jinja2.ModuleLoader` looks the template's module up by."""
    digest = hashlib.sha256(f"{signature(env)}\n{name}\n{source}".encode()).hexdigest()
    return f"{name}@{digest}"


class Loader(jinja2.FileSystemLoader):
    """A :class:`jinja2.FileSystemLoader` that takes a template's module from ``compiled``
    when one was written for its present source, else compiles the source."""

    def __init__(self, searchpath: str | os.PathLike[str], compiled: Path = COMPILED_DIR):
        super().__init__(searchpath)
        self._modules = jinja2.ModuleLoader(compiled) if compiled.is_dir() else None

    def load(
        self,
        environment: jinja2.Environment,
        name: str,
        globals: MutableMapping[str, Any] | None = None,
    ) -> jinja2.Template:
        if self._modules is not None:
            source, _, _ = self.get_source(environment, name)
            try:
                return self._modules.load(
                    environment, module_key(environment, name, source), globals
                )
            except jinja2.TemplateNotFound:
                pass  # not compiled ahead, or for another source
        return super().load(environment, name, globals)


def build(
    env: jinja2.Environment,
    target: Path = COMPILED_DIR,
    only: Callable[[str], bool] | None = None,
) -> int:
    """Compile every template of ``env`` (those ``only`` keeps) into ``target``, replacing
    what it held, with the modules' bytecode; returns how many were written."""
    assert env.loader is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        count = 0
        for name in env.list_templates(filter_func=only):
            source, filename, _ = env.loader.get_source(env, name)
            code = env.compile(source, name, filename, raw=True, defer_init=True)
            module = jinja2.ModuleLoader.get_module_filename(module_key(env, name, source))
            (fresh / module).write_text(code, encoding="utf-8")
            count += 1
        # the bytecode, as the tool's own modules have it (a run then unmarshals, no compile)
        if not compileall.compile_dir(str(fresh), quiet=1):
            raise RuntimeError(f"could not compile the templates' modules in {fresh}")
        fresh.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        fresh.rename(target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return count


def main() -> None:
    from generator import render

    count = build(render.make_env(), only=render.is_rendering_template)
    print(f"{count} templates compiled into {COMPILED_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
