"""Render changes through the Jinja templates into ``{path: text}``; nothing is written here."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jinja2

from generator import (
    checks,
    config,
    dialects,
    lint,
    ops,
    plan,
    precompiled,
    resume,
    review,
    revision_files,
)
from generator.files import SUM_FILE, Parts, Text, h1, sum_of_hashes
from generator.load import Change
from generator.plan import Unit
from generator.resources import TEMPLATES_DIR

if TYPE_CHECKING:
    from generator.cache import Cache

LINE_LENGTH = 100
_P = TypeVar("_P", str, bytes)


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
    if type(value) is str:  # most values (the tolerated rows are tuples of them)
        return repr(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {type(value).__name__} as a Python literal")


def _resumable_py(by_dialect: dict[str, dict[str, list[tuple[str | None, ...]]]]) -> str:
    """The lines of a migration's ``resumable={...}`` (migration.py.j2): per dialect, per
    check, the tolerated rows, one a line; ruff formats them after. In Python: a history's
    migrations hold thousands of these rows."""
    lines = []
    for dialect, by_check in by_dialect.items():
        lines.append(f"            {_py(dialect)}: {{")
        for name, rows in by_check.items():
            lines.append(f"                {_py(name)}: [")
            lines += [f"                    {_py(row)}," for row in rows]
            lines.append("                ],")
        lines.append("            },")
    return "\n".join(lines)


def _sqlval(value: Any, dialect: str) -> str:
    if type(value) is str and value.isprintable():  # most values: a printable string
        return dialects.sql_string(value)
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


def _sql_values(columns: list[str], rows: Iterable[Iterable[Any]], dialect: str) -> str:
    """The expected rows of a check (:meth:`_Sections.diff`): a VALUES list, one row a line
    and a line break after the last, or a query of no rows (one NULL a column) when there
    are none."""
    lines = ["        (" + ", ".join([_sqlval(v, dialect) for v in row]) + ")" for row in rows]
    if not lines:
        return "SELECT " + ", ".join(["CAST(NULL AS TEXT)"] * len(columns)) + " WHERE 1 = 0"
    return "VALUES\n" + ",\n".join(lines) + "\n"


def _unit_tables(unit: Unit) -> str:
    """The tables of a unit's steps, each once, in order: what ``unit.steps |
    map(attribute="table_name") | unique | join(", ")`` writes (``unique``: the first of the
    names equal but for case), in Python: the review writes it for every unit."""
    seen: set[str] = set()
    names = []
    for step in unit.steps:
        if step.table_name.lower() not in seen:
            seen.add(step.table_name.lower())
            names.append(step.table_name)
    return ", ".join(names)


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
    "resumable_py": _resumable_py,
    "fk_lock_order": dialects.fk_lock_order,
    "using_sql": dialects.using_sql,
    "type_check": lambda c, dialect: dialects.type_check(c.name, c.type, dialect),
    "sqlite_batch_type": dialects.sqlite_batch_type,
    "sqlite_convert_sql": dialects.sqlite_convert_sql,
    "fk_action": lambda action: dialects.FK_ACTION_SQL[action],
    "fk_code": lambda action: dialects.PG_FK_ACTION_CODE[action],
    "ddl_type": dialects.ddl_type,
    "column_ddl_type": dialects.column_ddl_type,
    "domain_create_sql": dialects.domain_create_sql,
    "domain_constraint_sql": dialects.domain_constraint_sql,
    "domain_drop_sql": dialects.domain_drop_sql,
    "catalog_type": dialects.catalog_type,
    "risk": lambda unit, dialect: unit.risk(dialect),
    "unit_tables": _unit_tables,
    "describe": review.describe,
    "like_pattern": config.like_pattern,
    "mdtext": lambda text: _printable(str(text)).replace("|", "\\|").replace("<", "&lt;"),
}


# What adopt() writes in a validation file's frame where the block's text goes (NUL: no
# file name, spec name or phase the frame prints holds one).
_ADOPTED = "\x00"


class _Sections:
    """The checks a validation template writes, recorded as :class:`checks.Check` objects as
    it writes them: the templates' ``section(kind, name, table, aspect, sql)`` both prints a
    check (its ``-- <kind>: <name>`` line, its SQL and ``;``, for reviewers and psql) and
    records it, so the file's checks are data from the start and nothing reads the text back.

    ``adopt(block)`` writes a mark where the block goes (``adopt_each(blocks)``: a mark per
    block; the template prints the result as is, no filter on it): the file is the frame's
    pieces between the marks and the blocks, joined for a file written, compared part by
    part by ``generate --check`` (files.Parts).
    """

    def __init__(self) -> None:
        self.dialect = ""
        self.found: list[checks.Check] = []
        self.adopted: list[_Block] = []
        # diff()'s text and check per value of its arguments (see there)
        self._diffs: dict[tuple[Any, ...], tuple[str, checks.Check]] = {}

    def start(self, dialect: str) -> list[checks.Check]:
        self.dialect, self.found, self.adopted = dialect, [], []
        return self.found

    def section(self, kind: str, name: str, table: str, aspect: str, sql: str) -> str:
        if kind not in checks.KINDS:
            raise ValueError(f"unknown check kind {kind!r}")
        self.found.append(
            checks.Check(name, kind, table, checks.PROVES[aspect], {self.dialect: sql.strip()})
        )
        return f"-- {kind}: {name}\n{sql};"

    def diff(
        self,
        name: str,
        columns: list[str],
        rows: Iterable[Iterable[Any]],
        actual: str,
        table: str = "",
        aspect: str = "tables",
    ) -> str:
        """``diff(name, columns, rows, actual, table, aspect)`` in the validation templates:
        the shared shape of every catalogue check, expected rows EXCEPT actual rows and the
        other way round (``actual``: the query reading them back). It returns no rows when
        the check holds; otherwise each row says which side it is from. A :meth:`section`.
        In Python (it was a macro): it writes every check of every table state.

        Once per value of its arguments (``rows``: a list of checks.Row, told apart by their
        repr, as 1 and True are): a table state is new when one of its facets is (an index
        added), and its other checks are those of the state before. The very same check is
        recorded again, so its JSON record is written once too (_record_json)."""
        key = None
        if isinstance(rows, list | tuple):
            key = (self.dialect, name, tuple(columns), repr(rows), actual, table, aspect)
            seen = self._diffs.get(key)
            if seen is not None:
                self.found.append(seen[1])
                return seen[0]
        names = ", ".join(columns)
        body = (
            f"WITH expected({names}) AS (\n"
            f"    {_sql_values(columns, rows, self.dialect)}\n"
            f"),\nactual({names}) AS (\n"
            f"    {jinja2.filters.do_indent(actual, 4)}\n"
            ")\n"
            "SELECT 'expected, not found' AS problem, e.* FROM "
            "(SELECT * FROM expected EXCEPT SELECT * FROM actual) AS e\n"
            "UNION ALL\n"
            "SELECT 'found, not expected' AS problem, a.* FROM "
            "(SELECT * FROM actual EXCEPT SELECT * FROM expected) AS a"
        )
        text = self.section("check", name, table, aspect, body)
        if key is not None:
            self._diffs[key] = (text, self.found[-1])
        return text

    def adopt(self, block: _Block) -> str:
        """A table's block rendered earlier (and cached): its checks join the file's, its
        text goes where the mark is."""
        self.found.extend(block.checks)
        self.adopted.append(block)
        return _ADOPTED

    def adopt_each(self, blocks: list[_Block]) -> str:
        """:meth:`adopt` of each block in turn, their marks side by side: one call from the
        template for a file's table blocks rather than one each."""
        for block in blocks:
            self.found.extend(block.checks)
        self.adopted.extend(blocks)
        return _ADOPTED * len(blocks)


