"""`schemagen check`: the application's models against the schema the specs build at head;
exit 1 while they differ, 0 again once a change spec catches up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from support import ROOT, cli

from generator.cli import Exit

pytestmark = pytest.mark.db  # a scratch SQLite database at least
SCHEMAGEN = str(Path(sys.executable).with_name("schemagen"))
BASELINE = """\
id: create_shop
description: |
  Customers.
operations:
  - op: create_table
    name: customers
    columns:
      - {name: id, type: bigint, primary_key: true}
      - {name: email, type: varchar(255), nullable: false}
"""
MODELS = """\
import sqlalchemy as sa

metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(),
              primary_key=True),
    sa.Column("email", sa.String(255), nullable=False),
{extra})
"""
ADD_NOTE = """\
id: add_note
description: |
  Customers get a note.
operations:
  - op: add_column
    table: customers
    column: {name: note, type: text, nullable: true}
"""


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [SCHEMAGEN, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_this_repositorys_models_agree_with_its_specs(db_url: str) -> None:
    """On each dialect: the specs' head built in an empty database of it (--url)."""
    done = _run(ROOT, "check", "--url", db_url)
    assert done.returncode == Exit.OK, done.stdout + done.stderr
    assert "the models (marketdata.models:Base.metadata) and the specs agree" in done.stdout


def test_check_fails_while_a_model_is_ahead_of_the_specs(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    assert _run(tmp_path, "init", "shop").returncode == 0
    config = root / "schemagen.toml"
    config.write_text(
        config.read_text("utf-8").replace("# metadata = ", 'metadata = "models:metadata"\n# '),
        "utf-8",
    )
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE, "utf-8")
    (root / "models.py").write_text(MODELS.format(extra=""), "utf-8")
    assert _run(root, "generate").returncode == 0
    done = _run(root, "check")
    assert done.returncode == Exit.OK, done.stdout + done.stderr

    (root / "models.py").write_text(
        MODELS.format(extra='    sa.Column("note", sa.Text(), nullable=True),\n'), "utf-8"
    )
    done = _run(root, "check")
    assert done.returncode == Exit.FAILED, done.stdout + done.stderr
    assert "op.add_column('customers', sa.Column('note', sa.Text(), nullable=True))" in done.stdout
    assert "write a change spec" in done.stderr

    (root / "changes" / "0001_add_note.yaml").write_text(ADD_NOTE, "utf-8")
    assert _run(root, "generate").returncode == 0
    done = _run(root, "check")
    assert done.returncode == Exit.OK, done.stdout + done.stderr


def test_check_without_configured_models_says_what_to_set(tmp_path: Path) -> None:
    assert _run(tmp_path, "init", "shop").returncode == 0
    root = tmp_path / "shop"
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE, "utf-8")
    assert _run(root, "generate").returncode == 0
    done = _run(root, "check")
    assert done.returncode == Exit.USAGE
    assert "set metadata" in done.stderr
    assert "Traceback" not in done.stderr


SHOP = """\
id: create_shop
description: |
  Customers and their orders.
operations:
  - op: create_table
    name: customers
    columns:
      - {name: id, type: integer, primary_key: true}
      - {name: email, type: varchar(255), nullable: false}
  - op: create_table
    name: orders
    columns:
      - {name: id, type: integer, primary_key: true}
      - name: customer_id
        type: integer
        nullable: false
        references: {table: customers, column: id, on_delete: restrict}
      - {name: total, type: integer, nullable: false}
    indexes:
      - {name: ix_orders_customer, columns: [customer_id]}
      - {name: ix_orders_total, columns: [total]}
"""


def _shop_models(
    extra_table: str = "",
    customer_column: str = "",
    customer_index: str = "",
    customer_unique: str = "",
    customer_status: str = "",
    orders_index: str = 'sa.Index("ix_orders_total", "total"),',
    orders_check: str = "",
    total: str = "sa.Integer()",
    ondelete: str = "RESTRICT",
) -> str:
    return f"""\
import sqlalchemy as sa

metadata = sa.MetaData()
sa.Table(
    "customers", metadata,
    sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True),
    sa.Column("email", sa.String(255), nullable=False),
    {customer_column}
    {customer_index}
    {customer_unique}
    {customer_status}
)
sa.Table(
    "orders", metadata,
    sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True),
    sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete={ondelete!r},
              name="fk_orders_customer_id_customers"), nullable=False),
    sa.Column("total", {total}, nullable=False),
    sa.Index("ix_orders_customer", "customer_id"),
    {orders_index}
    {orders_check}
)
{extra_table}
"""


