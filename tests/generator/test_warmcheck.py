"""The warm ``generate --check`` (generator.warmcheck): with the cache filled and the stat
index recorded it reads no generated file, yet every edit, deletion or extra file that the
full check reports is still reported, a hand edit that keeps the size and puts the mtime back
included; a file not provably older than the run that read it is never trusted (git's racy
clean rule); a damaged index is ignored."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from support import cli

from benchmarks import gencheck
from generator import cache, config, files, warmcheck
from generator.cli import Exit

N = 6  # the baseline and five synthetic changes


def _history(root: Path, n: int = N) -> Path:
    changes = root / "changes"
    changes.mkdir(parents=True)
    shutil.copyfile(gencheck.BASELINE, changes / "0000_baseline.yaml")
    for number in range(1, n):
        ident, text = gencheck._change(number)
        (changes / f"{number:04d}_{ident}.yaml").write_text(text, encoding="utf-8")
    (root / "generated_migrations").mkdir()
    assert cli("generate", root=root).exit_code == Exit.OK
    return root


def _out(root: Path) -> Path:
    return root / "generated_migrations"


def _settle(root: Path) -> None:
    """Wait until the file-system clock has moved past every generated file's ctime (a run
    records only files older than its stamp)."""
    newest = max(p.stat().st_ctime_ns for p in _out(root).rglob("*"))
    probe = root / "probe"
    for _ in range(300):
        probe.write_bytes(b"")
        if probe.stat().st_mtime_ns > newest:
            break
        time.sleep(0.01)
    probe.unlink()


def _quick(root: Path) -> int | None:
    project = config.parse(root, None, {})
    return warmcheck.quick_check(project, cache.open_cache(project))


def _no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str) -> tuple[str, os.stat_result, os.stat_result]:
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(warmcheck, "read_stable", refuse)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = _history(tmp_path)
    _settle(root)
    assert cli("generate", "--check", root=root).exit_code == Exit.OK  # records the index
    return root


def test_a_warm_check_reads_no_generated_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = len(files.owned_files(_out(root)))
    assert count == 10 * N + 1
    assert (root / cache.CACHE_DIR / warmcheck.INDEX_FILE).is_file()
    _no_reads(monkeypatch)
    assert _quick(root) == count
    result = cli("generate", "--check", root=root)
    assert result.exit_code == Exit.OK
    assert f"generated files are current ({count} files)" in result.stdout


def test_a_same_size_edit_with_the_mtime_put_back_is_reported(root: Path) -> None:
    target = _out(root) / "validation" / "sqlite" / "0004_restrict_market_data_instrument_4.pre.sql"
    before = target.stat()
    data = bytearray(target.read_bytes())
    at = data.index(b"market_data")
    data[at] = ord("M")  # one byte, the same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert after.st_ctime_ns != before.st_ctime_ns  # what no call can put back
    assert _quick(root) is None
    result = cli("generate", "--check", root=root)
    assert result.exit_code == Exit.FAILED
    rel = target.relative_to(root).as_posix()
    assert f"stale or edited: {rel}" in result.stderr


def test_a_deleted_and_an_extra_file_are_reported(root: Path) -> None:
    review = _out(root) / "review" / "0003_add_alert_rules_syn_3.md"
    kept = review.read_text()
    review.unlink()
    assert _quick(root) is None
    result = cli("generate", "--check", root=root)
    assert result.exit_code == Exit.FAILED
    assert "missing: generated_migrations/review/0003_add_alert_rules_syn_3.md" in result.stderr

    review.write_text(kept)
    extra = _out(root) / "review" / "0009_left_behind.md"
    extra.write_text(kept)  # the generated header: the generator's, and no spec renders it
    assert _quick(root) is None
    result = cli("generate", "--check", root=root)
    assert result.exit_code == Exit.FAILED
    assert "orphaned (its spec is gone): generated_migrations/review/0009_left_behind.md" in (
        result.stderr
    )
    extra.unlink()
    assert cli("generate", "--check", root=root).exit_code == Exit.OK


def test_hand_written_revisions_join_the_chain(root: Path) -> None:
    versions = _out(root) / "versions"
    head = f"{N - 1:04d}"
    hand = versions / f"{N:04d}_by_hand.py"
    hand.write_text(f'revision = "{N:04d}"\ndown_revision = "{head}"\n')
    assert _quick(root) == 10 * N + 1
    assert cli("generate", "--check", root=root).exit_code == Exit.OK
    hand.write_text(f'revision = "{N:04d}"\ndown_revision = "0001"\n')  # a second head
    assert _quick(root) is None
    result = cli("generate", "--check", root=root)
    assert result.exit_code == Exit.FAILED
    assert "revision chain: generated_migrations/2 heads: " in result.stderr


def test_a_file_not_older_than_the_stamp_is_not_recorded(tmp_path: Path) -> None:
    target = tmp_path / "f.sql"
    target.write_text("-- x\n")
    st = target.stat()
    index = warmcheck.StatIndex(tmp_path / "cache", tmp_path)
    for stamp, recorded in (
        (st.st_ctime_ns, False),  # written in the stamp's tick: racily clean
        (st.st_mtime_ns, st.st_ctime_ns < st.st_mtime_ns),
        (max(st.st_ctime_ns, st.st_mtime_ns) + 1, True),
    ):
        index.fresh.clear()
        index.stamp = (stamp, st.st_dev)
        index.record("f.sql", st, st, "h1:x")
        assert ("f.sql" in index.fresh) is recorded, stamp
    index.stamp = (max(st.st_ctime_ns, st.st_mtime_ns) + 1, st.st_dev + 1)  # another device
    index.fresh.clear()
    index.record("f.sql", st, st, "h1:x")
    assert not index.fresh


def test_a_rewritten_file_is_read_then_recorded_again(root: Path) -> None:
    target = _out(root) / "review" / "0001_add_market_data_index_1.md"
    target.write_text(target.read_text())  # the same text: a new ctime, maybe a new inode
    path = "review/0001_add_market_data_index_1.md"
    index = warmcheck.StatIndex.load(root / cache.CACHE_DIR, _out(root))
    assert not index.trusts(path, target.stat(), index.entries[path][1])
    _settle(root)
    assert cli("generate", "--check", root=root).exit_code == Exit.OK
    index = warmcheck.StatIndex.load(root / cache.CACHE_DIR, _out(root))
    assert index.trusts(path, target.stat(), index.entries[path][1])
    assert len(index.entries) == 10 * N + 1


def test_a_damaged_index_is_ignored(root: Path) -> None:
    file = root / cache.CACHE_DIR / warmcheck.INDEX_FILE
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    assert warmcheck.StatIndex.load(file.parent, _out(root)).entries == {}
    assert _quick(root) == 10 * N + 1  # read and hashed instead
    # ... and an index of another folder is not this one's.
    assert warmcheck.StatIndex.load(file.parent, root / "elsewhere").entries == {}


def test_no_cache_neither_reads_nor_writes_the_index(tmp_path: Path) -> None:
    root = _history(tmp_path)
    shutil.rmtree(root / cache.CACHE_DIR)
    _settle(root)
    assert cli("generate", "--check", "--no-cache", root=root).exit_code == Exit.OK
    assert not (root / cache.CACHE_DIR).exists()
