"""A password in a database URL never appears in any output, log line or error message."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from support import ROOT, cli

from generator.cli import Exit

SECRET = "Sup3r$ecret:pw@x"
ENCODED = quote(SECRET, safe="")

FAILING_URLS = [
    # database that does not exist: the server answers, the connection fails
    f"postgresql+psycopg://postgres:{ENCODED}@127.0.0.1:5432/no_such_database_x",
    f"postgresql+asyncpg://postgres:{ENCODED}@127.0.0.1:5432/no_such_database_x",
    # nothing listens there
    f"postgresql://postgres:{ENCODED}@127.0.0.1:1/db",
    # cannot be parsed (bad port), unknown driver, unsupported backend
    f"postgresql://postgres:{ENCODED}@127.0.0.1:notaport/db",
    f"postgresql+nodriver://postgres:{ENCODED}@127.0.0.1/db",
    f"mysql://root:{ENCODED}@127.0.0.1/db",
]
COMMANDS = [
    ("upgrade",),
    ("upgrade", "--to", "0000"),
    ("downgrade", "--to", "base"),
    ("verify",),
    ("status",),
]


@pytest.mark.parametrize("url", FAILING_URLS)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_failing_commands_never_show_the_password(
    url: str, command: tuple[str, ...], log_format: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        result = cli("--log-format", log_format, *command, "--url", url, root=ROOT)
    assert result.exit_code in (Exit.USAGE, Exit.DATABASE), result.output
    text = result.output + caplog.text
    assert "Traceback" not in text
    for form in (SECRET, ENCODED, "Sup3r"):
        assert form not in text
    assert "error" in result.stderr


def test_password_from_the_environment_is_hidden_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", FAILING_URLS[0])
    result = cli("verify", root=ROOT)
    assert result.exit_code == Exit.DATABASE
    assert "Sup3r" not in result.output
    assert 'database "no_such_database_x" does not exist' in result.stderr


def test_a_working_url_with_a_password_is_shown_masked(tmp_path: object) -> None:
    # SQLite ignores credentials, so the URL works and is echoed: masked.
    result = cli("upgrade", "--url", f"sqlite://user:{ENCODED}@/{tmp_path}/x.db", root=ROOT)
    assert "Sup3r" not in result.output
