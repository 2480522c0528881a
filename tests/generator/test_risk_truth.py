"""The declared risk of a type change is what a real PostgreSQL server does.

For every pair of types of the vocabulary that alter_column_type may convert, a table with
rows and an index on the column is altered inside an open transaction; then

- a second connection reads ``pg_locks``: the strongest lock the altering session holds on
  the table must be the declared one;
- after the commit, ``pg_class.relfilenode`` of the table (new storage = rewritten) must have
  changed exactly when the risk model says the change rewrites.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import pg_url_for

from generator import lint, risk
from generator.coltypes import conversion_problem, parse_type
from generator.load import load_changes
from generator.ops.alter_column_type import AlterColumnTypeStep
from generator.ops.base import Risk
from generator.plan import plan
from generator.render import generate
from generator.state import Column

pytestmark = pytest.mark.db

# Each kind of the numeric and string families, with the parameter variants that matter:
# precision up or down at one scale, scale up or down, a varchar longer or shorter.
TYPES = [
    "integer",
    "bigint",
    "float",
    "decimal(10,2)",
    "decimal(12,2)",
    "decimal(12,4)",
    "varchar(32)",
    "varchar(64)",
    "text",
]
PAIRS = [
    (a, b)
    for a, b in itertools.permutations(TYPES, 2)
    if conversion_problem(parse_type(a), parse_type(b)) is None
]
# The types added later, with the older ones they convert to and from: every allowed pair
# that has one of them, run with the USING the migration renders (dialects.using_sql).
NEW_TYPES = ["smallint", "date", "timestamp", "timestamptz", "uuid", "json", "bytes"]
NEW_PAIRS = [
    (a, b)
    for a, b in itertools.permutations([*NEW_TYPES, *TYPES], 2)
    if (a in NEW_TYPES or b in NEW_TYPES)
    and conversion_problem(parse_type(a), parse_type(b)) is None
    and not (parse_type(a).family == parse_type(b).family == "numeric" and "smallint" not in (a, b))
]
LOCK_MODES = {"AccessExclusiveLock": risk.ACCESS_EXCLUSIVE}


def _ddl(name: str) -> str:
    t = parse_type(name)
    from generator.dialects import ddl_type

    if t.kind in ("smallint", "date", "timestamp", "timestamptz", "uuid", "json"):
        return ddl_type(t, "postgresql")
    return {
        "float": "double precision",
        "decimal": f"numeric({t.precision},{t.scale})",
        "varchar": f"varchar({t.length})",
    }.get(t.kind, t.kind)


def _declared(old: str, new: str) -> Risk:
    """The risk model's answer: the Risk of the alter_column_type step on PostgreSQL (the
    object plan, lint, the review and status read)."""
    step = AlterColumnTypeStep("t", Column("c", parse_type(old), True), parse_type(new))
    return step.risk("postgresql")


def _value(name: str, other: str | None = None) -> str:
    # A value every type of its family holds, whatever the direction of the change.
    family = parse_type(name).family
    kinds = {parse_type(name).kind, parse_type(other).kind if other else ""}
    if "uuid" in kinds:
        short = parse_type(name).kind == "varchar" and (parse_type(name).length or 0) < 36
        return "NULL" if short else "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"
    if "json" in kinds:
        return "'\"abc\"'"
    if family == "temporal":
        return "'2024-01-02'"
    return "'abc'" if family == "string" else "12"


def _using(old: str, new: str) -> str:
    """The USING clause the migration renders for a pair of NEW_PAIRS ("" for none)."""
    from generator.dialects import using_sql

    step = AlterColumnTypeStep("t", Column("c", parse_type(old), True), parse_type(new))
    using = using_sql(step)
    return f" USING {using}" if using else ""


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    from conftest import PG_ADMIN_URL, postgres_problem

    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    name = f"t_risk_{uuid.uuid4().hex[:12]}"  # one per xdist worker
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    try:
        yield pg_url_for(name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_every_pair_with_a_newer_type_is_tested() -> None:
    kinds = {parse_type(t).kind for pair in NEW_PAIRS for t in pair}
    assert {"smallint", "date", "timestamp", "timestamptz", "uuid", "json"} <= kinds
    assert "bytes" not in kinds  # converts to nothing else
    assert ("timestamp", "timestamptz") in NEW_PAIRS and ("text", "uuid") in NEW_PAIRS


def test_every_convertible_pair_is_tested() -> None:
    kinds = {parse_type(t).kind for pair in PAIRS for t in pair}
    assert kinds == {"integer", "bigint", "float", "decimal", "varchar", "text"}
    assert len(PAIRS) == 36


ALL_PAIRS = PAIRS + NEW_PAIRS


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_declared_rewrite_and_lock_match_the_server(pg_url: str, old: str, new: str) -> None:
    declared = _declared(old, new)
    table = "t_" + "_".join(ch for ch in f"{old}_{new}" if ch.isalnum() or ch == "_")[:50]
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            conn.exec_driver_sql(f"CREATE TABLE {table} (id integer PRIMARY KEY, c {_ddl(old)})")
            conn.exec_driver_sql(
                f"INSERT INTO {table} SELECT g, {_value(old, new)} "
                "FROM generate_series(1, 200) AS g"
            )
            conn.exec_driver_sql(f"CREATE INDEX ix_{table} ON {table} (c)")
        with engine.connect() as conn:
            before = conn.exec_driver_sql(
                f"SELECT relfilenode FROM pg_class WHERE relname = '{table}'"
            ).scalar()
        altering = engine.connect()
        watcher = engine.connect()
        try:
            tx = altering.begin()
            pid = altering.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            using = _using(old, new) if (old, new) in NEW_PAIRS else ""
            altering.exec_driver_sql(
                f"ALTER TABLE {table} ALTER COLUMN c TYPE {_ddl(new)}{using}".replace("%", "%%")
            )
            modes = set(
                watcher.exec_driver_sql(
                    "SELECT l.mode FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
                    f"WHERE l.pid = {pid} AND c.relname = '{table}' AND l.granted"
                ).scalars()
            )
            tx.commit()
        finally:
            altering.close()
            watcher.close()
        with engine.connect() as conn:
            after = conn.exec_driver_sql(
                f"SELECT relfilenode FROM pg_class WHERE relname = '{table}'"
            ).scalar()
    finally:
        engine.dispose()
    strongest = next((LOCK_MODES[m] for m in LOCK_MODES if m in modes), None)
    assert strongest == declared.lock, f"pg_locks showed {sorted(modes)}"
    assert (before != after) == declared.rewrites, (
        f"{old} -> {new}: declared rewrites={declared.rewrites}, relfilenode {before} -> {after}"
    )


def test_lint_and_the_review_say_what_the_risk_model_says(tmp_path: Path) -> None:
    """One source: SG102 fires, and the review says "rewrites", exactly for the pairs the
    risk model (proven above on the server) declares rewriting."""
    changes = tmp_path / "changes"
    changes.mkdir()
    tables = "".join(
        f"  - op: create_table\n    name: t{i}\n    columns:\n"
        f"      - {{name: id, type: integer, primary_key: true}}\n"
        f'      - {{name: c, type: "{old}", nullable: true}}\n'
        for i, (old, _) in enumerate(ALL_PAIRS)
    )
    (changes / "0000_base.yaml").write_text(
        f"id: base\ndescription: x\noperations:\n{tables}", encoding="utf-8"
    )
    for i, (old, new) in enumerate(ALL_PAIRS, start=1):
        (changes / f"{i:04d}_c{i}.yaml").write_text(
            f"id: c{i}\ndescription: x\noperations:\n"
            f"  - {{op: alter_column_type, table: t{i - 1}, column: c, "
            f'from: "{old}", to: "{new}"}}\n',
            encoding="utf-8",
        )
    loaded = load_changes(changes, display_base=tmp_path, lint=False)
    rendered = generate(loaded)
    sg102 = {f.file for f in lint.lint(loaded) if f.rule.id == "SG102"}
    for i, (old, new) in enumerate(ALL_PAIRS, start=1):
        declared = _declared(old, new).rewrites
        name = f"{i:04d}_c{i}"
        # SG102 is a rewrite under ACCESS EXCLUSIVE: an online conversion (the default for a
        # table with a primary key) trips it no more
        assert f"changes/{name}.yaml" not in sg102, (old, new)
        review = rendered[f"review/{name}.md"]
        risk_line = next(ln for ln in review.splitlines() if ln.startswith("**Risk:**"))
        # a conversion that rewrites runs online (the default): no rewrite under a lock
        online = f"PostgreSQL: online type change of t{i - 1}"
        assert (online in risk_line) == declared, (old, new, risk_line)
        assert "PostgreSQL rewrites" not in risk_line
        # the unit's row in the review's PostgreSQL risk table says the same
        change = loaded[i]
        (step,) = change.steps
        assert isinstance(step, AlterColumnTypeStep)
        assert step.online == declared
        assert not step.risk("postgresql").rewrites
        (unit,) = plan(change.steps, change.before, "postgresql")
        assert unit.kind == ("online_type_change" if declared else "alter_table"), (old, new)
        assert not unit.risk("postgresql").rewrites, (old, new)
        pg_table = review.split("**PostgreSQL**", 1)[1].split("**SQLite**", 1)[0]
        assert "| **yes** |" not in pg_table, (old, new, pg_table)
        assert ("online type change" in pg_table) == declared, (old, new, pg_table)
