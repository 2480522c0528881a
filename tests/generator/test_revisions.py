"""The chain of generated revisions: one head, numbered in order, each naming its parent."""

from __future__ import annotations

import re

from support import ROOT

from generator import migrate

VERSIONS = ROOT / "generated_migrations" / "versions"


def test_exactly_one_head_and_it_is_the_last_change() -> None:
    files = sorted(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert migrate.heads(ROOT / "generated_migrations") == [files[-1].name[:4]]


def test_revisions_are_chained_in_file_order() -> None:
    files = sorted(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    previous = None
    for path in files:
        text = path.read_text()
        revision = re.search(r'^revision = "(\d{4})"$', text, re.M)
        down = re.search(r"^down_revision = (.+)$", text, re.M)
        assert revision and down
        assert revision.group(1) == path.name[:4]
        assert down.group(1) == (repr(previous).replace("'", '"') if previous else "None")
        previous = revision.group(1)
