"""Render changes through the Jinja templates into ``{path: text}``; nothing is written here."""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jinja2

from generator import checks, dialects, lint, ops, plan, resume, review
from generator.files import SUM_FILE, sum_file
from generator.load import Change
from generator.plan import Unit


def _templates_dir() -> Path:
    """Installed from a wheel, the templates are package data (generator/templates, mapped
    from the repository's top-level templates/ by pyproject.toml); in a checkout, or an
    editable install of one, they are read where they are kept."""
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    return packaged if (packaged / "migration.py.j2").is_file() else here.parent / "templates"


TEMPLATES_DIR = _templates_dir()
LINE_LENGTH = 100


def _printable(text: str) -> str:
    """Escape control and other invisible characters so free text cannot break a file.

    ``str.isprintable`` is exactly "no character of category Other or Separator but the
    ASCII space": the fast path for the usual, harmless text.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def _comment(text: str, prefix: str) -> str:
    lines = [_printable(line).rstrip() for line in str(text).strip().splitlines()] or [""]
    return "\n".join(f"{prefix} {line}".rstrip() for line in lines)


def _py(value: Any) -> str:
    """A Python literal; ``repr`` of str/int/bool/None is safe to paste into source."""
    if isinstance(value, str | int | float | bool) or value is None:
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as a Python literal")


def _sqlval(value: Any, dialect: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text.isprintable():
        return dialects.sql_string(text)
    # The exact string, yet a printable line: each character _printable would escape is
    # spelled chr(n) (PostgreSQL) or char(n) (SQLite) and concatenated.
    fn = "chr" if dialect == dialects.POSTGRESQL else "char"
    parts = []
    for printable, run in itertools.groupby(text, key=str.isprintable):
        text = "".join(run)
        parts += [dialects.sql_string(text)] if printable else [f"{fn}({ord(c)})" for c in text]
    return " || ".join(parts) or "''"


# What sqlalchemy.text() would read as a bind parameter (its own pattern); `::` casts are not.
_BIND_RE = re.compile(r"(?<![:\w\\]):(?=\w)")


def _sa_text(sql: str) -> str:
    """``sa.text(...)`` source for SQL, one string literal per line for the reviewer's eye.

    Colons are escaped so that text inside string literals never becomes a bind parameter.
    """
    # keepends: a line break inside a string literal (a default's "\r\n") is kept exactly
    lines = _BIND_RE.sub(r"\\:", sql.strip()).splitlines(keepends=True) or [""]
    parts = [repr(line) for line in lines]
    return "sa.text(" + "\n".join(parts) + ")"


FILTERS: dict[str, Callable[..., Any]] = {
    "py": _py,
    "pycomment": lambda text: _comment(text, "#"),
    "sqlcomment": lambda text: _comment(text, "--"),
    "qi": dialects.quote_ident,
    "sqlstr": lambda s: dialects.sql_string(str(s)),
    "sqlval": _sqlval,
    "where_sql": dialects.where_sql,
    "sqlrow": lambda row, dialect: ", ".join(_sqlval(v, dialect) for v in row),
    "sa_type": dialects.sa_type,
    "sa_type_of": dialects.sa_type_of,
    "default_sql": lambda c, dialect: dialects.default_sql(c.default, c.type, dialect),
    "sa_text": _sa_text,
    "fk_lock_order": dialects.fk_lock_order,
    "using_sql": dialects.using_sql,
    "type_check": lambda c, dialect: dialects.type_check(c.name, c.type, dialect),
    "sqlite_batch_type": dialects.sqlite_batch_type,
    "sqlite_convert_sql": dialects.sqlite_convert_sql,
    "fk_action": lambda action: dialects.FK_ACTION_SQL[action],
    "fk_code": lambda action: dialects.PG_FK_ACTION_CODE[action],
    "ddl_type": dialects.ddl_type,
    "risk": lambda unit, dialect: unit.risk(dialect),
    "describe": review.describe,
    "mdtext": lambda text: _printable(str(text)).replace("|", "\\|").replace("<", "&lt;"),
}


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, like ``__pycache__``: a template is parsed and
    compiled again only when its source changes (each entry carries the source's checksum).

    Keyed also by the Jinja version and the environment's options, which the compiled code
    depends on; an unreadable entry is a miss and an unwritable directory is no cache.
    """

    def __init__(self, directory: Path, options: str) -> None:
        super().__init__(str(directory), "%s.jinja")
        self.options = f"{jinja2.__version__}|{options}"

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        return super().get_cache_key(f"{self.options}|{name}", filename)

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # a damaged entry: compile again (and overwrite it)
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):  # a read-only cache: compile every run
            super().dump_bytecode(bucket)


