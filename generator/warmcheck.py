"""A warm ``generate --check`` that reads neither the cached texts nor the generated files
it can prove unchanged: a stat index of the output folder, as git's index is.

``generate --check`` compares every generated file with what the specs render. With the
cache filled (generator.cache), what they render is known without rendering, by hash: each
entry's head lists its files' hashes (``files.h1``, the hashes of ``schemagen.sum``). What is
on disk is known without reading it when the file's stat is the one recorded the last time
it was read and hashed: the **stat index** (``.schemagen/cache/files.index``) keeps, per
file of the output folder, its size, mtime, ctime, inode and device, and the hash of the
text read.

When is a recorded stat proof of the content? Git's "racy clean" problem: a file changed
within the same tick of the file-system clock as its recorded mtime looks unchanged. Git
trusts an entry only when the file's mtime is older than the index file's own. Here the rule
is the same with the clock read *before* the file is read: a run that reads files first
creates (and removes) a stamp file in the cache folder and takes its mtime, ``stamp``;
a file is recorded only when its mtime and ctime are both strictly older than ``stamp``, on
the stamp's device, and its stat was the same before and after the read. Any write after the
stamp gives the file a ctime of at least ``stamp`` (the kernel sets ctime on every write,
rename or utime, and no call sets it back), so a file whose recorded stat still matches has
not been written since it was read. A hand edit that keeps the size and puts the mtime back
(``touch -d``) still moves the ctime: it is read, and reported. A file too new to be recorded
is read on every run until a run finds it older than its stamp.

The quick check (:func:`quick_check`) decides "current" or "don't know", never "stale":
anything it cannot prove (a change without an entry, a file whose hash differs, a missing or
extra file, a broken revision chain) hands over to the full check, which renders, reads,
compares and reports as it always has. The index is written only by runs that use the cache
(never with ``--no-cache``) and never into the output folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat as statmod
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from generator import revision_files
from generator.files import (
    OWNED_PATTERNS,
    SUM_FILE,
    Text,
    h1,
    is_generated,
    matching,
    read_stable,
    sum_of_hashes,
)

if TYPE_CHECKING:
    from generator.cache import Cache
    from generator.config import Project

INDEX_FILE = "files.index"
INDEX_MAGIC = b"schemagen-index 1"

# (size, mtime_ns, ctime_ns, inode, device)
Stat = tuple[int, int, int, int, int]


def stat_of(st: os.stat_result) -> Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class StatIndex:
    """Recorded ``{path: (stat, hash)}`` of one output folder (paths relative to it)."""

    def __init__(self, cache_dir: Path, out_dir: Path) -> None:
        self.file = cache_dir / INDEX_FILE
        self.out_dir = os.path.abspath(out_dir)
        self.entries: dict[str, tuple[Stat, str]] = {}
        self.fresh: dict[str, tuple[Stat, str]] = {}
        self.stamp: tuple[int, int] | None = None  # (mtime_ns, device) of the stamp

    @classmethod
    def load(cls, cache_dir: Path, out_dir: Path) -> StatIndex:
        """The index in ``cache_dir``, empty when it is missing, damaged or of another
        folder."""
        index = cls(cache_dir, out_dir)
        try:
            data = index.file.read_bytes()
        except OSError:
            return index
        end = data.find(b"\n")
        head = data[:end].split(b" ")
        body = data[end + 1 :]
        if end < 0 or b" ".join(head[:2]) != INDEX_MAGIC or len(head) != 3:
            return index
        if hashlib.sha256(body).hexdigest().encode() != head[2]:
            return index
        try:
            meta = json.loads(body)
            if meta["dir"] != index.out_dir:
                return index
            for path, (size, mtime, ctime, ino, dev, digest) in meta["files"].items():
                index.entries[path] = ((size, mtime, ctime, ino, dev), digest)
        except (ValueError, KeyError, TypeError):
            index.entries.clear()
        return index

    def trusts(self, path: str, st: os.stat_result, digest: str) -> bool:
        """The file's text hashes to ``digest``, by its stat alone."""
        known = self.entries.get(path)
        return known is not None and known[1] == digest and known[0] == stat_of(st)

    def take_stamp(self) -> None:
        """The file-system clock now: the mtime of a file created (and removed) in the
        cache folder. None when it cannot be written (then nothing is recorded)."""
        if self.stamp is not None:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.file.parent, prefix=".tmp-stamp-")
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
                os.unlink(name)
        except OSError:
            return
        self.stamp = (st.st_mtime_ns, st.st_dev)

    def record(self, path: str, before: os.stat_result, after: os.stat_result, digest: str) -> None:
        """Remember a file read (stat ``before`` and ``after`` the read) whose text hashes to
        ``digest``, if its stat can prove that later (see the module's docstring)."""
        if self.stamp is None:
            return
        now, device = self.stamp
        st = stat_of(before)
        if (
            st == stat_of(after)
            and statmod.S_ISREG(before.st_mode)
            and before.st_dev == device
            and before.st_mtime_ns < now
            and before.st_ctime_ns < now
        ):
            self.fresh[path] = (st, digest)

    def save(self, keep: set[str]) -> None:
        """Write the index (entries for the paths in ``keep``, fresh ones first) if any is
        new; atomically, and not at all where the cache folder cannot be written."""
        if not self.fresh:
            return
        entries = {p: e for p, e in self.entries.items() if p in keep}
        entries.update((p, e) for p, e in self.fresh.items() if p in keep)
        meta = {"dir": self.out_dir, "files": {p: [*st, d] for p, (st, d) in entries.items()}}
        body = json.dumps(meta, separators=(",", ":")).encode()
        data = INDEX_MAGIC + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
        with contextlib.suppress(OSError):
            fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".tmp-index-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.file)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self.entries, self.fresh = entries, {}


