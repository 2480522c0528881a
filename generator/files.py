"""Write generated files, or compare them with what is on disk (``generate --check``).

Both consume the same ``{path: text}`` from :func:`generator.render.generate`. Only files the
generator owns are ever written or reported as orphans; env.py and friends are left alone.
"""

from __future__ import annotations

import base64
import difflib
import gc
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

OWNED_PATTERNS = (
    "versions/*.py",
    "validation/*/*.sql",
    "validation/*/*.json",
    "review/*.md",
    "schemagen.sum",
)


def _opens_generated(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return is_generated(f.read(200))
    except OSError:
        return False


def matching(out_dir: Path, pattern: str) -> list[tuple[str, str]]:
    """``(relative path, path)`` of the entries ``out_dir.glob(pattern)`` finds for one of
    OWNED_PATTERNS (literal names and ``*`` or ``*.ext`` parts), listed with os.scandir: a
    pattern's inner ``*`` takes directories only, its last part files and folders alike."""
    found = [("", os.fspath(out_dir))]
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        deeper: list[tuple[str, str]] = []
        for rel, path in found:
            if "*" not in part:
                child = os.path.join(path, part)
                if os.path.exists(child) if last else os.path.isdir(child):
                    deeper.append((f"{rel}{part}", child))
                continue
            suffix = part[1:]  # "*" or "*.ext"
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        if entry.name.endswith(suffix) and (last or entry.is_dir()):
                            deeper.append((f"{rel}{entry.name}", entry.path))
            except OSError:  # not a folder, or gone
                continue
        found = [(f"{rel}/", path) for rel, path in deeper] if not last else deeper
    return found


class Parts:
    """A rendered file's text as the UTF-8 parts it was assembled from, never joined while
    ``generate --check`` compares it: most of a validation file is blocks it shares with
    other files (generator.render), encoded once each. :meth:`matches` compares a file's
    bytes with them part by part and :meth:`h1` hashes them, neither copying the file's text;
    ``str(parts)`` joins them (a diff, a write)."""

    __slots__ = ("data", "size")

    def __init__(self, data: tuple[bytes, ...]) -> None:
        self.data = data
        self.size = sum(map(len, data))

    def __str__(self) -> str:
        return b"".join(self.data).decode("utf-8")

    def matches(self, data: bytes) -> bool:
        """True when ``data`` is exactly these bytes."""
        if len(data) != self.size:
            return False
        at = 0
        for part in self.data:
            if not data.startswith(part, at):
                return False
            at += len(part)
        return True

    def h1(self) -> str:
        """:func:`h1` of the text."""
        digest = hashlib.sha256()
        for part in self.data:
            digest.update(part)
        return "h1:" + base64.b64encode(digest.digest()).decode()

    def head(self, size: int) -> str:
        """The text's first characters (at least ``size`` of them, when it has them)."""
        out = b""
        for part in self.data:
            out += part
            if len(out) >= 4 * size:  # a character is at most four bytes
                break
        return out.decode("utf-8", errors="replace")[:size]


Text = str | Parts  # a rendered file's text, joined or not (Parts)


def owned_files(out_dir: Path, read: Mapping[str, Text] | None = None) -> set[str]:
    """The files here that the generator wrote: they open with its header (a hand-written
    revision beside them does not, and is the operator's). ``read``: the texts of files read
    already (by :func:`compare`), which are not opened again."""
    read = read or {}
    found: set[str] = set()
    for pattern in OWNED_PATTERNS:
        for rel, path in matching(out_dir, pattern):
            name = rel.rpartition("/")[2]
            if rel in read:  # read as a file already
                text = read[rel]
                owned = name == SUM_FILE or is_generated(
                    text if isinstance(text, str) else text.head(200)
                )
            else:
                owned = os.path.isfile(path) and (name == SUM_FILE or _opens_generated(Path(path)))
            if owned:
                found.add(rel)
    return found


def _read_bytes(path: str, size: int) -> bytes:
    """The file's bytes, ``size`` of them expected: one read of them and one empty read (the
    end), no stat and no buffered reader; a longer file read on to its end."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, size + 1)]
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_text(path: str, expected: str | None = None) -> str:
    """``Path(path).read_text(encoding="utf-8")``: the bytes decoded, then universal newlines
    (``\r\n`` and ``\r`` read as ``\n``), the translation skipped when there is no ``\r``.

    ``expected``: the text the caller will compare the file with; when the file's bytes are
    that text's (and hold no ``\r``), that very object is returned, nothing decoded."""
    with open(path, "rb") as fh:
        return _text_of(fh.read(), expected)


def read_stable(
    path: str, expected: str | None = None
) -> tuple[str, os.stat_result, os.stat_result]:
    """:func:`read_text` with the file's stat before and after the read."""
    with open(path, "rb") as fh:
        before = os.fstat(fh.fileno())
        data = fh.read()
        after = os.fstat(fh.fileno())
    return _text_of(data, expected), before, after


def _text_of(data: bytes, expected: str | None) -> str:
    # Comparing bytes with the expected text encoded is cheaper than decoding the file (and
    # a current file then costs no second copy of its text): the two are equal exactly when
    # the decoded file, without a \r to translate, equals the text.
    if expected is not None and b"\r" not in data and data == expected.encode("utf-8"):
        return expected
    text = data.decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


@dataclass
class Drift:
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    # What the comparison read, for sum_problems to check without reading it again (a file
    # equal to its rendered text: that very object, which may be Parts).
    on_disk: dict[str, Text] = field(default_factory=dict, repr=False)
    owned: set[str] = field(default_factory=set, repr=False)

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.orphaned)


