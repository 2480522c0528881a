"""Joining an existing Alembic history: three hand-written revisions with hash ids built the
database; the baseline continues the last of them (`after:`), `schemagen stamp` records where
a database stands without running anything, a schemagen change runs after the baseline, and
downgrades go back into the hand-written history, with `status` right at every step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import cli, execute

from generator import db
from generator.cli import Exit

H1, H2, H3 = "3f2a9c1b7d10", "8e41d2a6b5c3", "c07b9e5f1a24"
HAND_WRITTEN = {
    H1: (
        None,
        """op.create_table(
        "users",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("email", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )""",
        'op.drop_table("users")',
    ),
    H2: (
        H1,
        """op.create_table(
        "posts",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_posts"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_posts_user_id_users", ondelete="CASCADE"
        ),
    )""",
        'op.drop_table("posts")',
    ),
    H3: (
        H2,
        'op.create_index("ix_posts_user_id", "posts", ["user_id"])',
        'op.drop_index("ix_posts_user_id", table_name="posts")',
    ),
}
BASELINE = f"""\
id: baseline
after: {H3}
description: |
  What the hand-written history built, up to {H3}.
operations:
  - op: create_table
    name: users
    columns:
      - {{name: id, type: integer, primary_key: true}}
      - {{name: email, type: varchar(255), nullable: false, unique: true}}
  - op: create_table
    name: posts
    columns:
      - {{name: id, type: integer, primary_key: true}}
      - name: user_id
        type: integer
        nullable: false
        references: {{table: users, column: id, on_delete: cascade}}
      - {{name: title, type: text, nullable: true}}
    indexes:
      - {{name: ix_posts_user_id, columns: [user_id]}}
"""
ADD_NOTE = """\
id: add_note
description: |
  Posts get a note.
operations:
  - op: add_column
    table: posts
    column: {name: note, type: text, nullable: true}
