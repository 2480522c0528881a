"""`schemagen new` scaffolds the next change; once filled in, it generates."""

from __future__ import annotations

from pathlib import Path

from support import cli, copy_project, last_change_number

from generator.cli import Exit

# The scaffold takes the number after the last committed change.
NEXT, PREVIOUS = f"{last_change_number() + 1:04d}", f"{last_change_number():04d}"


def test_new_scaffolds_the_next_number_and_an_empty_one_is_refused(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    result = cli("new", "add_venue", root=root)
    assert result.exit_code == Exit.OK, result.output
    target = root / "changes" / f"{NEXT}_add_venue.yaml"
    text = target.read_text()
    assert text.startswith("# yaml-language-server: $schema=change.schema.json\nid: add_venue\n")
    assert f"schemagen downgrade --to {PREVIOUS}" in text
    # Scaffolded but not filled in: operations is empty, which is an error, not a no-op.
    failed = cli("generate", root=root)
    assert failed.exit_code == Exit.INVALID_SPEC
    assert f"changes/{NEXT}_add_venue.yaml" in failed.stderr
    target.write_text(
        text.replace(
            "operations:\n",
            "operations:\n  - {op: create_index, table: alert_logs, name: ix_alert_logs_severity,"
            " columns: [severity]}\n",
        )
    )
    assert cli("generate", root=root).exit_code == Exit.OK
    assert (root / "generated_migrations" / "versions" / f"{NEXT}_add_venue.py").is_file()


def test_new_refuses_a_bad_id(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    result = cli("new", "Add-Venue", root=root)
    assert result.exit_code == Exit.USAGE
    assert "invalid id 'Add-Venue'" in result.stderr
    assert not list((root / "changes").glob(f"{NEXT}_*"))


def test_new_refuses_a_number_in_non_ascii_digits(tmp_path: Path) -> None:
    """'٠٠٠٦' is not 0006: `new` names the file instead of scaffolding a second NNNN."""
    root = copy_project(tmp_path)
    odd = root / "changes" / f"{NEXT.translate(str.maketrans('0123456789', '٠١٢٣٤٥٦٧٨٩'))}_x.yaml"
    odd.write_text("id: x\n", encoding="utf-8")
    result = cli("new", "add_venue", root=root)
    assert result.exit_code == Exit.INVALID_SPEC, result.output
    assert odd.name in result.output and "ASCII digits" in result.output
    assert not list((root / "changes").glob(f"{NEXT}_*.yaml"))


def test_new_never_overwrites_or_duplicates(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    assert cli("new", "add_venue", root=root).exit_code == Exit.OK
    assert cli("new", "add_venue", root=root).exit_code == Exit.OK
    numbers = [p.name[:4] for p in (root / "changes").glob("*_add_venue.yaml")]
    assert sorted(numbers) == [NEXT, f"{int(NEXT) + 1:04d}"]
