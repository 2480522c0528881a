"""A password in a database URL never appears in any output, log line or file the tool writes.

The matrix: every command that takes a URL (upgrade, downgrade, verify, status, status --json;
generate, plan, lint and schema take none) x every URL form SQLAlchemy and the drivers accept
a password in x both log formats, on working connections (a real PostgreSQL role with a
password; pg_hba may trust it, but the password still travels through every path) and on
failing ones (unreachable host, wrong database, missing or unknown driver, unparseable URL),
since errors are where secrets leak. Each run's stdout, stderr, captured log records and every
file under the project directory (``.schemagen/`` included) are searched for the password.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from click.testing import Result
from conftest import PG_ADMIN_URL, postgres_problem
from support import ROOT, cli, copy_project

from generator import db, migrate
from generator.cli import Exit

# '@' and ':' unencoded break naive parsing, '%Z' is not a valid escape, '/' ends a naive host.
SECRET = "Kx7Hunter@2Secret:Wq%Zy/v"
ENCODED = quote(SECRET, safe="")
# Any spelling of the password (raw, percent-encoded once or twice, JSON-escaped) contains
# one of these.
FRAGMENTS = ("Kx7Hunter", "2Secret", "Wq%Zy", "Wq%25Zy")

COMMANDS = [
    ("upgrade",),
    ("downgrade", "--to", "0004"),
    ("verify",),
    ("status",),
    ("status", "--json"),
]
ORDERED = [COMMANDS[1], COMMANDS[2], COMMANDS[3], COMMANDS[0], COMMANDS[4]]
LOG_FORMATS = ("text", "json")


def pg_url(
    form: str,
    user: str,
    database: str,
    host: str = "127.0.0.1",
    port: str = "5432",
    driver: str = "psycopg",
) -> str:
    """The PostgreSQL URL of one form, with SECRET as the password."""
    base = f"postgresql+{driver}"
    if form == "userinfo-encoded":
        return f"{base}://{user}:{ENCODED}@{host}:{port}/{database}"
    if form == "userinfo-raw":
        return f"{base}://{user}:{SECRET}@{host}:{port}/{database}"
    if form == "query":
        return f"{base}://{user}@{host}:{port}/{database}?password={ENCODED}"
    if form == "query-raw":  # SQLAlchemy cannot parse an '@' in the query: fails, masked
        return f"{base}://{user}@{host}:{port}/{database}?application_name=sg&password={SECRET}"
    if form == "libpq-conninfo":  # a libpq connection string passed to psycopg whole
        conninfo = f"host={host} port={port} user={user} password='{SECRET}' dbname={database}"
        return f"{base}:///?conninfo={quote(conninfo, safe='')}"
    if form == "libpq-host":  # password= smuggled inside host=: never connects
        return f"{base}://{user}@/{database}?host={quote(f'{host} password={SECRET}', safe='')}"
    raise AssertionError(form)


def sqlite_url(form: str, path: Path, driver: str = "pysqlite") -> str:
    base = f"sqlite+{driver}"
    if form == "userinfo-encoded":
        return f"{base}://user:{ENCODED}@/{path}"
    if form == "userinfo-raw":
        return f"{base}://user:{SECRET}@/{path}"
    raise AssertionError(form)


def leaks(text: str) -> list[str]:
    return [f for f in FRAGMENTS if f in text]


def file_leaks(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.suffix not in (".db", ".db-journal", ".db-wal"):
            data = path.read_bytes()
            found += [f"{path}: {f}" for f in FRAGMENTS if f.encode() in data]
    return found


def run(
    root: Path,
    url: str,
    command: tuple[str, ...],
    log_format: str,
    caplog: pytest.LogCaptureFixture,
) -> Result:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        result = cli("--log-format", log_format, *command, "--url", url, root=root)
    text = result.stdout + result.stderr + caplog.text
    assert not leaks(text), (command, log_format, leaks(text), text)
    assert "Traceback" not in text, text
    return result


# ------------------------------------------------------------------- working URLs


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("redaction") / "project")


@pytest.fixture(scope="module")
def pg_role_database() -> Iterator[tuple[str, str]]:
    """A login role with SECRET as its password and a database it owns, migrated to head
    once for the whole module (the tests below only move it 0005 -> 0004 -> 0005)."""
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    suffix = uuid.uuid4().hex[:12]
    role, database = f"sg_role_{suffix}", f"t_redact_{suffix}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    literal = SECRET.replace("'", "''")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{literal}'"))
        conn.execute(sa.text(f'CREATE DATABASE "{database}" OWNER "{role}" TEMPLATE template0'))
    try:
        url = sa.make_url(pg_url("userinfo-encoded", role, database))
        migrate.upgrade(ROOT / "generated_migrations", url, "head")
        yield role, database
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("redaction_sqlite") / "secret.db"
    migrate.upgrade(ROOT / "generated_migrations", sa.make_url(f"sqlite:///{path}"), "head")
    return path


WORKING = [
    ("postgresql", "psycopg", "userinfo-encoded"),
    ("postgresql", "psycopg", "userinfo-raw"),
    ("postgresql", "psycopg", "query"),
    ("postgresql", "psycopg", "libpq-conninfo"),
    ("postgresql", "asyncpg", "userinfo-encoded"),
    ("postgresql", "asyncpg", "query"),
]
# SQLite takes no password (SQLAlchemy refuses credentials in a SQLite URL; only SQLCipher's
# driver reads one, as its key), so on SQLite every form is a failing case below.


@pytest.mark.db
@pytest.mark.parametrize("log_format", LOG_FORMATS)
@pytest.mark.parametrize(
    ("dialect_", "driver", "form"), WORKING, ids=["-".join(w) for w in WORKING]
)
def test_working_urls_never_show_the_password(
    dialect_: str,
    driver: str,
    form: str,
    log_format: str,
    project: Path,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if dialect_ == "postgresql":
        role, database = request.getfixturevalue("pg_role_database")
        url = pg_url(form, role, database, driver=driver)
    else:
        url = sqlite_url(form, request.getfixturevalue("sqlite_file"), driver)
    # downgrade, verify, status (behind), upgrade, status --json (at head)
    expected = [Exit.OK, Exit.OK, Exit.FAILED, Exit.OK, Exit.OK]
    outputs = []
    for command, code in zip(ORDERED, expected, strict=True):
        result = run(project, url, command, log_format, caplog)
        assert result.exit_code == code, (command, result.output)
        outputs.append(result.stdout)
    # the commands really ran against the database, and its URL was shown masked
    assert "database is at revision 0004" in outputs[0]
    assert "29 passed, 0 failed" in outputs[1] or "0 failed" in outputs[1]
    assert "pending:  0005_index_ticks_by_instrument_time" in outputs[2]
    assert "database is at revision 0005" in outputs[3]
    assert '"state": "at_head"' in outputs[4]
    if form.startswith("userinfo"):
        assert ":***@" in outputs[2]
    assert not file_leaks(project), file_leaks(project)
    assert (project / ".schemagen" / "verify.json").is_file()


# ------------------------------------------------------------------- failing URLs

PG_FORMS = ["userinfo-encoded", "userinfo-raw", "query", "query-raw", "libpq-conninfo"]
FAILURES = {
    "unreachable-host": {"port": "1"},
    "wrong-database": {"database": "no_such_database_x"},
    "driver-not-installed": {"driver": "psycopg2"},
    "unknown-driver": {"driver": "nodriver"},
    "unparseable": {"port": "notaport"},
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("form", [*PG_FORMS, "libpq-host"])
def test_failing_postgresql_urls_never_show_the_password(
    form: str, failure: str, project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if postgres_problem() and failure == "wrong-database":
        pytest.skip("needs a PostgreSQL server to refuse the database")
    parts = {"user": "postgres", "database": "test", **FAILURES[failure]}
    url = pg_url(form, **parts)
    for command in COMMANDS:
        for log_format in LOG_FORMATS:
            result = run(project, url, command, log_format, caplog)
            assert result.exit_code in (Exit.USAGE, Exit.DATABASE), (command, result.output)
            assert "error" in result.stderr
    assert not file_leaks(project), file_leaks(project)


@pytest.mark.parametrize("form", ["userinfo-encoded", "userinfo-raw"])
@pytest.mark.parametrize(
    "failure", ["credentials", "missing-file", "no-directory", "driver-not-installed"]
)
@pytest.mark.parametrize("driver", ["pysqlite", "aiosqlite"])
def test_failing_sqlite_urls_never_show_the_password(
    form: str,
    failure: str,
    driver: str,
    project: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = {
        "credentials": tmp_path / "exists.db",
        "missing-file": tmp_path / "missing.db",
        "no-directory": tmp_path / "no" / "such" / "dir.db",
        "driver-not-installed": tmp_path / "x.db",
    }[failure]
    (tmp_path / "exists.db").touch()
    url = sqlite_url(form, path, "pysqlcipher" if failure == "driver-not-installed" else driver)
    for command in COMMANDS:
        for log_format in LOG_FORMATS:
            result = run(project, url, command, log_format, caplog)
            assert result.exit_code in (Exit.USAGE, Exit.DATABASE), (command, result.output)
            assert "error" in result.stderr
    assert not file_leaks(project), file_leaks(project)


@pytest.mark.db
def test_password_from_the_environment_is_hidden_too(
    monkeypatch: pytest.MonkeyPatch, pg_database: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url("userinfo-raw", "postgres", "no_such_database_x"))
    result = cli("verify", root=ROOT)
    assert result.exit_code == Exit.DATABASE
    assert not leaks(result.output)
    assert 'database "no_such_database_x" does not exist' in result.stderr


def test_an_unencoded_at_sign_ends_the_password_at_the_last_one() -> None:
    url = db.resolve_url(pg_url("userinfo-raw", "someone", "somedb"))
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "someone",
        SECRET,
        "127.0.0.1",
        5432,
        "somedb",
    )
    assert not leaks(db.redact.safe_url(url))


@pytest.mark.parametrize(
    "conninfo",
    [
        # a password with a space, unquoted: libpq quotes the second word in its error
        "host=127.0.0.1 user=postgres password=Kx7Hunter 2Secret dbname=test",
        # a quote left open: the rest of the string is the password
        "host=127.0.0.1 user=postgres password='Kx7Hunter 2Secret dbname=test",
    ],
    ids=["unquoted-space", "unclosed-quote"],
)
def test_malformed_libpq_strings_never_show_the_password(
    conninfo: str, project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql+psycopg:///?conninfo={quote(conninfo, safe='')}"
    for command in COMMANDS:
        for log_format in LOG_FORMATS:
            result = run(project, url, command, log_format, caplog)
            assert result.exit_code in (Exit.USAGE, Exit.DATABASE), (command, result.output)
    assert not file_leaks(project), file_leaks(project)


def test_passwords_recorded_by_earlier_versions_are_masked_on_the_next_verify(
    tmp_path: Path,
) -> None:
    root = copy_project(tmp_path / "project")
    (root / ".schemagen").mkdir()
    leaked = {  # what verify.json held before passwords were masked in every form
        f"postgresql+psycopg://postgres@127.0.0.1/db?password={ENCODED}": {"at": "1"},
        "sqlite://u:***@2Secret:Wq%Zy/v@/x.db": {"at": "2"},
    }
    (root / ".schemagen" / "verify.json").write_text(json.dumps(leaked))
    database = tmp_path / "x.db"
    migrate.upgrade(root / "generated_migrations", sa.make_url(f"sqlite:///{database}"), "0000")
    assert cli("verify", "--url", f"sqlite:///{database}", root=root).exit_code == Exit.OK
    assert not file_leaks(root), file_leaks(root)
    kept = json.loads((root / ".schemagen" / "verify.json").read_text())
    assert len(kept) == 3
