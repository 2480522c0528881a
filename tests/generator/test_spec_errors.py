"""The bad-spec corpus: each case's exact error text (a golden file), exit code 3, no output."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import GOLDEN, cli

from generator.cli import Exit

CASES = sorted(p.name for p in (GOLDEN / "errors").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_bad_spec_reports_every_error_and_writes_nothing(
    case: str, request: pytest.FixtureRequest
) -> None:
    root = GOLDEN / "errors" / case
    result = cli("generate", root=root)
    assert result.exit_code == Exit.INVALID_SPEC, result.output
    assert "Traceback" not in result.output
    assert not (root / "generated_migrations").exists(), "an invalid run wrote files"
    expected_file = root / "expected.txt"
    if request.config.getoption("--update-golden"):
        expected_file.write_text(result.stderr, encoding="utf-8")
    assert result.stderr == expected_file.read_text(encoding="utf-8")


def test_corpus_covers_the_required_kinds_of_error() -> None:
    required = {
        "malformed_yaml",
        "duplicate_key",
        "unknown_op",
        "unknown_type",
        "bad_identifier",
        "missing_table",
        "missing_column",
        "missing_index",
        "id_mismatch",
    }
    assert required <= set(CASES)


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join(['*a' + str(i - 1)] * 9)}]" for i in range(1, 10)]
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "0000_laughs.yaml").write_text(
        "\n".join([*lines, "id: laughs", "description: *a9", "operations: []"]) + "\n"
    )
    started = time.perf_counter()
    result = cli("generate", root=tmp_path)
    elapsed = time.perf_counter() - started
    assert result.exit_code == Exit.INVALID_SPEC
    assert "changes/0000_laughs.yaml:1:5: YAML anchors (&a0) are not allowed" in result.stderr
    assert elapsed < 1.0
    assert not (tmp_path / "generated_migrations").exists()


def test_invalid_spec_leaves_existing_generated_files_untouched(tmp_path: Path) -> None:
    from support import copy_project

    root = copy_project(tmp_path)
    before = {p: p.read_bytes() for p in (root / "generated_migrations").rglob("*") if p.is_file()}
    (root / "changes" / "0000_baseline.yaml").write_text(
        (root / "changes" / "0000_baseline.yaml")
        .read_text()
        .replace("type: bigint", "type: bigin", 1)
    )
    result = cli("generate", root=root)
    assert result.exit_code == Exit.INVALID_SPEC
    assert "unknown type 'bigin'" in result.stderr
    after = {p: p.read_bytes() for p in (root / "generated_migrations").rglob("*") if p.is_file()}
    assert after == before


def test_a_spec_over_the_size_limit_is_one_line_and_exit_3(tmp_path: Path) -> None:
    from generator.load import MAX_SPEC_BYTES

    (tmp_path / "changes").mkdir()
    spec = tmp_path / "changes" / "0000_huge.yaml"
    padding = "# padding\n" * (MAX_SPEC_BYTES // 10 + 1)
    spec.write_text("id: huge\ndescription: x\noperations: []\n" + padding)
    result = cli("generate", root=tmp_path)
    assert result.exit_code == Exit.INVALID_SPEC
    assert result.stderr.splitlines()[0].startswith("changes/0000_huge.yaml:1:1: the file is ")
    assert "over the limit" in result.stderr and "Traceback" not in result.stderr
