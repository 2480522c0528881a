"""Using the tool outside this repository: a project is found from its configuration (or its
layout), never defaulted to the tool's own checkout; `init` starts one and overwrites nothing;
the configuration's paths, naming convention, soft-delete column and url are honoured; the
Alembic environment takes an Engine as well as a Connection."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from support import ROOT, cli, last_change_number

from generator import db, migrate, scaffold
from generator.cli import Exit

BASELINE = """\
id: create_shop
description: |
  Customers and their orders.
operations:
  - op: create_table
    name: customers
    columns:
      - {name: id, type: bigint, primary_key: true}
      - {name: email, type: varchar(255), nullable: false, unique: true}
  - op: create_table
    name: orders
    columns:
      - {name: id, type: bigint, primary_key: true}
      - {name: customer_id, type: bigint, nullable: false, references: {table: customers}}
"""
SOFT_DELETE = """\
id: soft_delete
description: |
  Orders are soft-deleted.
operations:
  - op: add_column
    table: orders
    column: {name: removed_at, type: timestamptz, nullable: true}
  - op: add_column
    table: orders
    column: {name: deleted_at, type: timestamptz, nullable: true}
"""

COMMANDS = [
    ("generate",),
    ("generate", "--check"),
    ("lint",),
    ("new", "create_shop"),
    ("schema",),
    ("schema", "--check"),
    ("plan",),
    ("upgrade", "--url", "sqlite:///x.db"),
    ("downgrade", "--to", "base", "--url", "sqlite:///x.db"),
    ("verify", "--url", "sqlite:///x.db"),
    ("status", "--url", "sqlite:///x.db"),
]


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("use_root", [False, True], ids=["cwd", "root"])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_outside_a_project_every_command_says_so_and_exits_2(
    args: tuple[str, ...], use_root: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    before = last_change_number()
    result = cli(*args, root=empty if use_root else None)
    assert result.exit_code == Exit.USAGE, result.output
    assert "not in a schemagen project" in result.stderr
    assert "schemagen init" in result.stderr
    assert "Traceback" not in result.output
    assert _tree(empty) == []
    assert last_change_number() == before  # nothing written into the tool's checkout


def test_version() -> None:
    from importlib.metadata import version

    result = cli("--version")
    assert result.exit_code == Exit.OK
    assert result.stdout.strip() == f"schemagen, version {version('schemagen')}"


def test_init_writes_a_project_whose_env_is_this_repositorys(tmp_path: Path) -> None:
    result = cli("init", str(tmp_path / "shop"))
    assert result.exit_code == Exit.OK, result.output
    shop = tmp_path / "shop"
    assert _tree(shop) == [
        ".github",
        ".github/workflows",
        ".github/workflows/schemagen.yml",
        "alembic.ini",
        "changes",
        "changes/change.schema.json",
        "generated_migrations",
        "generated_migrations/env.py",
        "generated_migrations/script.py.mako",
        "schemagen.toml",
    ]
    for name in ("env.py", "script.py.mako"):
        assert (shop / "generated_migrations" / name).read_bytes() == (
            ROOT / "generated_migrations" / name
        ).read_bytes()
    assert (shop / "changes" / "change.schema.json").read_bytes() == (
        ROOT / "changes" / "change.schema.json"
    ).read_bytes()
    assert cli("schema", "--check", root=shop).exit_code == Exit.OK


def test_this_repositorys_alembic_environment_is_the_packaged_one() -> None:
    """One source: generated_migrations/env.py, script.py.mako and alembic.ini are what
    `schemagen init` writes into every project."""
    out = ROOT / "generated_migrations"
    assert (out / "env.py").read_text(encoding="utf-8") == scaffold.env_py()
    assert (out / "script.py.mako").read_text(encoding="utf-8") == scaffold.script_mako()
    assert (ROOT / "alembic.ini").read_text(encoding="utf-8") == scaffold.alembic_ini(
        "generated_migrations"
    )


@pytest.mark.parametrize(
    "existing", ["alembic.ini", "generated_migrations/env.py", "schemagen.toml"]
)
def test_init_refuses_to_overwrite_and_writes_nothing(existing: str, tmp_path: Path) -> None:
    target = tmp_path / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("mine\n", encoding="utf-8")
    before = _tree(tmp_path)
    result = cli("init", str(tmp_path))
    assert result.exit_code == Exit.USAGE, result.output
    assert f"refusing to overwrite {existing}" in result.stderr
    assert "nothing was written" in result.stderr
    assert target.read_text(encoding="utf-8") == "mine\n"
    assert _tree(tmp_path) == before


def test_init_refuses_a_pyproject_that_configures_schemagen(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.schemagen]\nchanges = "specs"\n')
    result = cli("init", str(tmp_path))
    assert result.exit_code == Exit.USAGE
    assert "pyproject.toml ([tool.schemagen]" in result.stderr
    assert _tree(tmp_path) == ["pyproject.toml"]


def test_init_refuses_a_path_outside_the_project(tmp_path: Path) -> None:
    result = cli("init", str(tmp_path), "--changes", "../elsewhere")
    assert result.exit_code == Exit.USAGE
    assert "changes" in result.stderr and "inside the project" in result.stderr
    assert _tree(tmp_path) == []


def _project(tmp_path: Path, *args: str) -> Path:
    root = tmp_path / "shop"
    assert cli("init", str(root), *args).exit_code == Exit.OK
    return root


def test_configured_paths_are_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, "--changes", "db/specs", "--output", "db/migrations")
    (root / "db" / "specs" / "0000_create_shop.yaml").write_text(BASELINE)
    # found from a directory below the configuration, as a developer would run it
    monkeypatch.chdir(root / "db" / "specs")
    result = cli("generate")
    assert result.exit_code == Exit.OK, result.output
    assert "wrote db/migrations/versions/0000_create_shop.py" in result.stdout
    assert (root / "db" / "migrations" / "versions" / "0000_create_shop.py").is_file()
    assert not (root / "changes").exists() and not (root / "generated_migrations").exists()
    sql = root / "db" / "migrations" / "validation" / "sqlite" / "0000_create_shop.pre.sql"
    assert "< db/migrations/validation/sqlite/0000_create_shop.pre.sql" in sql.read_text()
    assert "generated_migrations" not in sql.read_text()
    assert cli("generate", "--check").exit_code == Exit.OK
    assert "script_location = %(here)s/db/migrations" in (root / "alembic.ini").read_text()
    result = cli("new", "soft_delete")
    assert result.exit_code == Exit.OK
    assert (root / "db" / "specs" / "0001_soft_delete.yaml").is_file()


def test_pyproject_configuration(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "shop"\n\n[tool.schemagen]\nchanges = "specs"\noutput = "out"\n'
    )
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "0000_create_shop.yaml").write_text(BASELINE)
    result = cli("generate", root=tmp_path)
    assert result.exit_code == Exit.OK, result.output
    assert (tmp_path / "out" / "versions" / "0000_create_shop.py").is_file()


def test_naming_convention_and_soft_delete_column_from_the_configuration(tmp_path: Path) -> None:
    root = _project(tmp_path)
    config = root / "schemagen.toml"
    text = config.read_text()
    text = text.replace('"pk_{table}"', '"{table}_pkey"')
    text = text.replace('"fk_{table}_{column}_{referred_table}"', '"{table}_{column}_fkey"')
    text = text.replace('"uq_{table}_{column}"', '"{table}_{column}_key"')
    text = text.replace('soft_delete_column = "deleted_at"', 'soft_delete_column = "removed_at"')
    config.write_text(text)
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE)
    (root / "changes" / "0001_soft_delete.yaml").write_text(SOFT_DELETE)
    result = cli("generate", root=root)
    assert result.exit_code == Exit.OK, result.output
    migration = (root / "generated_migrations" / "versions" / "0000_create_shop.py").read_text()
    for name in ("customers_pkey", "orders_customer_id_fkey", "customers_email_key"):
        assert f'"{name}"' in migration, name
    assert "pk_customers" not in migration and "fk_orders" not in migration
    lint = cli("lint", root=root)
    assert "SG109" in lint.stdout and "orders.removed_at has no index" in lint.stdout
    assert "deleted_at has no index" not in lint.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('colour = "blue"', "colour: unknown setting"),
        ('dialects = ["mysql"]', "dialects: expected a non-empty list"),
        ('metadata = "myapp.models"', "metadata: 'myapp.models' is not of the form"),
        ('[naming]\nprimary_key = "pk_{tabel}"', "naming.primary_key: 'pk_{tabel}': unknown"),
        ('[naming]\nforeign_key = "fk_{table}"', "naming.foreign_key: 'fk_{table}': must contain"),
        ('[naming]\nrange_domain = "dom_{table}"', "naming.range_domain: 'dom_{table}': unknown"),
        ('[naming]\nrange_domain = "dom"', "naming.range_domain: 'dom': must contain {digits}"),
        ("soft_delete_column = 3", "soft_delete_column: expected a column name"),
        ('foreign_tables = "optuna_*"', "foreign_tables: expected a list of table names"),
        ('foreign_tables = ["optuna_%"]', "foreign_tables: expected a list of table names"),
        ('changes = "/abs"', "changes: '/abs' must be a path inside the project"),
        ("changes = [", "invalid TOML"),
    ],
)
def test_a_bad_configuration_names_the_file_and_key(
    setting: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "schemagen.toml").write_text(setting + "\n")
    result = cli("generate", root=tmp_path)
    assert result.exit_code == Exit.USAGE, result.output
    assert f"{tmp_path / 'schemagen.toml'}: " in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert _tree(tmp_path) == ["schemagen.toml"]


def test_both_configuration_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "schemagen.toml").write_text("")
    (tmp_path / "pyproject.toml").write_text("[tool.schemagen]\n")
    result = cli("lint", root=tmp_path)
    assert result.exit_code == Exit.USAGE
    assert "keep one" in result.stderr


@pytest.mark.parametrize(
    "args", [("upgrade",), ("verify",), ("status",), ("downgrade", "--to", "base")]
)
def test_without_a_url_commands_that_need_a_database_exit_2(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE)
    assert cli("generate", root=root).exit_code == Exit.OK
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(root)
    result = cli(*args)
    assert result.exit_code == Exit.USAGE, result.output
    assert "no database URL: pass --url, set DATABASE_URL, or set url" in result.stderr
    assert "schemagen.toml" in result.stderr
    assert not list(root.glob("*.db")) and not list(root.glob("*.sqlite"))


def test_the_configured_url_is_used(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    config = root / "schemagen.toml"
    config.write_text(
        config.read_text().replace(
            '# url = "postgresql+psycopg://app@localhost/app"', f'url = "{db_url}"'
        )
    )
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE)
    assert cli("generate", root=root).exit_code == Exit.OK
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = cli("upgrade", root=root)
    assert result.exit_code == Exit.OK, result.output
    assert "database is at revision 0000" in result.stdout
    assert cli("verify", root=root).exit_code == Exit.OK
    assert cli("status", root=root).exit_code == Exit.OK


def test_env_py_takes_an_engine_as_pytest_alembic_passes_it(db_url: str) -> None:
    """pytest-alembic's documented contract: an Engine in config.attributes["connection"]."""
    url = sa.make_url(db_url)
    out = ROOT / "generated_migrations"
    engine = db.make_engine(url)
    try:
        config = migrate.alembic_config(out, url)
        config.attributes["connection"] = engine
        command.upgrade(config, "0001")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
                "0001"
            )
        config.attributes["connection"] = engine
        command.downgrade(config, "base")
        with engine.connect() as conn:
            assert "alembic_version" not in sa.inspect(conn).get_table_names() or (
                conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 0
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "args",
    [("upgrade", "--url", "sqlite:///x.db"), ("downgrade", "--to", "base"), ("plan",)],
    ids=lambda a: a[0],
)
def test_a_project_without_env_py_is_told_where_to_get_it(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.schemagen]\nchanges = "specs"\noutput = "out"\n'
    )
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "0000_create_shop.yaml").write_text(BASELINE)
    assert cli("generate", root=tmp_path).exit_code == Exit.OK
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.exit_code == Exit.USAGE, result.output
    assert "out/env.py is missing" in result.stderr and "schemagen init" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_a_database_of_a_dialect_the_project_does_not_target_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path)
    config = root / "schemagen.toml"
    config.write_text(config.read_text().replace('["postgresql", "sqlite"]', '["postgresql"]'))
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE)
    assert cli("generate", root=root).exit_code == Exit.OK
    result = cli("upgrade", "--url", f"sqlite:///{tmp_path / 'x.db'}", root=root)
    assert result.exit_code == Exit.USAGE, result.output
    assert "targets postgresql only, not sqlite" in result.stderr
    assert not (tmp_path / "x.db").exists()
    plan = cli("plan", root=root)
    assert "on postgresql" in plan.stdout and "on sqlite" not in plan.stdout


def test_plain_alembic_takes_the_url_from_the_configuration(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alembic upgrade head` in a project that `init` wrote: alembic.ini and env.py find the
    configured url without DATABASE_URL."""
    from alembic.config import Config

    root = _project(tmp_path)
    config = root / "schemagen.toml"
    config.write_text(
        config.read_text().replace(
            '# url = "postgresql+psycopg://app@localhost/app"', f'url = "{db_url}"'
        )
    )
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE)
    assert cli("generate", root=root).exit_code == Exit.OK
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(root)
    command.upgrade(Config(str(root / "alembic.ini")), "head")
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert revision == "0000"
    assert {"customers", "orders"} <= tables


def test_a_broken_pyproject_of_another_project_above_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\nname = broken\n")
    root = _project(tmp_path)
    (root / "changes" / "0000_create_shop.yaml").write_text(BASELINE)
    assert cli("generate", root=root / "changes").exit_code == Exit.OK
    (tmp_path / "pyproject.toml").write_text("[tool.schemagen\n")
    result = cli("generate", root=tmp_path)
    assert result.exit_code == Exit.USAGE
    assert "pyproject.toml: invalid TOML" in result.stderr
