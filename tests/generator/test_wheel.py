"""The tool installs and runs anywhere: a wheel built from the sources, installed into a fresh
virtual environment in a directory with no link to this checkout, runs docs/adopting.md's new
project path command by command on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import pg_url_for
from support import ROOT, copy_project

DOC = ROOT / "docs" / "adopting.md"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
SECTION = "## A new project"
SQLITE_URL = "sqlite:///shop.db"
BLOCK_RE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def doc_script(url: str = SQLITE_URL, venv: Path | None = None) -> str:
    """The new-project section of docs/adopting.md as one bash script: its `sh` blocks as
    they are, each `yaml` block written to the file its first line names. With ``venv``, the
    block that creates and installs the environment is replaced by activating that one."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    parts = []
    for lang, body in BLOCK_RE.findall(section):
        if lang == "sh" and venv is not None and "pip install" in body:
            parts.append(f". {shlex.quote(str(venv / 'bin' / 'activate'))}\n")
        elif lang == "sh":
            parts.append(body)
        elif lang == "yaml":
            first = body.splitlines()[0]
            assert first.startswith("# file: "), f"a yaml block must start with '# file:': {first}"
            target = first.removeprefix("# file: ").strip()
            parts.append(f"cat > {shlex.quote(target)} <<'SCHEMAGEN_EOF'\n{body}SCHEMAGEN_EOF\n")
    script = "".join(parts)
    assert SQLITE_URL in script
    return "set -euxo pipefail\n" + script.replace(SQLITE_URL, url)


def _sources(dest: Path) -> Path:
    """A copy of the files git would commit (tracked, or new and not ignored): no build/ or
    egg-info left from an earlier build can slip into the wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _clean_env(path_dirs: list[str]) -> dict[str, str]:
    """The environment of a user's shell: no virtual environment, no PYTHONPATH, no project
    settings of this test run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("PIP_", "LANG", "LC_")) or k in ("HOME", "TMPDIR", "USER")
    }
    env["PATH"] = os.pathsep.join([*path_dirs, "/usr/local/bin", "/usr/bin", "/bin"])
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _sources(tmp_path_factory.mktemp("src"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        check=True,
        cwd=dist,
    )
    (built,) = dist.glob("schemagen-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_the_tool_and_its_templates_and_no_application(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert not {"marketdata", "benchmarks", "tests"} & top, top
    templates = {n for n in names if n.startswith("generator/templates/")}
    in_repo = {
        "generator/templates/" + p.relative_to(ROOT / "templates").as_posix()
        for p in (ROOT / "templates").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert templates == in_repo
    assert "generator/runtime.py" in names


def _run(script: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_new_project_path_of_docs_adopting_md(
    wheel: Path, tmp_path: Path, pg_database: str
) -> None:
    """The page as written (SQLite), then again on PostgreSQL in the environment it built."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy2(wheel, work / wheel.name)
    env = _clean_env([str(Path(sys.base_prefix) / "bin")])
    started = time.monotonic()
    out = _run(doc_script(), work, env)
    print(f"install and the page on SQLite: {time.monotonic() - started:.0f} s")
    venv = work / ".venv"
    assert f"schemagen, version {VERSION}" in out
    _check_run(out, work / "shop")

    again = tmp_path / "postgresql"
    again.mkdir()
    pg_out = _run(doc_script(pg_url_for(pg_database), venv), again, env)
    _check_run(pg_out, again / "shop")
    assert "verifying postgresql+psycopg://" in pg_out and "sqlite:///" not in pg_out

    # The packaged templates render this repository's specs byte for byte as committed.
    copy = copy_project(tmp_path / "marketdata_specs")
    check = subprocess.run(
        [str(venv / "bin" / "schemagen"), "generate", "--check"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "generated files are current" in check.stdout

    # The installed tool is the wheel's, not this checkout, and carries no application.
    probe = (
        "import generator, importlib.util;"
        "print(generator.__file__);"
        "print(importlib.util.find_spec('marketdata'))"
    )
    where, marketdata = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where.startswith(str(venv)), where
    assert marketdata == "None"
    assert str(ROOT) not in (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    installed = {p.name for p in Path(where).parent.parent.iterdir()}
    assert "marketdata" not in installed
    # The tool never writes into its installation: every project file is under work/.
    assert not list(Path(where).parent.parent.rglob("*.yaml"))


def _check_run(out: str, project: Path) -> None:
    assert (project / "generated_migrations" / "versions" / "0001_add_order_notes.py").is_file()
    assert "database is at revision 0001" in out
    assert "14 passed, 0 failed" in out and "FAILED" not in out
    assert "revision: 0001 (head: 0001)" in out
    assert "generated files are current" in out