class _Block:
    """Rendered checks (text and model) of one table state, of the list of tables or of the
    data checks, reused across changes; ``json``: its records in a ``.json`` file."""

    def __init__(self, text: str, found: list[checks.Check]) -> None:
        self.text, self.checks = text, tuple(found)
        self._json: str | None = None
        self._data: bytes | None = None
        self._json_data: bytes | None = None
        self._names: dict[str, tuple[str, ...]] | None = None

    def names_by_kind(self) -> dict[str, tuple[str, ...]]:
        """The names of its checks by kind (checks.KINDS), in order: the review counts them."""
        if self._names is None:
            self._names = {
                kind: tuple(c.name for c in self.checks if c.kind == kind) for kind in checks.KINDS
            }
        return self._names

    def json(self, dialect: str) -> str:
        """Its checks as items of the ``checks`` list (each block is of one dialect)."""
        if self._json is None:
            self._json = ",\n".join(_record_json(c, dialect) for c in self.checks)
        return self._json

    @property
    def data(self) -> bytes:
        """Its text, encoded (once: files.Parts of the files that adopt it)."""
        if self._data is None:
            self._data = self.text.encode("utf-8")
        return self._data

    def json_data(self, dialect: str) -> bytes:
        """:meth:`json`, encoded."""
        if self._json_data is None:
            self._json_data = self.json(dialect).encode("utf-8")
        return self._json_data