"""


def _revision_file(rev: str, down: str | None, up: str, down_sql: str) -> str:
    return f'''"""Hand-written revision {rev}."""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    {up}


def downgrade() -> None:
    {down_sql}
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    assert cli("init", str(root)).exit_code == Exit.OK
    versions = root / "generated_migrations" / "versions"
    versions.mkdir()
    for n, (rev, (down, up, down_sql)) in enumerate(HAND_WRITTEN.items()):
        (versions / f"{rev}_step{n + 1}.py").write_text(
            _revision_file(rev, down, up, down_sql), encoding="utf-8"
        )
    (root / "changes" / "0000_baseline.yaml").write_text(BASELINE, encoding="utf-8")
    (root / "changes" / "0001_add_note.yaml").write_text(ADD_NOTE, encoding="utf-8")
    result = cli("generate", root=root)
    assert result.exit_code == Exit.OK, result.output
    return root


def _status(project: Path, url: str) -> tuple[int, dict[str, Any]]:
    result = cli("status", "--json", "--url", url, root=project)
    return result.exit_code, json.loads(result.stdout)


def _pending(report: dict[str, Any]) -> list[str]:
    return [p["change"] for p in report["pending"]]


def _columns(url: str, table: str) -> list[str]:
    engine = db.make_engine(sa.make_url(url))
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            if not insp.has_table(table):
                return []
            return [c["name"] for c in insp.get_columns(table)]
    finally:
        engine.dispose()


def test_the_baseline_continues_the_hand_written_head(project: Path) -> None:
    text = (project / "generated_migrations/versions/0000_baseline.py").read_text("utf-8")
    assert f'down_revision = "{H3}"' in text
    assert "op.create_table" not in text  # the history built the tables
    assert cli("generate", "--check", root=project).exit_code == Exit.OK


def test_stamp_change_downgrade_into_the_hand_written_history(project: Path, db_url: str) -> None:
    # The existing database: built by the hand-written history alone.
    result = cli("upgrade", "--to", H3, "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    code, report = _status(project, db_url)
    assert (code, report["state"], report["revision"]) == (Exit.FAILED, "behind", H3)
    assert _pending(report) == ["0000_baseline", "0001_add_note"]

    result = cli("stamp", "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    assert f"(it records {H3})" in result.stdout
    assert "13 passed, 0 failed" in result.stdout
    assert "only alembic_version was written, no migration ran" in result.stdout
    code, report = _status(project, db_url)
    assert (code, report["revision"], _pending(report)) == (Exit.FAILED, "0000", ["0001_add_note"])

    result = cli("stamp", "--url", db_url, root=project)  # again: nothing to do
    assert result.exit_code == Exit.OK
    assert "already" in result.stdout

    result = cli("upgrade", "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    code, report = _status(project, db_url)
    assert (code, report["state"], report["revision"]) == (Exit.OK, "at_head", "0001")
    assert cli("verify", "--url", db_url, root=project).exit_code == Exit.OK
    assert "note" in _columns(db_url, "posts")

    result = cli("downgrade", "--to", H3, "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    code, report = _status(project, db_url)
    assert (code, report["revision"]) == (Exit.FAILED, H3)
    assert _pending(report) == ["0000_baseline", "0001_add_note"]
    assert _columns(db_url, "posts") == ["id", "user_id", "title"]  # the baseline dropped nothing
    verified = cli("verify", "--url", db_url, root=project)
    assert verified.exit_code == Exit.OK, verified.output

    result = cli("downgrade", "--to", H1, "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    code, report = _status(project, db_url)
    assert (code, report["revision"]) == (Exit.FAILED, H1)
    assert _pending(report) == [f"{H2}_step2", f"{H3}_step3", "0000_baseline", "0001_add_note"]
    assert _columns(db_url, "posts") == []

    # The schema at H1 is not the baseline's: stamp refuses and writes nothing.
    result = cli("stamp", "--url", db_url, root=project)
    assert result.exit_code == Exit.FAILED, result.output
    assert "FAILED  tables" in result.stdout
    assert "not stamped" in result.stderr
    assert _status(project, db_url)[1]["revision"] == H1

    result = cli("upgrade", "--url", db_url, root=project)
    assert result.exit_code == Exit.OK, result.output
    code, report = _status(project, db_url)
    assert (code, report["revision"]) == (Exit.OK, "0001")


def test_stamp_refuses_off_graph_revisions(project: Path, db_url: str) -> None:
    assert cli("upgrade", "--to", H3, "--url", db_url, root=project).exit_code == Exit.OK
    result = cli("stamp", "deadbeef0000", "--url", db_url, root=project)
    assert result.exit_code == Exit.USAGE
    assert "'deadbeef0000' is not in this project's revision graph" in result.stderr
    execute(db_url, "UPDATE alembic_version SET version_num = 'feedface1234'")
    result = cli("stamp", "--url", db_url, root=project)
    assert result.exit_code == Exit.DATABASE
    assert "'feedface1234'" in result.stderr
    assert "Traceback" not in result.output
    code, report = _status(project, db_url)
    assert (code, report["revision"]) == (Exit.DATABASE, "feedface1234")


def test_after_is_for_the_baseline_only(project: Path) -> None:
    spec = project / "changes" / "0001_add_note.yaml"
    spec.write_text(f"after: {H2}\n" + ADD_NOTE, encoding="utf-8")
    result = cli("generate", root=project)
    assert result.exit_code == Exit.INVALID_SPEC
    assert "0001_add_note.yaml:1:8: after: only the baseline" in result.stderr


def test_a_version_table_of_its_own_beside_another_owners(tmp_path: Path, db_url: str) -> None:
    """Another owner's alembic_version (a library that checks its revision at start-up) never
    moves: schemagen records its revisions in the configured version_table."""
    root = tmp_path / "beside"
    assert cli("init", str(root)).exit_code == Exit.OK
    config = root / "schemagen.toml"
    config.write_text(
        config.read_text("utf-8").replace(
            "[naming]", 'version_table = "schemagen_version"\n\n[naming]'
        ),
        "utf-8",
    )
    (root / "changes" / "0000_add_note.yaml").write_text(
        ADD_NOTE.replace("add_column", "create_table").replace(
            "table: posts\n    column: {name: note, type: text, nullable: true}",
            "name: notes\n    columns: [{name: id, type: integer, primary_key: true}]",
        ),
        "utf-8",
    )
    assert cli("generate", root=root).exit_code == Exit.OK
    execute(
        db_url,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "INSERT INTO alembic_version VALUES ('otherlib0001')",
    )
    code, report = _status(root, db_url)
    assert (code, report["state"], report["revision"]) == (Exit.FAILED, "empty", None)
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert cli("verify", "--url", db_url, root=root).exit_code == Exit.OK
    code, report = _status(root, db_url)
    assert (code, report["revision"]) == (Exit.OK, "0000")
    assert cli("downgrade", "--to", "base", "--url", db_url, root=root).exit_code == Exit.OK
    assert cli("stamp", "--url", db_url, root=root).exit_code == Exit.FAILED  # no notes table
    assert cli("upgrade", "--url", db_url, root=root).exit_code == Exit.OK
    engine = db.make_engine(sa.make_url(db_url))
    try:
        with engine.connect() as conn:
            other = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            assert list(other) == ["otherlib0001"]
            own = conn.exec_driver_sql("SELECT version_num FROM schemagen_version").scalars()
            assert list(own) == ["0000"]
    finally:
        engine.dispose()


NOTES = """\
id: create_notes
description: |
  Notes.