def _template_cache(options: dict[str, Any]) -> _TemplateCache | None:
    """``$SCHEMAGEN_CACHE_DIR`` (empty: none), else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    configured = os.environ.get("SCHEMAGEN_CACHE_DIR")
    if configured == "":
        return None
    try:
        if configured:
            base = Path(configured)
        else:
            xdg = os.environ.get("XDG_CACHE_HOME")
            base = (Path(xdg) if xdg else Path.home() / ".cache") / "schemagen"
        directory = base / "templates"
        directory.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # no home, or a read-only one
        return None
    return _TemplateCache(directory, repr(sorted(options.items())))


@jinja2.pass_context
def _selectattr(context: jinja2.runtime.Context, value: Any, *args: Any, **kwargs: Any) -> Any:
    """Jinja's ``selectattr``, with a fast path for ``selectattr(attr, "equalto", x)``: the
    same items, without a test call through the environment per item."""
    env = context.environment
    if len(args) == 3 and not kwargs and env.tests.get(args[1]) is operator.eq:
        getter = jinja2.filters.make_attrgetter(env, args[0])
        other = args[2]
        return (item for item in value if getter(item) == other) if value else iter(())
    return jinja2.filters.sync_do_selectattr(context, value, *args, **kwargs)


def make_env(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    options: dict[str, Any] = {
        "auto_reload": False,  # templates do not change during a run: no stat per lookup
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
        "autoescape": False,
        "extensions": ["jinja2.ext.do"],
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        bytecode_cache=_template_cache(options),
        **options,
    )
    env.filters.update(FILTERS)
    env.filters["selectattr"] = _selectattr
    env.globals["dialects"] = dialects.DIALECTS
    env.globals["table_check_cache"] = {}
    env.globals["output"] = "generated_migrations"  # the project's output folder (generate)
    env.globals["version_table"] = "alembic_version"  # the project's (generate)
    # Filled after the dict is in the globals: a group's template (recreate_table,
    # alter_table, ...) calls its steps' macros (batch(), alter(), ...) through it.
    modules: dict[str, Any] = {}
    env.globals["ops"] = modules
    modules.update(
        {kind: env.get_template(name).module for kind, name in ops.unit_templates().items()}
    )
    return env


def migration_path(change: Change) -> str:
    return f"versions/{change.name}.py"


def validation_path(change: Change, dialect: str, phase: str) -> str:
    return f"validation/{dialect}/{change.name}.{phase}.sql"


Plans = dict[str, dict[str, list[Unit]]]


def _plans(change: Change) -> Plans:
    """The units each direction runs on each dialect."""
    return {
        direction: {dialect: plan.plan(steps, schema, dialect) for dialect in dialects.DIALECTS}
        for direction, steps, schema in (
            ("upgrade", change.steps, change.before),
            ("downgrade", change.inverse_steps, change.after),
        )
    }


def _render_migration(env: jinja2.Environment, change: Change, plans: Plans) -> str:
    return env.get_template("migration.py.j2").render(
        change=change, plans=plans, resumable=resume.tolerances(change)
    )


def _render_validation(env: jinja2.Environment, change: Change, dialect: str, phase: str) -> str:
    schema, other = (
        (change.before, change.after) if phase == "pre" else (change.after, change.before)
    )
    expected = checks.expect_schema(schema, dialect, other)
    # The data checks of the side that runs before the DDL: the upgrade's from pre.sql, the
    # downgrade's from post.sql. Row counts and drift are symmetric; fits are the side's own.
    if phase == "pre":
        data = checks.expect_data(change.steps, change.before, change.after)
    else:
        data = checks.expect_data(change.inverse_steps, change.after, change.before)
    table_template = env.get_template(f"validation/{dialect}_table.sql.j2")
    cache: dict[Any, Any] = env.globals["table_check_cache"]  # type: ignore[assignment]
    blocks = []
    for t in expected:
        # Most tables are the same from one change to the next, and checks.expect_table hands
        # back the very same object for them: looked up by identity first (the object is kept
        # in the entry, so its id is never reused), then by value.
        seen = cache.get((dialect, id(t)))
        if seen is None:
            key = f"{dialect}:{t!r}"
            if key not in cache:
                cache[key] = table_template.render(t=t, dialect=dialect)
            seen = cache[(dialect, id(t))] = (t, cache[key])
        blocks.append(seen[1])
    return env.get_template(f"validation/{dialect}.sql.j2").render(
        table_blocks=blocks,
        change=change,
        dialect=dialect,
        data=data,
        phase=phase,
        path=f"{env.globals['output']}/{validation_path(change, dialect, phase)}",
        expected=expected,
        tables=[(t.table,) for t in expected],
    )


def ruff_format(files: dict[str, str]) -> dict[str, str]:
    """Format Python sources with the pinned ruff, in one process for all of them."""
    return _Formatting(files).result()


# A memory-backed file system for the formatter's scratch files, where there is one.
_MEMORY_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


class _Formatting:
    """``ruff format`` started on files: it runs (on another core) while the caller goes on
    rendering; :meth:`result` waits for it, :meth:`cancel` stops it."""

    def __init__(self, files: dict[str, str]) -> None:
        self._names = {path: f"f{i:05d}.py" for i, path in enumerate(sorted(files))}
        self._proc: subprocess.Popen[str] | None = None
        self._tmp = self._write(files, _MEMORY_DIR)
        try:
            if files:
                self._proc = subprocess.Popen(
                    [
                        _ruff_binary(),
                        "format",
                        "--isolated",
                        "--no-cache",
                        f"--line-length={LINE_LENGTH}",
                        "--target-version=py311",
                        "--quiet",
                        ".",
                    ],
                    cwd=self._tmp.name,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
        except BaseException:
            self._tmp.cleanup()
            raise

    def _write(self, files: dict[str, str], where: str | None) -> tempfile.TemporaryDirectory[str]:
        """The files in a new temporary directory: in memory where there is room (creating
        hundreds of files on a disk costs more than rendering them), else on disk."""
        tmp = None
        try:
            tmp = tempfile.TemporaryDirectory(prefix="schemagen-fmt-", dir=where)
            for path, text in files.items():
                Path(tmp.name, self._names[path]).write_text(text, encoding="utf-8")
        except OSError:
            if tmp is not None:
                tmp.cleanup()
            if where is None:
                raise
            return self._write(files, None)  # e.g. a small /dev/shm that is full, or read-only
        except BaseException:
            if tmp is not None:
                tmp.cleanup()
            raise
        return tmp

    def result(self) -> dict[str, str]:
        try:
            if self._proc is None:
                return {}
            _, stderr = self._proc.communicate()
            if self._proc.returncode != 0:
                raise RuntimeError(f"ruff format failed on generated code:\n{stderr}")
            tmp = self._tmp.name
            return {
                path: Path(tmp, name).read_text(encoding="utf-8")
                for path, name in self._names.items()
            }
        finally:
            self._tmp.cleanup()

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()
        self._tmp.cleanup()


def _ruff_binary() -> str:
    try:
        from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

        return os.fsdecode(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
        return found


# The (kind, name) of each check section of a validation file (see runtime.MARKERS).
# Searched in "\n" + text: a line that starts with it, found by its literal prefix.
_SECTION_RE = re.compile(r"\n-- (check|data-check|fit-check): ([^\n]+)")


def review_path(change: Change) -> str:
    return f"review/{change.name}.md"


def _render_review(
    env: jinja2.Environment, change: Change, units: Plans, validation: dict[str, str]
) -> str:
    touched = {s.table_name for s in change.steps}
    checks_run = {
        (dialect, phase): _SECTION_RE.findall(
            "\n" + validation[validation_path(change, dialect, phase)]
        )
        for dialect in dialects.DIALECTS
        for phase in ("pre", "post")
    }
    return env.get_template("review.md.j2").render(
        change=change,
        tables=review.diff_tables(change.before, change.after, touched),
        units=units,
        checks_run=checks_run,
        findings=lint.lint_change(change),
        risk_line=review.risk_line(units["upgrade"]),
    )


def generate(
    changes: Iterable[Change],
    templates_dir: Path = TEMPLATES_DIR,
    output: str = "generated_migrations",
    version_table: str = "alembic_version",
) -> dict[str, str]:
    """Every generated file, keyed by its path relative to ``generated_migrations/`` (the
    project's ``output``, which the files name where they point at each other).

    A long history is rendered in two processes (see :func:`_render_forked`); the files do
    not depend on it, nor on the order the changes are rendered in.
    """
    env = make_env(templates_dir)
    env.globals["output"] = output
    env.globals["version_table"] = version_table  # not a table of the schema the checks see
    changes = list(changes)
    out = _render_forked(env, changes) if _fork_helps(len(changes)) else _render(env, changes)
    out[SUM_FILE] = sum_file(out)
    return dict(sorted(out.items()))


# Below this many changes a second process costs about what it saves.
FORK_THRESHOLD = 40


def _fork_helps(n: int) -> bool:
    """Two processes on Linux with two cores and nothing running in threads (a forked copy
    of a threaded process may inherit a lock held by another thread); ``SCHEMAGEN_JOBS=1``
    renders in one."""
    if n < FORK_THRESHOLD or not sys.platform.startswith("linux"):
        return False
    if threading.active_count() != 1:
        return False
    if os.environ.get("SCHEMAGEN_JOBS", "").strip() == "1":
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) >= 2


def _render_forked(env: jinja2.Environment, changes: list[Change]) -> dict[str, str]:
    """Render the later changes in a forked child while this process renders the earlier ones.

    The child sends its files back pickled through a pipe. Should it fail for any reason, its
    changes are rendered here again, so an error is raised (and reads) as in one process.
    """
    split = len(changes) // 2
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: render, send, and leave without running any exit handler
        code = 1
        try:
            os.close(read_fd)
            data = pickle.dumps(_render(env, changes[split:]), pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        out = _render(env, changes[:split])
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
    except BaseException:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    if status == 0:
        out.update(pickle.loads(data))
    else:
        out.update(_render(env, changes[split:]))
    return out


def _render(env: jinja2.Environment, changes: list[Change]) -> dict[str, str]:
    """The migrations (formatted), validation SQL and review summaries of these changes."""
    plans = [_plans(change) for change in changes]
    python = {
        migration_path(change): _render_migration(env, change, change_plans)
        for change, change_plans in zip(changes, plans, strict=True)
    }
    formatting = _Formatting(python)  # ruff formats them while the rest is rendered
    out: dict[str, str] = {}
    try:
        for change, change_plans in zip(changes, plans, strict=True):
            for dialect in dialects.DIALECTS:
                for phase in ("pre", "post"):
                    out[validation_path(change, dialect, phase)] = _render_validation(
                        env, change, dialect, phase
                    )
            out[review_path(change)] = _render_review(env, change, change_plans, out)
    except BaseException:
        formatting.cancel()
        raise
    out.update(formatting.result())
    return out


def manifest(files: dict[str, str]) -> str:
    return json.dumps(sorted(files), indent=2)