def quick_check(project: Project, store: Cache) -> int | None:
    """The number of generated files when every one on disk is provably what the specs
    render, from the cache's entry heads and the stat index; None when this cannot be shown
    (then the full check decides, and reports)."""
    heads = store.replay_heads(project.changes_dir, project.root)
    if heads is None:
        return None
    expected: dict[str, str] = {}
    revisions: list[revision_files.Revision] = []
    for head in heads:
        expected.update(head.hashes)
        revisions += [r for r in head.revisions.values() if r is not None]
    expected[SUM_FILE] = h1(sum_of_hashes(expected))
    out_dir = project.output_dir
    base = os.fspath(out_dir)
    index = StatIndex.load(store.directory, out_dir)
    for path, digest in expected.items():
        full = os.path.join(base, path)
        try:
            st = os.stat(full)
            if index.trusts(path, st, digest):
                continue
            index.take_stamp()
            text, before, after = read_stable(full)
        except (OSError, UnicodeDecodeError):  # missing, a folder, unreadable
            return None
        if h1(text) != digest:
            return None
        index.record(path, before, after, digest)
    # Files the generator would own that it did not render: an orphan (the full check
    # reports it), or a hand-written revision (in the chain).
    for pattern in OWNED_PATTERNS:
        for path, full in matching(out_dir, pattern):
            if path in expected:
                continue
            try:
                text, _, _ = read_stable(full)
            except (OSError, UnicodeDecodeError):
                if os.path.isdir(full):
                    continue
                return None
            if path == SUM_FILE or is_generated(text):
                return None
            if path.startswith("versions/") and path.endswith(".py"):
                found = revision_files.parse(path, text)
                if found is not None:
                    revisions.append(found)
    if revision_files.problems(sorted(revisions, key=lambda r: r.path)):
        return None
    if store.writable:
        index.save(set(expected))
    return len(expected)


def record_compared(
    index: StatIndex,
    stats: dict[str, tuple[os.stat_result, os.stat_result]],
    rendered: Mapping[str, Text],
) -> None:
    """After a full check found the files current: record those it read (their stats from
    files.compare, read after ``index.take_stamp()``) with the rendered files' hashes, for
    the next quick check."""
    hashes = _hashes(rendered)
    for path, (before, after) in stats.items():
        if path in hashes:
            index.record(path, before, after, hashes[path])
    index.save(set(rendered))


def _hashes(rendered: Mapping[str, Text]) -> dict[str, str]:
    """Each rendered file's hash, from the rendered sum file's lines (and the sum's own)."""
    lines = str(rendered.get(SUM_FILE, "")).splitlines()[1:]
    out = {path: digest for path, _, digest in (ln.rpartition(" ") for ln in lines)}
    if SUM_FILE in rendered:
        out[SUM_FILE] = h1(str(rendered[SUM_FILE]))
    return out
