"""Primary keys as declared: the database generates values only for an identity key (by
default a single-column integer key), never for the columns of a composite key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import GOLDEN, ROOT

from generator import files, migrate
from generator.errors import SpecErrors
from generator.load import load_changes
from generator.render import generate

CASE = GOLDEN / "render" / "composite_key"


def test_identity_defaults_and_declarations_reach_the_state() -> None:
    changes = load_changes(CASE / "changes", display_base=CASE)
    schema = changes[-1].after
    identity = {
        (t.name, c.name): c.identity for t in schema.tables for c in t.columns if c.primary_key
    }
    assert identity == {
        ("tags", "id"): True,
        ("codes", "id"): False,
        ("code_tags", "code_id"): False,
        ("code_tags", "tag_id"): False,
    }


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("{name: a, type: integer, identity: true}", "identity is for a primary key column"),
        (
            "{name: a, type: text, primary_key: true, identity: true}",
            "identity needs an integer or bigint, not text",
        ),
    ],
)
def test_identity_where_it_cannot_be_is_an_error(tmp_path: Path, column: str, message: str) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text(
        "id: base\ndescription: x\noperations:\n"
        "  - op: create_table\n    name: t\n    columns:\n"
        f"      - {column}\n      - {{name: b, type: integer, nullable: true}}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecErrors) as caught:
        load_changes(changes, display_base=tmp_path)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert message in text and "0000_base.yaml:" in text


def test_a_composite_key_cannot_be_an_identity(tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.mkdir()
    (changes / "0000_base.yaml").write_text(
        "id: base\ndescription: x\noperations:\n"
        "  - op: create_table\n    name: t\n    columns:\n"
        "      - {name: a, type: integer, primary_key: true, identity: true}\n"
        "      - {name: b, type: integer, primary_key: true}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecErrors) as caught:
        load_changes(changes, display_base=tmp_path)
    assert "identity needs a single-column primary key" in str(caught.value.errors[0])


def test_only_identity_keys_are_generated(db_url: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "generated_migrations"
    files.write(generate(load_changes(CASE / "changes", display_base=CASE)), out_dir)
    shutil.copy(ROOT / "generated_migrations" / "env.py", out_dir / "env.py")
    url = sa.make_url(db_url)
    migrate.upgrade(out_dir, url, "head")
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            generated = conn.execute(
                sa.text("INSERT INTO tags (label) VALUES ('x') RETURNING id")
            ).scalar()
            assert generated == 1
            conn.execute(sa.text("INSERT INTO codes (id, text) VALUES (7, 'seven')"))
            conn.execute(sa.text("INSERT INTO code_tags (code_id, tag_id) VALUES (7, 1)"))
        for statement in (
            "INSERT INTO codes (text) VALUES ('no key')",
            "INSERT INTO code_tags (tag_id) VALUES (1)",
        ):
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                conn.execute(sa.text(statement))
        if url.get_backend_name() == "postgresql":
            with engine.connect() as conn:
                kinds = dict(
                    conn.execute(
                        sa.text(
                            "SELECT c.relname || '.' || a.attname, a.attidentity FROM pg_attribute "
                            "AS a JOIN pg_class AS c ON c.oid = a.attrelid WHERE a.attnum > 0 "
                            "AND c.relname IN ('tags', 'codes', 'code_tags') AND a.attname "
                            "IN ('id', 'code_id', 'tag_id')"
                        )
                    ).all()
                )
            assert kinds == {
                "tags.id": "d",
                "codes.id": "",
                "code_tags.code_id": "",
                "code_tags.tag_id": "",
            }
    finally:
        engine.dispose()
    migrate.downgrade(out_dir, url, "base")