def compare(
    files: Mapping[str, Text],
    out_dir: Path,
    label: str = "generated_migrations",
    stats: dict[str, tuple[os.stat_result, os.stat_result]] | None = None,
) -> Drift:
    """What differs between ``files`` and the output folder. ``stats``: filled with each file
    read, its stat before and after the read (generator.warmcheck records them)."""
    drift = Drift()
    base = os.fspath(out_dir)
    for path, rendered in sorted(files.items()):
        try:
            if isinstance(rendered, Parts) and stats is None:  # as bytes, part by part
                data = _read_bytes(os.path.join(base, path), rendered.size)
                if b"\r" not in data and rendered.matches(data):
                    drift.on_disk[path] = rendered
                    continue
                text = str(rendered)
                current = _text_of(data, text)
            elif stats is None:
                text = str(rendered)
                current = read_text(os.path.join(base, path), text)
            else:
                text = str(rendered)
                current, before, after = read_stable(os.path.join(base, path), text)
                stats[path] = (before, after)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            text = str(rendered)
            drift.missing.append(path)
            drift.diff.extend(
                difflib.unified_diff([], text.splitlines(True), "/dev/null", f"{label}/{path}")
            )
            continue
        drift.on_disk[path] = current
        if current != text:
            drift.changed.append(path)
            drift.diff.extend(
                difflib.unified_diff(
                    current.splitlines(True),
                    text.splitlines(True),
                    f"{label}/{path} (on disk)",
                    f"{label}/{path} (rendered from the specs)",
                )
            )
    drift.owned = owned_files(out_dir, drift.on_disk)
    for path in sorted(drift.owned - set(files)):
        drift.orphaned.append(path)
    return drift


@dataclass
class Written:
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # orphans the old sum did not list


