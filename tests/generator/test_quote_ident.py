"""The tool's identifier quoting is the dialects' own: ``dialects.quote_ident`` (templates'
``qi`` filter, the online path and the batches) returns what SQLAlchemy's PostgreSQL and SQLite
identifier preparers return for the same name, for plain names, keywords, mixed case, quotes,
spaces and non-ASCII letters."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from generator import batches, dialects

NAMES = ["t", "select", "Mixed", 'we"ird', "two words", "ünïcode", "_dropped_0004_x", '"']


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "sa_dialect", [postgresql.dialect(), sqlite.dialect()], ids=["pg", "sqlite"]
)
def test_quote_ident_is_the_preparers(name: str, sa_dialect: object) -> None:
    preparer = sa_dialect.identifier_preparer  # type: ignore[attr-defined]
    assert dialects.quote_ident(name) == preparer.quote_identifier(name)
    assert batches._qi(name) == dialects.quote_ident(name)
