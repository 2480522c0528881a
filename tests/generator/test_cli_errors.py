"""Bad input and unexpected failures end in one line and a documented exit code, never a
traceback: a driver that is not installed or unknown (2), a project without env.py (2), and
any exception no command expected (4, the traceback only with SCHEMAGEN_DEBUG=1, redacted)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from support import ROOT, cli, copy_project

from generator.cli import Exit

URL_COMMANDS = [
    ("upgrade",),
    ("downgrade", "--to", "base"),
    ("verify",),
    ("status",),
    ("status", "--json"),
]
SECRET = "Zq9Crash@Pass:w%rd"


def one_line_error(result: Result) -> str:
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", URL_COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("driver", "package"),
    [("psycopg2", "psycopg2-binary"), ("pg8000", "pg8000")],
)
def test_a_driver_that_is_not_installed_is_named_with_its_package(
    command: tuple[str, ...], driver: str, package: str
) -> None:
    url = f"postgresql+{driver}://postgres:{SECRET}@127.0.0.1:5432/test"
    result = cli(*command, "--url", url, root=ROOT)
    assert result.exit_code == Exit.USAGE, result.output
    line = one_line_error(result)
    assert f"postgresql+{driver} driver is not installed" in line
    assert f"pip install {package}" in line
    assert "Zq9Crash" not in result.output


@pytest.mark.parametrize("command", URL_COMMANDS, ids=" ".join)
def test_an_unknown_driver_is_a_usage_error(command: tuple[str, ...]) -> None:
    result = cli(*command, "--url", "postgresql+nodriver://postgres@127.0.0.1/test", root=ROOT)
    assert result.exit_code == Exit.USAGE, result.output
    line = one_line_error(result)
    assert "unknown driver 'nodriver'" in line and "psycopg" in line


@pytest.mark.parametrize("command", [*URL_COMMANDS, ("plan", "0001"), ("plan",)], ids=" ".join)
def test_a_project_without_env_py_is_named(tmp_path: Path, command: tuple[str, ...]) -> None:
    root = copy_project(tmp_path / "project")
    env = root / "generated_migrations" / "env.py"
    env.unlink()
    database = tmp_path / "x.db"
    args = command if command[0] == "plan" else (*command, "--url", f"sqlite:///{database}")
    result = cli(*args, root=root)
    assert result.exit_code == Exit.USAGE, result.output
    line = one_line_error(result)
    assert f"no Alembic environment at {env}" in line
    assert not database.exists()


FAILING_REVISION = '''"""A hand-written revision with a bug: fails, quoting the URL and password."""

import logging

from alembic import op

revision = "c0ffee_buggy"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    url = op.get_bind().engine.url.render_as_string(hide_password=False)
    try:
        raise KeyError(url)
    except KeyError:
        logging.getLogger("schemagen").exception("lookup failed for %s", url)
    raise ValueError(f"cannot continue with {url}\\nsecond line")


def downgrade() -> None:
    pass
'''


@pytest.mark.parametrize("debug", [False, True], ids=["quiet", "SCHEMAGEN_DEBUG"])
def test_an_unexpected_exception_is_one_line_and_exit_4(
    db_url: str,
    dialect: str,
    tmp_path: Path,
    debug: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = copy_project(tmp_path / "project")
    (root / "generated_migrations" / "versions" / "c0ffee_buggy.py").write_text(FAILING_REVISION)
    url = db_url
    if dialect == "postgresql":  # pg_hba trusts the test server: the password travels unused
        url = sa.make_url(db_url).set(password=SECRET).render_as_string(hide_password=False)
    if debug:
        monkeypatch.setenv("SCHEMAGEN_DEBUG", "1")
    else:
        monkeypatch.delenv("SCHEMAGEN_DEBUG", raising=False)
    result = cli("upgrade", "--url", url, root=root)
    assert result.exit_code == Exit.DATABASE, result.output
    text = result.output + caplog.text
    assert "Zq9Crash" not in text and "Pass:w" not in text
    # the revision's own logged traceback reaches the log, masked
    assert "Traceback" in result.stdout and "KeyError" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unexpected ValueError: cannot continue with ")
    if debug:
        assert "Traceback (most recent call last)" in result.stderr
        assert 'raise ValueError(f"cannot continue with {url}' in result.stderr
    else:
        assert "Traceback" not in result.stderr
        assert result.stderr.strip() == last
        assert last.endswith("(set SCHEMAGEN_DEBUG=1 for the traceback)")