def write(files: dict[str, str], out_dir: Path) -> Written:
    """Write every file that differs and delete orphans the generator wrote: those with its
    header that the sum on disk lists. Another file with the header is kept and reported:
    deleting what this generator cannot prove it wrote could delete someone's work."""
    try:
        listed = sum_entries((out_dir / SUM_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError):
        listed = {}
    orphans = sorted(owned_files(out_dir) - set(files))
    out = Written()
    for path, text in sorted(files.items()):
        target = out_dir / path
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        out.written.append(path)
    for path in orphans:
        if path in listed:
            (out_dir / path).unlink()
            out.deleted.append(path)
        else:
            out.kept.append(path)
    return out


SUM_FILE = "schemagen.sum"


def h1(text: str) -> str:
    return "h1:" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


# The first line of every file the generator writes (a comment in the file's own syntax).
# A validation file's checks as JSON (render.checks_json) carry the header as their first key.
_GENERATED = re.compile(r'^(?:(?:#|--|<!--) |\{"//": ")Generated by schemagen from ')


def is_generated(text: str) -> bool:
    """True when ``text`` opens with the generated header (hand-written files do not)."""
    return _GENERATED.match(text) is not None


def sum_entries(sum_text: str) -> dict[str, str] | None:
    """``{path: hash}`` of a sum file, or None when its first line is not the hash of the rest
    (the sum was edited)."""
    lines = sum_text.splitlines()
    if not lines or h1("\n".join(lines[1:]) + "\n") != lines[0]:
        return None
    return {path: digest for path, _, digest in (ln.rpartition(" ") for ln in lines[1:])}


def sum_file(files: dict[str, str]) -> str:
    """Like atlas.sum: a hash per generated file, in order, and a hash over those lines.

    It catches a hand edit, a swap of two files' contents, and an edit of the sum itself by
    hashes alone, so `generate --check` holds even when a renderer upgrade changes the output.
    """
    return sum_of_hashes({path: h1(text) for path, text in files.items()})


def sum_of_hashes(hashes: dict[str, str]) -> str:
    """The sum file of files whose hashes (:func:`h1`) are known already (generator.cache)."""
    lines = [f"{path} {digest}" for path, digest in sorted(hashes.items()) if path != SUM_FILE]
    body = "\n".join(lines) + "\n"
    return f"{h1(body)}\n{body}"


def _sum_lines(sum_text: str) -> dict[str, str]:
    return {line.rsplit(" ", 1)[0]: line for line in sum_text.splitlines()[1:]}


def sum_problems(
    out_dir: Path, drift: Drift | None = None, rendered: Mapping[str, Text] | None = None
) -> list[str]:
    """Where the files on disk disagree with the committed sum file (hashes only).

    With the ``drift`` of :func:`compare` and the ``rendered`` files it compared, the files
    it read are not read again, and a file equal to its rendered text is not hashed again:
    its line is the one of the rendered sum file (the same text has the same hash).
    """
    path = out_dir / SUM_FILE
    if not path.is_file():
        return [f"{SUM_FILE} is missing"]
    read = drift.on_disk if drift is not None else {}
    owned = drift.owned if drift is not None else owned_files(out_dir)
    sum_read = read.get(SUM_FILE)
    sum_text = path.read_text(encoding="utf-8") if sum_read is None else str(sum_read)
    lines = sum_text.splitlines()
    if not lines or h1("\n".join(lines[1:]) + "\n") != lines[0]:
        return [f"{SUM_FILE} was edited: its first line is not the hash of the others"]
    listed = _sum_lines(sum_text)
    on_disk: dict[str, Text] = {
        p: read[p] if p in read else (out_dir / p).read_text(encoding="utf-8") for p in owned
    }
    on_disk.pop(SUM_FILE, None)
    rendered = rendered or {}
    rendered_lines = _sum_lines(str(rendered[SUM_FILE])) if SUM_FILE in rendered else {}

    def line_of(p: str, text: Text) -> str:
        if p in rendered_lines and rendered.get(p) == text:  # Parts: the very object
            return rendered_lines[p]
        return f"{p} {h1(text) if isinstance(text, str) else text.h1()}"

    problems = [f"{p} is not in {SUM_FILE}" for p in sorted(set(on_disk) - set(listed))]
    problems += [
        f"{p} is listed in {SUM_FILE} but missing" for p in sorted(set(listed) - set(on_disk))
    ]
    problems += [
        f"{p} differs from its hash in {SUM_FILE}"
        for p, text in sorted(on_disk.items())
        if p in listed and listed[p] != line_of(p, text)
    ]
    return problems


@contextmanager
def few_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while specs are loaded and rendered: they
    allocate a few hundred thousand small objects, nearly none in a cycle, and at the default
    threshold (700) the collector ran some 300 times over the growing heap (a tenth of a cold
    generate --check over 500 changes). The threshold is restored after (CliRunner and the
    tests run in-process)."""
    threshold = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