def is_rendering_template(name: str) -> bool:
    """A template of :func:`make_env` (templates/init/ is ``schemagen init``'s, rendered by
    generator.scaffold)."""
    return name.endswith(".j2") and not name.startswith("init/")


def make_env(
    templates_dir: Path = TEMPLATES_DIR, compiled: Path = precompiled.COMPILED_DIR
) -> jinja2.Environment:
    """The templates' environment; a template compiled ahead into ``compiled`` for its
    present source is loaded from there (generator.precompiled)."""
    env = jinja2.Environment(
        loader=precompiled.Loader(templates_dir, compiled),
        auto_reload=False,  # templates do not change during a run: no stat per lookup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(FILTERS)
    env.globals["dialects"] = dialects.DIALECTS
    env.globals["table_check_cache"] = {}
    sections = _Sections()
    env.globals["sections"] = sections
    env.globals["section"] = sections.section
    env.globals["diff"] = sections.diff
    env.globals["adopt"] = sections.adopt
    env.globals["adopt_each"] = sections.adopt_each
    env.globals["output"] = "generated_migrations"  # the project's output folder (generate)
    env.globals["version_table"] = "alembic_version"  # the project's (generate)
    env.globals["foreign_tables"] = ()  # the project's (generate)
    # A group's template (recreate_table, alter_table, ...) calls its steps' macros (batch(),
    # alter(), ...) through it. Each template is loaded (compiled) when a unit of its kind is
    # first rendered: a history that uses a few operations compiles a few templates.
    env.globals["ops"] = _Modules(env, ops.unit_templates())
    env.globals["table_source"] = _TableSources(env)
    return env


class _TableSources:
    """``table_source(t, dialect)`` in the templates: ops/_schema.j2's ``table`` macro (a whole
    table as ``sa.Table`` source: SQLite's ``copy_from``), rendered once per table state and
    dialect. A history rebuilds the same states again and again (a change and its downgrade,
    a cycle of swaps); the macro's text depends on nothing but its arguments (the module is
    imported without context). Looked up by identity first (the table is kept in the entry, so
    its id is never reused), then by its repr, as the validation files' table blocks are (not
    by ==: a default of 1 equals one of True, and they render differently)."""

    def __init__(self, env: jinja2.Environment) -> None:
        self._env = env
        self._by_id: dict[tuple[int, str], tuple[Any, str]] = {}
        self._by_value: dict[tuple[str, str], str] = {}

    def __call__(self, table: Any, dialect: str) -> str:
        seen = self._by_id.get((id(table), dialect))
        if seen is None or seen[0] is not table:
            key = (repr(table), dialect)
            text = self._by_value.get(key)
            if text is None:
                macro = self._env.get_template("ops/_schema.j2").module.table  # type: ignore[attr-defined]
                text = self._by_value[key] = str(macro(table, dialect))
            seen = self._by_id[(id(table), dialect)] = (table, text)
        return seen[1]


class _Modules(dict[str, Any]):
    """``ops[kind]`` in the templates: the module of the kind's template, loaded on first use
    (an unknown kind is a KeyError, as in a plain dict)."""

    def __init__(self, env: jinja2.Environment, templates: dict[str, str]) -> None:
        super().__init__()
        self._env, self._templates = env, templates

    def __missing__(self, kind: str) -> Any:
        module = self._env.get_template(self._templates[kind]).module
        self[kind] = module
        return module


def migration_path(change: Change) -> str:
    return f"versions/{change.name}.py"


def validation_path(change: Change, dialect: str, phase: str) -> str:
    return f"validation/{dialect}/{change.name}.{phase}.sql"


def checks_path(change: Change, dialect: str, phase: str) -> str:
    """The checks of a validation file as data (JSON), which the runtime runs."""
    return f"validation/{dialect}/{change.name}.{phase}.json"


def checks_json(
    change: Change,
    found: list[checks.Check],
    dialect: str,
    phase: str,
    blocks: list[_Block] | None = None,
) -> str:
    """The runtime's form of a validation file: one object per check (name, kind, table,
    proves, sql), in the .sql file's order, under the generated header (files.is_generated).
    ``blocks``: the blocks the file adopted, whose checks are ``found`` in that order."""
    # One join for the whole file: its records are most of it (tens of kilobytes), copied once.
    return "".join(
        p if isinstance(p, str) else p.json(dialect)
        for p in _checks_json_parts(change, found, dialect, phase, blocks)
    )


def _checks_json_data(
    change: Change,
    found: list[checks.Check],
    dialect: str,
    phase: str,
    blocks: list[_Block] | None = None,
) -> Parts:
    """:func:`checks_json` as files.Parts: each block's records encoded once (for every file
    that adopts the block), never joined while ``generate --check`` compares them."""
    return Parts(
        tuple(
            p.encode("utf-8") if isinstance(p, str) else p.json_data(dialect)
            for p in _checks_json_parts(change, found, dialect, phase, blocks)
        )
    )


def _checks_json_parts(
    change: Change,
    found: list[checks.Check],
    dialect: str,
    phase: str,
    blocks: list[_Block] | None = None,
) -> list[str | _Block]:
    """The pieces of :func:`checks_json`: text, and blocks standing for their records."""
    header = (
        f"Generated by schemagen from {change.display} (the checks of "
        f"{validation_path(change, dialect, phase)}, as data). Do not edit: change the spec "
        "and run `schemagen generate`."
    )
    # The header on the first line, as every generated file has it; valid JSON all the same.
    head = f'{{"//": {json.dumps(header, ensure_ascii=False)},\n"checks": '
    if not found:
        return [f"{head}[]}}\n"]
    items: list[str | _Block]
    if blocks is not None:
        items = [b for b in blocks if b.checks]
    else:
        items = [_record_json(c, dialect) for c in found]
    parts: list[str | _Block] = [head, "[\n"]
    for item in items:
        parts += (item, ",\n")
    if items:
        parts.pop()  # the last separator
    parts.append("\n]}\n")
    return parts


# id(check), dialect -> (the check, kept alive so that its id is not reused; its JSON text).
# The checks of an unchanged table are the very same objects from one change to the next.
_RECORDS: dict[tuple[int, str], tuple[checks.Check, str]] = {}


def _record_json(check: checks.Check, dialect: str) -> str:
    """``check.record(dialect)`` as ``json.dumps([...], indent=2, ensure_ascii=False)``
    writes a list item (tests/generator/test_check_model.py compares the two)."""
    seen = _RECORDS.get((id(check), dialect))
    if seen is not None and seen[0] is check:
        return seen[1]
    record = check.record(dialect)
    if all(isinstance(v, str) for v in record.values()):
        text = (
            "  {\n"
            + ",\n".join(f"    {_json_str(k)}: {_json_str(v)}" for k, v in record.items())
            + "\n  }"
        )
    else:  # not what Check.record returns today: the library's own layout
        text = textwrap.indent(json.dumps(record, indent=2, ensure_ascii=False), "  ")
    if len(_RECORDS) >= 50_000:  # a long-lived process: keep it bounded
        _RECORDS.clear()
    _RECORDS[(id(check), dialect)] = (check, text)
    return text


_json_str: Callable[[str], str] = json.encoder.encode_basestring


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


def _template(env: jinja2.Environment, name: str) -> jinja2.Template:
    """``env.get_template(name)``, looked up once per environment rather than once per file
    (the same object either way: auto_reload is off, so Jinja loads a template once; each
    lookup still takes its cache's lock and key: some 5,000 of them in a 500-change run)."""
    cache: dict[Any, Any] = env.globals["table_check_cache"]  # type: ignore[assignment]
    template: jinja2.Template | None = cache.get(("template", name))
    if template is None:
        template = cache[("template", name)] = env.get_template(name)
    return template


def _render_migration(env: jinja2.Environment, change: Change, plans: Plans) -> str:
    return _template(env, "migration.py.j2").render(
        change=change, plans=plans, resumable=resume.tolerances(change, plans)
    )


def _render_validation(
    env: jinja2.Environment, change: Change, dialect: str, phase: str
) -> tuple[str, list[checks.Check], list[_Block]]:
    """The validation file's text, its checks (the model the text was written from) and the
    blocks it adopted (their checks are all of its checks, in order)."""
    pieces, found, adopted = _validation_frame(env, change, dialect, phase)
    return "".join(_interleave(pieces, [b.text for b in adopted])), found, _whole(found, adopted)


def _validation_data(
    env: jinja2.Environment, change: Change, dialect: str, phase: str
) -> tuple[Parts, list[checks.Check], list[_Block]]:
    """:func:`_render_validation` with the text as files.Parts (the blocks' encoded once)."""
    pieces, found, adopted = _validation_frame(env, change, dialect, phase)
    data = _interleave([p.encode("utf-8") for p in pieces], [b.data for b in adopted])
    return Parts(tuple(data)), found, _whole(found, adopted)


def _interleave(pieces: list[_P], blocks: list[_P]) -> list[_P]:
    """The frame's pieces with the blocks between them."""
    out = [pieces[0]]
    for block, piece in zip(blocks, pieces[1:], strict=True):
        out += (block, piece)
    return out


def _whole(found: list[checks.Check], adopted: list[_Block]) -> list[_Block]:
    """The blocks adopted when their checks are all the file's, else none (checks_json then
    writes each check's record)."""
    if len(found) != sum(len(b.checks) for b in adopted):  # a check outside any block
        return []
    return adopted


def _data_expectation(
    cache: dict[Any, Any], change: Change, phase: str, dialect: str
) -> tuple[checks.DataExpectation, str]:
    """The data checks of the side that runs before the DDL (the upgrade's from pre.sql, the
    downgrade's from post.sql; row counts and drift are symmetric, fits are the side's own)
    and their repr (the key of their block). Computed once for both dialects unless a type
    change is checked in batches on this one (checks.expect_data: the only way the dialect
    reaches them), kept with the change (its id is not reused while the entry lives)."""
    if phase == "pre":
        steps, before, after = change.steps, change.before, change.after
    else:
        steps, before, after = change.inverse_steps, change.after, change.before
    batched = any(s.type_change() is not None and s.checked_in_batches(dialect) for s in steps)
    key = ("data expectation", id(change), phase, dialect if batched else "")
    seen = cache.get(key)
    if seen is None or seen[0] is not change:
        data = checks.expect_data(steps, before, after, dialect)
        seen = cache[key] = (change, data, repr(data))
    return seen[1], seen[2]


def _validation_frame(
    env: jinja2.Environment, change: Change, dialect: str, phase: str
) -> tuple[list[str], list[checks.Check], list[_Block]]:
    """The validation template's text split where it adopts blocks (one piece more than the
    blocks), its checks and the blocks (in order)."""
    schema, other = (
        (change.before, change.after) if phase == "pre" else (change.after, change.before)
    )
    expected = checks.expect_schema(schema, dialect, other)
    cache: dict[Any, Any] = env.globals["table_check_cache"]  # type: ignore[assignment]
    data, data_key = _data_expectation(cache, change, phase, dialect)
    table_template = _template(env, f"validation/{dialect}_table.sql.j2")
    sections: _Sections = env.globals["sections"]  # type: ignore[assignment]
    blocks = []
    for t in expected:
        # Most tables are the same from one change to the next, and checks.expect_table hands
        # back the very same object for them: looked up by identity first (the object is kept
        # in the entry, so its id is never reused), then by value.
        seen = cache.get((dialect, id(t)))
        if seen is None:
            key = f"{dialect}:{t!r}"
            if key not in cache:
                found = sections.start(dialect)
                cache[key] = _Block(table_template.render(t=t, dialect=dialect), found)
            seen = cache[(dialect, id(t))] = (t, cache[key])
        blocks.append(seen[1])
    tables = [(t.table,) for t in expected]
    # PostgreSQL: checked when either side of the change has enum types, the types of ours
    # only: those of either side (another owner may keep enum types of its own)
    enums = {
        "enum_types": [(name, ",".join(labels)) for name, labels in schema.enum_types().items()],
        "enum_type_names": sorted({*schema.enum_types(), *other.enum_types()}),
    }
    # The check of the list of tables and the data checks: rendered once each per value
    # (most changes keep the tables and many share their data checks), then adopted.
    parts = {}
    for part, key, context in (
        ("tables", repr((tables, enums)), {"tables": tables, **enums}),
        ("data", data_key, {"data": data}),
    ):
        block = cache.get((part, dialect, key))
        if block is None:
            found = sections.start(dialect)
            text = _template(env, f"validation/{dialect}_{part}.sql.j2").render(
                dialect=dialect, **context
            )
            block = cache[(part, dialect, key)] = _Block(text, found)
        parts[f"{part}_block"] = block
    found = sections.start(dialect)
    # The file's frame: the template's macro, called per file (a render per file, with its
    # new context of every global, cost more than the frame's text).
    frame = cache.get(("frame", dialect))
    if frame is None:
        module = _template(env, f"validation/{dialect}.sql.j2").module
        frame = cache[("frame", dialect)] = module.frame  # type: ignore[attr-defined]
    text = frame(
        change,
        phase,
        f"{env.globals['output']}/{validation_path(change, dialect, phase)}",
        parts["tables_block"],
        blocks,
        parts["data_block"],
    )
    pieces = text.split(_ADOPTED)
    adopted = sections.adopted
    if len(pieces) != len(adopted) + 1:
        raise RuntimeError(
            f"validation/{dialect}.sql.j2: {len(pieces) - 1} marks of adopted blocks for "
            f"{len(adopted)} blocks (print adopt()'s result as is)"
        )
    return pieces, found, adopted


def ruff_format(files: dict[str, str]) -> dict[str, str]:
    """Format Python sources with the pinned ruff, in one process for all of them."""
    return _Formatting(files).result()


_RUFF_ARGS = (
    "format",
    "--isolated",
    "--no-cache",
    f"--line-length={LINE_LENGTH}",
    "--target-version=py311",
)

# Between two migrations formatted as one source (see _Formatting); no migration holds it.
_NEXT = "# schemagen: the next migration starts below\n"

# What a migration opens with (migration.py.j2): its comment lines, a one-line docstring that
# ruff leaves as it is (no quote, backslash or outer space in it), one blank line, an import.
_OPENING = re.compile(
    r'(?:#[^\n]*\n)*"""[^"\\\s](?:[^"\\\x00-\x1f\x7f]*[^"\\\s])?"""\n\n(?:import|from) '
)

# Comments that switch ruff's formatting off or on for more than one statement.
_DIRECTIVES = re.compile(r"#\s*(?:fmt|yapf)\s*:")


def _one_source(files: dict[str, str], paths: list[str]) -> str | None:
    """The migrations as one Python source that ruff formats into each one's own formatting,
    ``_NEXT`` between them; None when that is not certain of one of them.

    ruff formats a module statement by statement: what one statement becomes depends on the
    statements beside it only through the blank lines between them (which the split drops:
    a file ends with one newline), comments that switch formatting off (``fmt: off``,
    ``yapf: disable``: refused here) and the module's docstring, which only the first file
    has there; every other file's opens as ``_OPENING`` says, a docstring ruff writes as it
    stands either way, followed by the one blank line ruff keeps in both cases.
    (tests/generator/test_formatting.py formats the project's histories both ways.)"""
    for i, path in enumerate(paths):
        text = files[path]
        if _NEXT in text or _DIRECTIVES.search(text) or "\r" in text or not text.endswith("\n"):
            return None  # ruff takes the line ending of a source from its first line
        if text.rstrip().rpartition("\n")[2].startswith("#"):
            return None  # a comment after the last statement: the next file's, in one source
        if i and not _OPENING.match(text):
            return None
    return ("\n\n" + _NEXT).join(files[path] for path in paths)


class _Formatting:
    """``ruff format`` started on the files in one process for all of them: it runs while
    the caller goes on rendering; :meth:`result` waits for it, :meth:`cancel` stops it.

    The migrations go to ruff's standard input as one source (:func:`_one_source`), split
    again from its output: no file is written. Writing hundreds of temporary files, ruff
    rewriting them and removing them cost more wall time than the rest of the formatting on
    this machine's disk. Sources :func:`_one_source` refuses, or that ruff refuses as one, are
    formatted as files in a temporary directory, one per migration, as before."""

    def __init__(self, files: dict[str, str], one_source: bool = True) -> None:
        self._files = files
        self._paths = sorted(files)
        self._names = {path: f"f{i:05d}.py" for i, path in enumerate(self._paths)}
        self._proc: subprocess.Popen[str] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._joined = False
        if not files:
            return
        source = _one_source(files, self._paths) if one_source else None
        if source is None:
            self._start_files()
            return
        self._joined = True
        self._proc = subprocess.Popen(
            [_ruff_binary(), *_RUFF_ARGS, "--stdin-filename", "migrations.py", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        stdin, self._proc.stdin = self._proc.stdin, None  # communicate() must not flush it
        assert stdin is not None
        try:
            with stdin:
                stdin.write(source)  # ruff reads it all before it formats
        except BrokenPipeError:
            pass  # ruff stopped: result() reports it

    def _start_files(self) -> None:
        self._joined = False
        self._tmp = tempfile.TemporaryDirectory(prefix="schemagen-fmt-")
        try:
            for path, text in self._files.items():
                Path(self._tmp.name, self._names[path]).write_text(text, encoding="utf-8")
            self._proc = subprocess.Popen(
                [_ruff_binary(), *_RUFF_ARGS, "--quiet", "."],
                cwd=self._tmp.name,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except BaseException:
            self._tmp.cleanup()
            raise

    def result(self) -> dict[str, str]:
        try:
            if self._proc is None:
                return {}
            stdout, stderr = self._proc.communicate()
            if self._joined:
                pieces = stdout.split("\n" + _NEXT)
                if self._proc.returncode == 0 and len(pieces) == len(self._paths):
                    return {
                        path: piece.rstrip("\n") + "\n"
                        for path, piece in zip(self._paths, pieces, strict=True)
                    }
                self._start_files()  # ruff's own report, file by file
                return self.result()
            if self._proc.returncode != 0:
                raise RuntimeError(f"ruff format failed on generated code:\n{stderr}")
            assert self._tmp is not None
            tmp = self._tmp.name
            return {
                path: Path(tmp, name).read_text(encoding="utf-8")
                for path, name in self._names.items()
            }
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()
        if self._tmp is not None:
            self._tmp.cleanup()


def _ruff_binary() -> str:
    try:
        from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

        return os.fsdecode(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
        return found


def review_path(change: Change) -> str:
    return f"review/{change.name}.md"


def _render_review(
    env: jinja2.Environment,
    change: Change,
    units: Plans,
    model: dict[tuple[str, str], list[checks.Check]],
    blocks: dict[tuple[str, str], list[_Block]] | None = None,
) -> str:
    """``blocks``: the blocks of each validation file whose checks are all in blocks (render's
    _whole), which hold its checks' names by kind already."""
    touched = {s.table_name for s in change.steps}
    # (dialect, phase) -> kind -> the names of its checks, in order (from the check model)
    checks_run: dict[tuple[str, str], dict[str, list[str]]] = {}
    for key, found in model.items():
        by_kind: dict[str, list[str]] = {kind: [] for kind in checks.KINDS}
        adopted = blocks.get(key) if blocks is not None else None
        if adopted:  # its checks are those of the blocks, in order
            for block in adopted:
                for kind, names in block.names_by_kind().items():
                    by_kind[kind] += names
        else:
            for c in found:
                by_kind[c.kind].append(c.name)
        checks_run[key] = by_kind
    return _template(env, "review.md.j2").render(
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
    cache: Cache | None = None,
    foreign_tables: tuple[str, ...] = (),
) -> dict[str, str]:
    """Every generated file, keyed by its path relative to ``generated_migrations/`` (the
    project's ``output``, which the files name where they point at each other).

    With a ``cache`` (generator.cache, for changes loaded with lint), a change with an entry
    is not rendered, and each rendered change is stored. A change's files depend on nothing
    but the change, its states and the templates: not on the other changes, nor on order.
    """
    out = generate_parts(changes, templates_dir, output, version_table, cache, foreign_tables)
    return {path: str(text) for path, text in out.items()}  # str: no Parts without lazy


def generate_parts(
    changes: Iterable[Change],
    templates_dir: Path = TEMPLATES_DIR,
    output: str = "generated_migrations",
    version_table: str = "alembic_version",
    cache: Cache | None = None,
    foreign_tables: tuple[str, ...] = (),
    lazy: bool = False,
) -> dict[str, Text]:
    """:func:`generate`; with ``lazy`` (and no ``cache``), each validation file (SQL and
    JSON) as files.Parts, for ``generate --check`` to compare without joining them."""
    out: dict[str, Text] = {}
    hashes: dict[str, str] = {}  # path -> its line's hash in the sum file
    todo: list[Change] = []
    for change in changes:
        entry = cache.lookup(change) if cache is not None else None
        if entry is None:
            todo.append(change)
        else:
            out.update(entry.files)
            hashes.update(entry.hashes)
    if todo:
        env = make_env(templates_dir)
        env.globals["output"] = output
        env.globals["version_table"] = version_table  # not a table of the schema the checks see
        env.globals["foreign_tables"] = foreign_tables  # nor are another owner's tables
        for change, files in zip(todo, _render(env, todo, lazy and cache is None), strict=True):
            out.update(files)
            # The chain check (revision_files) takes the revision from the change rather than
            # parse the rendered file back (tests/generator/test_cache.py shows they agree).
            path = migration_path(change)
            revision_files.remember(path, str(files[path]), _revision(change, path))
            if cache is not None:
                hashes.update(cache.store(change, _joined(files)).hashes)
            else:
                hashes.update(
                    (path, h1(text) if isinstance(text, str) else text.h1())
                    for path, text in files.items()
                )
    out[SUM_FILE] = sum_of_hashes(hashes)
    return dict(sorted(out.items()))


def _revision(change: Change, path: str) -> revision_files.Revision:
    """What the change's migration declares (migration.py.j2: revision, down_revision)."""
    down = () if change.down_revision is None else (change.down_revision,)
    return revision_files.Revision(change.revision, down, path, generated=True)


def _joined(files: dict[str, Text]) -> dict[str, str]:
    return {path: str(text) for path, text in files.items()}


def _render(
    env: jinja2.Environment, changes: list[Change], lazy: bool = False
) -> list[dict[str, Text]]:
    """Per change: its migration (formatted), validation SQL and review summary; with
    ``lazy``, the validation files as files.Parts."""
    plans = [_plans(change) for change in changes]
    python = {
        migration_path(change): _render_migration(env, change, change_plans)
        for change, change_plans in zip(changes, plans, strict=True)
    }
    formatting = _Formatting(python)  # ruff formats them while the rest is rendered
    out: list[dict[str, Text]] = []
    try:
        for change, change_plans in zip(changes, plans, strict=True):
            files: dict[str, Text] = {migration_path(change): ""}  # its place, filled below
            model: dict[tuple[str, str], list[checks.Check]] = {}
            blocks: dict[tuple[str, str], list[_Block]] = {}
            for dialect in dialects.DIALECTS:
                for phase in ("pre", "post"):
                    sql_path = validation_path(change, dialect, phase)
                    json_path = checks_path(change, dialect, phase)
                    if lazy:
                        data, found, adopted = _validation_data(env, change, dialect, phase)
                        files[sql_path] = data
                        files[json_path] = _checks_json_data(
                            change, found, dialect, phase, adopted or None
                        )
                    else:
                        text, found, adopted = _render_validation(env, change, dialect, phase)
                        files[sql_path] = text
                        files[json_path] = checks_json(
                            change, found, dialect, phase, adopted or None
                        )
                    model[(dialect, phase)] = found
                    blocks[(dialect, phase)] = adopted
            files[review_path(change)] = _render_review(env, change, change_plans, model, blocks)
            out.append(files)
    except BaseException:
        formatting.cancel()
        raise
    formatted = formatting.result()
    for change, files in zip(changes, out, strict=True):
        files[migration_path(change)] = formatted[migration_path(change)]
    return out


def manifest(files: dict[str, str]) -> str:
    return json.dumps(sorted(files), indent=2)
