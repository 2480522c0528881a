"""docs/adopting.md's existing-database path, command by command, on SQLite as written and on
PostgreSQL: a legacy project made by `alembic init` with three hand-written revisions and its
database at their head joins schemagen; a database built by plain SQL is inspected and
stamped."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pg_url_for
from support import ROOT
from test_inspect import SHOP, SHOP_INDEXES, _drop, _empty

DOC = ROOT / "docs" / "adopting.md"
SECTION = "## An existing database"
BLOCK_RE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LEGACY_URL = "sqlite:///legacy.db"
REPORTING_URL = "sqlite:///../reporting.db"
BIN = Path(sys.executable).parent

REVISIONS = {
    "3f2a9c1b7d10_users.py": (
        None,
        """op.create_table(
        "users",
        sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True),
        sa.Column("email", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )""",
        'op.drop_table("users")',
    ),
    "8e41d2a6b5c3_posts.py": (
        "3f2a9c1b7d10",
        """op.create_table(
        "posts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(),
                  primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
    )""",
        'op.drop_table("posts")',
    ),
    "c07b9e5f1a24_posts_index.py": (
        "8e41d2a6b5c3",
        'op.create_index("ix_posts_user_id", "posts", ["user_id"])',
        'op.drop_index("ix_posts_user_id", table_name="posts")',
    ),
}


def _revision(name: str, down: str | None, up: str, back: str) -> str:
    return (
        f'"""{name}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f"revision = {name.split('_')[0]!r}\ndown_revision = {down!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n    {up}\n\n\ndef downgrade() -> None:\n    {back}\n"
    )


def doc_script(legacy_url: str, reporting_url: str) -> str:
    """The section's `sh` blocks as they are, each `yaml` block written to the file its first
    line names (python and toml blocks are shown, not run: other tests run them)."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    following = section.find("\n## ", len(SECTION))
    section = section if following < 0 else section[:following]
    parts = []
    for lang, body in BLOCK_RE.findall(section):
        if lang == "sh":
            parts.append(body)
        elif lang == "yaml":
            target = body.splitlines()[0].removeprefix("# file: ").strip()
            parts.append(f"cat > {shlex.quote(target)} <<'SCHEMAGEN_EOF'\n{body}SCHEMAGEN_EOF\n")
    script = "".join(parts)
    assert LEGACY_URL in script and REPORTING_URL in script
    return script.replace(LEGACY_URL, legacy_url).replace(REPORTING_URL, reporting_url)


def _legacy(work: Path, legacy_url: str, reporting_url: str, env: dict[str, str]) -> None:
    """What the team had before: an `alembic init` project at its head, a plain-SQL database."""
    legacy = work / "legacy"
    legacy.mkdir()
    subprocess.run(
        [str(BIN / "alembic"), "init", "migrations"],
        cwd=legacy,
        env=env,
        check=True,
        capture_output=True,
    )
    ini = legacy / "alembic.ini"
    ini.write_text(
        re.sub(r"(?m)^sqlalchemy\.url = .*$", f"sqlalchemy.url = {legacy_url}", ini.read_text()),
        encoding="utf-8",
    )
    for name, (down, up, back) in REVISIONS.items():
        (legacy / "migrations" / "versions" / name).write_text(
            _revision(name, down, up, back), encoding="utf-8"
        )
    done = subprocess.run(
        [str(BIN / "alembic"), "upgrade", "head"],
        cwd=legacy,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    import sqlalchemy as sa

    dialect = "sqlite" if reporting_url.startswith("sqlite") else "postgresql"
    url = reporting_url.replace("../", f"{work}/") if dialect == "sqlite" else reporting_url
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in (*SHOP[dialect], *SHOP_INDEXES):
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _run_page(work: Path, legacy_url: str, reporting_url: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    _legacy(work, legacy_url, reporting_url, env)
    script = "set -euxo pipefail\n" + doc_script(legacy_url, reporting_url)
    done = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_existing_database_path_of_docs_adopting_md(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if dialect == "sqlite":
        legacy_url, reporting_url = LEGACY_URL, REPORTING_URL
    else:
        legacy_url = pg_url_for(request.getfixturevalue("pg_database"))
        reporting_url = _empty(tmp_path, dialect, legacy_url, "reporting")
    try:
        out = _run_page(tmp_path, legacy_url, reporting_url)
    finally:
        if dialect == "postgresql":
            _drop(dialect, legacy_url, reporting_url)
    legacy = tmp_path / "legacy"
    baseline = (legacy / "changes" / "0000_baseline.yaml").read_text(encoding="utf-8")
    assert "after: c07b9e5f1a24" in baseline
    assert "default: now" in baseline
    assert "the baseline continues it (after: c07b9e5f1a24)" in out
    assert "database is at revision 0001" in out
    assert "database is at revision c07b9e5f1a24" in out
    assert "revision: 0001 (head: 0001)" in out
    assert "c07b9e5f1a24 " in out  # alembic current, below the baseline
    assert "only alembic_version was written, no migration ran" in out
    assert "revision: 0000 (head: 0000)" in out
    assert "FAILED" not in out
    naming = (legacy / "schemagen.toml").read_text(encoding="utf-8")
    if dialect == "postgresql":
        assert 'primary_key = "{table}_pkey"' in naming
        assert 'foreign_key = "{table}_{column}_fkey"' in naming