NOTES = (
    'sa.Table("notes", metadata, sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True), '
    'sa.Column("body", sa.Text(), nullable=False), sa.Column("customer_id", sa.Integer(){fk}, '
    "nullable=True))"
)
NOTES_FK = ', sa.ForeignKey("customers.id", name="fk_notes_customer", ondelete="CASCADE")'

# Every kind of model change autogenerate writes, in the order one project walks through them:
# (the models' arguments from here on, what the spec holds). Each step keeps the ones before.
KINDS: list[tuple[str, dict[str, str], str]] = [
    ("create_table", {"extra_table": NOTES.format(fk="")}, "op: create_table"),
    (
        "add_column",
        {"customer_column": 'sa.Column("note", sa.Text(), nullable=True),'},
        "op: add_column",
    ),
    (
        "create_index",
        {"customer_index": 'sa.Index("ix_customers_email", "email"),'},
        "op: create_index",
    ),
    ("drop_index", {"orders_index": ""}, "op: drop_index"),
    ("alter_column_type", {"total": "sa.BigInteger()"}, "op: alter_column_type"),
    ("swap_fk_action", {"ondelete": "CASCADE"}, "op: swap_fk_action"),
    (
        "set_default",
        {"customer_column": 'sa.Column("note", sa.Text(), nullable=True, server_default="none"),'},
        "op: set_default",
    ),
    (
        "set_nullable",
        {"customer_column": 'sa.Column("note", sa.Text(), nullable=False, server_default="none"),'},
        "op: set_nullable",
    ),
    (
        "add_unique",
        {"customer_unique": 'sa.UniqueConstraint("email", name="uq_customers_email"),'},
        "op: add_unique",
    ),
    ("drop_unique", {"customer_unique": ""}, "op: drop_unique"),
    (
        "add_check",
        {"orders_check": 'sa.CheckConstraint("total >= 0", name="ck_orders_total"),'},
        "op: add_check",
    ),
    ("drop_check", {"orders_check": ""}, "op: drop_check"),
    ("add_foreign_key", {"extra_table": NOTES.format(fk=NOTES_FK)}, "op: add_foreign_key"),
    ("drop_foreign_key", {"extra_table": NOTES.format(fk="")}, "op: drop_foreign_key"),
    (
        "add_enum_column",
        {
            "customer_status": 'sa.Column("status", sa.Enum("new", "vip", name="customer_kind"), '
            "nullable=True),"
        },
        "type: 'enum(customer_kind: new, vip)'",
    ),
    ("drop_column", {"customer_column": ""}, "op: drop_column"),
    ("drop_table", {"extra_table": ""}, "op: drop_table"),
]


def _in_process(root: Path, *args: str) -> Result:
    """``schemagen ARGS`` in this process (the models module imported afresh each time)."""
    sys.modules.pop("shop_models", None)
    return cli(*args, root=root)


