"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is found at ``TEST_POSTGRES_URL`` (default: the local server on 127.0.0.1:5432).
Each PostgreSQL test gets a database of its own, dropped afterwards. When the server is
unreachable the PostgreSQL half is skipped with a loud reason, except under ``CI=true``,
where that is a failure: a CI run must test both dialects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DIALECTS = ("sqlite", "postgresql")
ROOT = Path(__file__).resolve().parents[1]

_pg_problem: str | None = None
_pg_checked = False


def postgres_problem() -> str | None:
    """None when PostgreSQL is reachable, else why not (checked once per session)."""
    global _pg_problem, _pg_checked
    if not _pg_checked:
        _pg_checked = True
        try:
            engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 5})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
        except Exception as exc:  # any failure to connect means "unreachable"
            _pg_problem = f"PostgreSQL at {sa.make_url(PG_ADMIN_URL)!r} unreachable: {exc}"
    return _pg_problem


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = postgres_problem()
    if problem and os.environ.get("CI") == "true":
        raise pytest.UsageError(f"CI=true and {problem}; PostgreSQL tests must not be skipped")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    problem = postgres_problem()
    if problem:
        terminalreporter.write_sep("!", "PostgreSQL tests were SKIPPED", red=True)
        terminalreporter.write_line(problem)


def pg_url_for(database: str, driver: str = "psycopg") -> str:
    return (
        sa.make_url(PG_ADMIN_URL)
        .set(drivername=f"postgresql+{driver}", database=database)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; yields its name."""
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A sync SQLAlchemy URL of an empty database of the parametrised dialect."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return pg_url_for(request.getfixturevalue("pg_database"))


@pytest.fixture
def async_db_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The async form of an empty database of the parametrised dialect."""
    if dialect == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return pg_url_for(request.getfixturevalue("pg_database"), driver="asyncpg")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files under tests/golden/ from the current output",
    )


# Fixtures that open a real database: a test using any of them is a database test.
_DB_FIXTURES = {"db_url", "async_db_url", "pg_database", "dialect", "quick_bench"}


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a database ``db``, whether or not it says so, so that the
    quick default selection (``pytest`` alone: no database, no load) can leave it out."""
    for item in items:
        if _DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)
        if "quick_bench" in getattr(item, "fixturenames", ()):
            # one worker runs the shared quick benchmark run and every test that reads it
            item.add_marker(pytest.mark.xdist_group("quick-bench"))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``--dist loadgroup`` xdist has put each grouped test's group in its node id by
    now; if it has not (pytest-dev/pytest-xdist#1386), the group would silently be split over
    the workers, each repeating the shared run: fail instead."""
    if not getattr(session.config.option, "loadgroup", False):  # set in xdist workers only
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]:
            raise pytest.UsageError(
                f"--dist loadgroup did not group {item.nodeid} (pytest-xdist#1386: "
                "pytest 9.2 node ids); install pytest<9.2 (scripts/setup.sh does)"
            )


@pytest.fixture(scope="session")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One ``python -m benchmarks --quick`` run of every suite on every dialect (per test
    process), and the directory its SQLite scratch files were in (tests/bench_support.py)."""
    from bench_support import quick_all

    workdir = tmp_path_factory.mktemp("quick-bench")
    return quick_all(workdir), workdir