operations:
  - op: create_table
    name: notes
    columns: [{name: id, type: integer, primary_key: true}]
"""


def test_another_owners_tables_beside_ours_with_foreign_tables(tmp_path: Path, db_url: str) -> None:
    """A library's tables in the same schema: without foreign_tables the tables check names
    the stranger and verify, stamp and upgrade's pre-checks fail; with it they pass, inspect
    leaves the stranger out, and a table outside the globs still fails."""
    root = tmp_path / "beside"
    assert cli("init", str(root)).exit_code == Exit.OK
    (root / "changes" / "0000_create_notes.yaml").write_text(NOTES, "utf-8")
    assert cli("generate", root=root).exit_code == Exit.OK
    execute(db_url, "CREATE TABLE optuna_studies (study_id INTEGER PRIMARY KEY, name TEXT)")
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert "optuna_studies" in result.output

    config = root / "schemagen.toml"
    config.write_text(
        config.read_text("utf-8").replace(
            '# foreign_tables = ["optuna_*"]', 'foreign_tables = ["optuna_*", "lib?_meta"]'
        ),
        "utf-8",
    )
    assert cli("generate", "--check", root=root).exit_code != Exit.OK  # the checks changed
    assert cli("generate", root=root).exit_code == Exit.OK
    result = cli("upgrade", "--url", db_url, root=root)
    assert result.exit_code == Exit.OK, result.output
    assert cli("verify", "--url", db_url, root=root).exit_code == Exit.OK
    execute(db_url, "CREATE TABLE lib1_meta (k TEXT)")
    assert cli("verify", "--url", db_url, root=root).exit_code == Exit.OK
    inspected = cli("inspect", "--url", db_url, "-o", "-", root=root)
    assert inspected.exit_code == Exit.OK, inspected.output
    assert "name: notes" in inspected.stdout and "optuna" not in inspected.stdout

    execute(db_url, "CREATE TABLE optuna2 (k TEXT)")  # not optuna_*: `_` is not a wildcard
    result = cli("verify", "--url", db_url, root=root)
    assert result.exit_code == Exit.FAILED, result.output
    assert "optuna2" in result.output
    assert "optuna_studies" not in result.output

    # The stranger's rows are no business of the downgrade either.
    execute(db_url, "DROP TABLE optuna2")
    execute(db_url, "INSERT INTO optuna_studies VALUES (1, 'study')")
    assert cli("downgrade", "--to", "base", "--url", db_url, root=root).exit_code == Exit.OK
    engine = db.make_engine(sa.make_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT name FROM optuna_studies").scalars()
            assert list(rows) == ["study"]
    finally:
        engine.dispose()