def test_autogenerate_writes_the_spec_that_brings_check_back_to_0(
    tmp_path: Path, db_url: str
) -> None:
    """For each kind of model change in turn, on each dialect: check exits 1, autogenerate
    writes a spec with that operation, and after generate and upgrade check exits 0 again."""
    assert cli("init", str(tmp_path / "shop")).exit_code == Exit.OK
    root = tmp_path / "shop"
    config = root / "schemagen.toml"
    config.write_text(
        config.read_text("utf-8").replace("# metadata = ", 'metadata = "shop_models:metadata"\n# '),
        "utf-8",
    )
    (root / "changes" / "0000_create_shop.yaml").write_text(SHOP, "utf-8")
    models = root / "shop_models.py"
    models.write_text(_shop_models(), "utf-8")
    assert _in_process(root, "generate").exit_code == Exit.OK
    assert _in_process(root, "upgrade", "--url", db_url).exit_code == Exit.OK
    done = _in_process(root, "check", "--url", db_url)
    assert done.exit_code == Exit.OK, done.output
    arguments: dict[str, str] = {}
    try:
        for number, (kind, change, expected) in enumerate(KINDS, start=1):
            arguments.update(change)
            models.write_text(_shop_models(**arguments), "utf-8")
            done = _in_process(root, "check", "--url", db_url)
            assert done.exit_code == Exit.FAILED, (kind, done.output)
            done = _in_process(root, "autogenerate", f"model_{kind}")
            assert done.exit_code == Exit.OK, (kind, done.output)
            spec = (root / "changes" / f"{number:04d}_model_{kind}.yaml").read_text("utf-8")
            assert expected in spec, spec
            generated = _in_process(root, "generate")
            assert generated.exit_code == Exit.OK, (kind, spec, generated.output)
            upgraded = _in_process(root, "upgrade", "--url", db_url)
            assert upgraded.exit_code == Exit.OK, (kind, spec, upgraded.output)
            done = _in_process(root, "check", "--url", db_url)
            assert done.exit_code == Exit.OK, (kind, spec, done.output)
        assert _in_process(root, "autogenerate", "again").exit_code == Exit.OK
        assert not (root / "changes" / f"{len(KINDS) + 1:04d}_again.yaml").exists()
        # What the drops kept is still there, aside (keep_data's default).
        verified = _in_process(root, "verify", "--url", db_url)
        assert verified.exit_code == Exit.OK, verified.output
    finally:
        sys.modules.pop("shop_models", None)


def _shop(tmp_path: Path) -> Path:
    assert _run(tmp_path, "init", "shop").returncode == 0
    root = tmp_path / "shop"
    config = root / "schemagen.toml"
    config.write_text(
        config.read_text("utf-8").replace("# metadata = ", 'metadata = "models:metadata"\n# '),
        "utf-8",
    )
    (root / "changes" / "0000_create_shop.yaml").write_text(SHOP, "utf-8")
    (root / "models.py").write_text(_shop_models(), "utf-8")
    assert _run(root, "generate").returncode == 0
    done = _run(root, "check")
    assert done.returncode == Exit.OK, done.stdout + done.stderr
    return root


def test_a_rename_is_a_question_not_a_drop_and_an_add(tmp_path: Path) -> None:
    root = _shop(tmp_path)
    models = (root / "models.py").read_text("utf-8")
    (root / "models.py").write_text(models.replace('"email"', '"email_address"'), "utf-8")
    done = _run(root, "autogenerate", "rename_email")
    assert done.returncode == Exit.OK, done.stdout + done.stderr
    spec = (root / "changes" / "0001_rename_email.yaml").read_text("utf-8")
    assert "# autogenerate: customers: was email renamed to email_address?" in spec
    assert "drop" not in spec.split("operations:")[1]


def test_another_owners_tables_in_the_models_are_left_out_with_foreign_tables(
    tmp_path: Path,
) -> None:
    """Models that map another owner's table (a library's, in the same MetaData) ask for it
    as create_table until foreign_tables names it; then check agrees."""
    assert cli("init", str(tmp_path / "shop")).exit_code == Exit.OK
    root = tmp_path / "shop"
    config = root / "schemagen.toml"
    config.write_text(
        config.read_text("utf-8").replace("# metadata = ", 'metadata = "shop_models:metadata"\n# '),
        "utf-8",
    )
    (root / "changes" / "0000_create_shop.yaml").write_text(SHOP, "utf-8")
    library = (
        'sa.Table("optuna_studies", metadata, sa.Column("study_id", sa.Integer(), '
        "primary_key=True))"
    )
    (root / "shop_models.py").write_text(_shop_models(extra_table=library), "utf-8")
    assert _in_process(root, "generate").exit_code == Exit.OK
    try:
        done = _in_process(root, "check")
        assert done.exit_code == Exit.FAILED, done.output
        assert "optuna_studies" in done.output
        config.write_text(
            config.read_text("utf-8").replace(
                '# foreign_tables = ["optuna_*"]', 'foreign_tables = ["optuna_*"]'
            ),
            "utf-8",
        )
        assert _in_process(root, "generate").exit_code == Exit.OK
        done = _in_process(root, "check")
        assert done.exit_code == Exit.OK, done.output
    finally:
        sys.modules.pop("shop_models", None)
