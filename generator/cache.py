"""A content-addressed cache of what ``generate`` renders: ``generate --check`` re-renders only
what changed.

A change's files (its migration after ruff, its validation SQL, its review) are a function of
its spec's text, the schema state before it, the templates, the tool and the project's
configuration. An entry is keyed on a hash of exactly those:

- the spec's text and its file name (the name is in the files' headers),
- a digest of the schema state before the change (:class:`Digester`: generic over the
  state's frozen dataclasses, tuples and scalars; nothing per operation),
- a digest of every file under the templates directory,
- the tool: its version, the digest of its own Python sources (a change to the code is a new
  tool even without a new version number) and the versions of Jinja2, ruff, PyYAML, Pydantic
  and Python,
- the project's settings that reach the output (folders, dialects, naming conventions).

An entry also holds the digest of the state after the change, which is the next change's
state before: a warm run (:meth:`Cache.replay`) reads each spec, chains the keys and takes
the files from the entries, without parsing YAML, validating or rendering anything. Any
miss, and the whole history is loaded and validated as without a cache; then only the changes
without an entry are rendered (:func:`generator.render.generate`). An entry is stored only
for a history that loaded without an error or an unacknowledged lint finding, so a history
replayed from entries is one that loads.

The cache lives in the project, ``.schemagen/cache/`` (it writes its own ``.gitignore``);
never in the home directory or the tool's installation. An entry is written to a temporary
file and renamed into place. It opens with its key and the SHA-256 of the rest: a truncated,
corrupt or foreign entry is ignored (and rewritten), never trusted. A cache folder that cannot
be created or written is no cache. Entries are JSON and text, nothing that runs code when read.
An entry no run has used for 30 days is deleted after a run that adds entries (:meth:`prune`).
``schemagen generate --no-cache`` or ``SCHEMAGEN_NO_CACHE=1`` renders everything afresh.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from generator import revision_files
from generator.files import SUM_FILE, Text, h1, sum_of_hashes
from generator.resources import TEMPLATES_DIR
from generator.revision_files import Revision
from generator.specfiles import FILE_RE, display_name, spec_files, text_digest

if TYPE_CHECKING:
    from generator.config import Project
    from generator.load import Change

FORMAT = 2  # 2: the JSON line's hash on the first line, each file's in it
MAGIC = b"schemagen-cache"
CACHE_DIR = Path(".schemagen") / "cache"
NO_CACHE_ENV = "SCHEMAGEN_NO_CACHE"
ENTRY_SUFFIX = ".entry"
EMPTY_STATE = "empty"  # Cache.state_digest of the empty schema
MAX_AGE_S = 30 * 24 * 3600  # an entry unused this long is deleted (after a run that renders)
TMP_AGE_S = 3600  # a temporary file this old was left by a killed run
# The distributions whose behaviour reaches the generated files.
_E = TypeVar("_E", "Entry", "Head")
DISTRIBUTIONS = ("schemagen", "jinja2", "ruff", "pyyaml", "pydantic", "pydantic-core")


class Digester:
    """A stable digest of a value built of dataclasses, tuples, lists, dicts, sets, enums and
    scalars: the same value gives the same digest in every process (no ``hash()``, no ``id``
    in it). Each dataclass instance is digested once per digester (the states of a history
    share most of their tables); anything else is a TypeError rather than a guess."""

    def __init__(self) -> None:
        # id -> (the object, kept alive so that its id is not reused; its digest)
        self._memo: dict[int, tuple[object, bytes]] = {}

    def hexdigest(self, value: object) -> str:
        h = hashlib.sha256()
        self._feed(h, value)
        return h.hexdigest()

    def _node(self, obj: Any) -> bytes:
        seen = self._memo.get(id(obj))
        if seen is not None and seen[0] is obj:
            return seen[1]
        h = hashlib.sha256()
        cls = type(obj)
        self._feed(h, f"{cls.__module__}.{cls.__qualname__}")
        for f in dataclasses.fields(obj):
            self._feed(h, f.name)
            self._feed(h, getattr(obj, f.name))
        digest = h.digest()
        self._memo[id(obj)] = (obj, digest)
        return digest

    def _feed(self, h: Any, value: object) -> None:
        if value is None:
            h.update(b"N")
        elif isinstance(value, bool):
            h.update(b"T" if value else b"F")
        elif isinstance(value, enum.Enum):
            h.update(b"E")
            self._feed(h, f"{type(value).__module__}.{type(value).__qualname__}")
            self._feed(h, value.value)
        elif isinstance(value, int):
            text = str(value).encode()
            h.update(b"I%d:%s" % (len(text), text))
        elif isinstance(value, float):
            text = repr(value).encode()
            h.update(b"R%d:%s" % (len(text), text))
        elif isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            h.update(b"S%d:" % len(data))
            h.update(data)
        elif isinstance(value, bytes):
            h.update(b"B%d:" % len(value))
            h.update(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            h.update(b"D")
            h.update(self._node(value))
        elif isinstance(value, tuple | list):
            h.update(b"L%d:" % len(value))
            for item in value:
                self._feed(h, item)
        elif isinstance(value, dict):
            h.update(b"M%d:" % len(value))
            for key, item in value.items():  # in order: an order can reach the output
                self._feed(h, key)
                self._feed(h, item)
        elif isinstance(value, set | frozenset):
            h.update(b"U%d:" % len(value))
            for digest in sorted(self.hexdigest(item) for item in value):
                h.update(digest.encode())
        else:
            raise TypeError(f"cannot digest a {type(value).__qualname__}")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "-"


def tree_digest(directory: Path, pattern: str = "*") -> str:
    """Every file under ``directory`` (matching ``pattern``): its path and its bytes."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob(pattern) if p.is_file()):
        rel = path.relative_to(directory).as_posix().encode()
        data = path.read_bytes()
        h.update(b"%d:%s%d:" % (len(rel), rel, len(data)))
        h.update(data)
    return h.hexdigest()


@functools.cache
def tool_fingerprint() -> str:
    """The tool that renders: the versions it runs on and its own source code."""
    h = hashlib.sha256()
    h.update(f"python {sys.version_info[0]}.{sys.version_info[1]}\n".encode())
    for distribution in DISTRIBUTIONS:
        h.update(f"{distribution} {_version(distribution)}\n".encode())
    h.update(tree_digest(Path(__file__).resolve().parent, "*.py").encode())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Entry:
    after: str  # the digest of the state after the change
    files: dict[str, str]  # path -> text
    hashes: dict[str, str]  # path -> its schemagen.sum hash (files.h1)
    # versions/ path -> what revision_files.parse reads in it (the chain check needs it)
    revisions: dict[str, Revision | None]

    @classmethod
    def of(cls, after: str, files: dict[str, str]) -> Entry:
        hashes = {path: h1(text) for path, text in files.items()}
        revisions = {
            path: revision_files.parse(path, text)
            for path, text in files.items()
            if path.startswith("versions/")
        }
        return cls(after, files, hashes, revisions)

    def remember(self) -> None:
        """Let revision_files.parse know its revisions without parsing the texts again."""
        for path, revision in self.revisions.items():
            revision_files.remember(path, self.files[path], revision)


def _revision_json(revision: Revision | None) -> list[Any] | None:
    if revision is None:
        return None
    return [revision.revision, list(revision.down), revision.generated]


def _revision_of(path: str, value: Any) -> Revision | None:
    if value is None:
        return None
    revision, down, generated = value
    if not (
        isinstance(revision, str)
        and isinstance(down, list)
        and all(isinstance(d, str) for d in down)
        and isinstance(generated, bool)
    ):
        raise TypeError("not a revision")
    return Revision(revision, tuple(down), path, generated)


def encode_entry(key: str, entry: Entry) -> bytes:
    """``MAGIC FORMAT KEY SHA256\\n`` then a JSON line (the state after, each file's path,
    length in bytes and hash, the revisions its migrations declare), then the files' bytes one
    after another. The SHA-256 on the first line is the JSON line's; each file's bytes are
    covered by their own hash in it (``h1`` is the SHA-256 of the text's UTF-8 bytes), so a
    warm ``generate --check`` reads the two lines alone (:meth:`Cache.head`) and the texts only
    when it needs them."""
    blobs = [entry.files[path].encode("utf-8") for path in entry.files]
    meta = {
        "after": entry.after,
        "files": [
            [path, len(blob), entry.hashes[path]]
            for path, blob in zip(entry.files, blobs, strict=True)
        ],
        "revisions": {path: _revision_json(rev) for path, rev in entry.revisions.items()},
    }
    line = json.dumps(meta, ensure_ascii=True).encode() + b"\n"
    head = b"%s %d %s %s\n" % (
        MAGIC,
        FORMAT,
        key.encode(),
        hashlib.sha256(line).hexdigest().encode(),
    )
    return head + line + b"".join(blobs)


@dataclasses.dataclass(frozen=True)
class Head:
    """What an entry says of its files without their texts: enough to check files on disk
    against (their hashes) and the revision chain (generator.quick)."""

    after: str
    hashes: dict[str, str]  # path -> its schemagen.sum hash (files.h1)
    sizes: dict[str, int]  # path -> its length in bytes (UTF-8)
    revisions: dict[str, Revision | None]


def decode_head(key: str, head: bytes, line: bytes) -> Head | None:
    """The head of an entry from its first two lines, if it is of this format, for ``key``
    and whole (its JSON line's SHA-256); else None."""
    parts = head.rstrip(b"\n").split(b" ")
    if len(parts) != 4 or parts[:3] != [MAGIC, b"%d" % FORMAT, key.encode()]:
        return None
    if not line.endswith(b"\n") or hashlib.sha256(line).hexdigest().encode() != parts[3]:
        return None
    try:
        meta = json.loads(line)
        after, listed, parsed = meta["after"], meta["files"], meta["revisions"]
        if not (isinstance(after, str) and isinstance(listed, list) and isinstance(parsed, dict)):
            return None
        hashes: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for path, size, digest in listed:
            if not (isinstance(path, str) and isinstance(size, int) and isinstance(digest, str)):
                return None
            hashes[path] = digest
            sizes[path] = size
        if not set(parsed) <= set(hashes):
            return None
        revisions = {path: _revision_of(path, value) for path, value in parsed.items()}
    except (ValueError, KeyError, TypeError):  # JSONDecodeError and UnicodeDecodeError too
        return None
    return Head(after, hashes, sizes, revisions)


def _hash_of(blob: bytes | memoryview) -> str:
    return "h1:" + base64.b64encode(hashlib.sha256(blob).digest()).decode()


def decode_entry(key: str, data: bytes) -> Entry | None:
    """The entry in ``data`` if it is whole (its head, and every file's bytes against their
    hash), of this format and for ``key``; else None."""
    end = data.find(b"\n")
    split = data.find(b"\n", end + 1) if end >= 0 else -1
    if split < 0:
        return None
    head = decode_head(key, data[: end + 1], data[end + 1 : split + 1])
    if head is None:
        return None
    files: dict[str, str] = {}
    view = memoryview(data)
    at = split + 1
    try:
        for path, size in head.sizes.items():
            blob = view[at : at + size]
            if len(blob) != size or _hash_of(blob) != head.hashes[path]:
                return None
            files[path] = str(blob, "utf-8")
            at += size
    except UnicodeDecodeError:
        return None
    if at != len(data):
        return None
    return Entry(head.after, files, head.hashes, head.revisions)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=ENTRY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Cache:
    """One run's view of a cache folder, with what it found: ``hits`` (changes taken from an
    entry), ``rendered`` (changes rendered and stored), ``rejected`` (entries ignored as
    corrupt, truncated or foreign)."""

    def __init__(self, directory: Path, templates_dir: Path, settings: Mapping[str, Any]) -> None:
        self.directory = directory
        self.writable = True
        self.hits: list[str] = []
        self.rendered: list[str] = []
        self.rejected: list[Path] = []
        self._digester = Digester()
        h = hashlib.sha256()
        h.update(b"%s %d\n" % (MAGIC, FORMAT))
        h.update(tool_fingerprint().encode() + b"\n")
        h.update(tree_digest(templates_dir).encode() + b"\n")
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        self._base = h.hexdigest()

    def key(self, display: str, source_digest: str, before_digest: str) -> str:
        h = hashlib.sha256()
        for part in (self._base, display, source_digest, before_digest):
            data = part.encode("utf-8", "surrogatepass")
            h.update(b"%d:" % len(data))
            h.update(data)
        return h.hexdigest()

    def state_digest(self, state: object) -> str:
        from generator.state import Schema  # imported already by whoever built the state

        if state == Schema():
            # A fixed digest for the state before a history's first change: a warm run
            # (replay) keys that change without importing the state model, and SQLAlchemy
            # with it. The tool's fingerprint covers the model's code.
            return EMPTY_STATE
        return self._digester.hexdigest(state)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{ENTRY_SUFFIX}"

    def get(self, key: str) -> Entry | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:  # none yet, or unreadable: a miss
            return None
        entry = decode_entry(key, data)
        self._used(path, entry is not None)
        return entry

    def head(self, key: str) -> Head | None:
        """The entry's head (:class:`Head`): its first two lines, not its texts."""
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                first = fh.readline(4096)
                found = decode_head(key, first, fh.readline())
        except OSError:
            return None
        self._used(path, found is not None)
        return found

    def _used(self, path: Path, valid: bool) -> None:
        if not valid:
            if path not in self.rejected:
                self.rejected.append(path)
        elif self.writable:
            with contextlib.suppress(OSError):
                os.utime(path)  # used: its age counts from now (see prune)

    def prune(self, max_age_s: float = MAX_AGE_S) -> list[Path]:
        """Delete entries no run has used for ``max_age_s`` (an edited change leaves its old
        entries behind) and temporary files a killed run left; the files deleted."""
        deleted: list[Path] = []
        now = time.time()
        try:
            paths = list(self.directory.iterdir())
        except OSError:
            return deleted
        for path in paths:
            is_tmp = path.name.startswith(".tmp-")
            if not (is_tmp or path.name.endswith(ENTRY_SUFFIX)):
                continue
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > (TMP_AGE_S if is_tmp else max_age_s):
                    path.unlink()
                    deleted.append(path)
        return deleted

    def put(self, key: str, entry: Entry) -> None:
        if not self.writable:
            return
        try:
            if not self.directory.is_dir():
                self.directory.mkdir(parents=True, exist_ok=True)
                _write_atomic(self.directory / ".gitignore", b"# the schemagen cache\n*\n")
            _write_atomic(self.path(key), encode_entry(key, entry))
        except OSError:  # a read-only project, a full disk: no cache this run
            self.writable = False

    # -- with loaded changes (generator.render.generate)

    def _key_of(self, change: Change) -> str | None:
        if not change.source_digest:
            return None
        return self.key(change.display, change.source_digest, self.state_digest(change.before))

    def lookup(self, change: Change) -> Entry | None:
        """The change's entry, or None (then render the change and :meth:`store` it)."""
        key = self._key_of(change)
        entry = self.get(key) if key is not None else None
        if entry is None or entry.after != self.state_digest(change.after):
            return None
        entry.remember()
        self.hits.append(change.display)
        return entry

    def store(self, change: Change, files: dict[str, str]) -> Entry:
        """Keep the files rendered for ``change``; the entry (its files' hashes too)."""
        self.rendered.append(change.display)
        entry = Entry.of(self.state_digest(change.after), files)
        entry.remember()
        key = self._key_of(change)
        if key is not None:
            self.put(key, entry)
        return entry

    # -- without loading anything

    def replay(self, changes_dir: Path, display_base: Path | None) -> dict[str, str] | None:
        """Every generated file of the history, all from entries; None at the first change
        without one (or at anything the loader would have to report)."""
        entries = self._chain(changes_dir, display_base, self.get)
        if entries is None:
            return None
        out: dict[str, str] = {}
        hashes: dict[str, str] = {}
        for entry in entries:
            out.update(entry.files)
            hashes.update(entry.hashes)
            entry.remember()
        out[SUM_FILE] = sum_of_hashes(hashes)
        return dict(sorted(out.items()))

    def replay_heads(self, changes_dir: Path, display_base: Path | None) -> list[Head] | None:
        """Like :meth:`replay`, the entries' heads only (no text is read)."""
        return self._chain(changes_dir, display_base, self.head)

    def _chain(
        self, changes_dir: Path, display_base: Path | None, fetch: Callable[[str], _E | None]
    ) -> list[_E] | None:
        """Each change's entry (or head), keyed from its spec's text and the state after the
        entry before it; None at the first change without one, or at anything the loader
        would have to report."""
        try:
            specs = spec_files(changes_dir)
        except OSError:
            return None
        if not specs:
            return None
        before = EMPTY_STATE
        found: list[_E] = []
        names: list[str] = []
        for number, file in enumerate(specs):
            m = FILE_RE.match(file.name)
            if m is None or int(m["num"]) != number:
                return None
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return None
            display = display_name(file, display_base)
            entry = fetch(self.key(display, text_digest(text), before))
            if entry is None:
                return None
            found.append(entry)
            names.append(display)
            before = entry.after
        self.hits.extend(names)
        return found


def settings_of(project: Project) -> dict[str, Any]:
    """The project's settings that reach the generated files."""
    return {
        "changes": project.changes,
        "output": project.output,
        "dialects": list(project.dialects),
        "metadata": project.metadata,
        "version_table": project.version_table,
        "foreign_tables": list(project.foreign_tables),
        "conventions": dataclasses.asdict(project.conventions),
    }


def enabled() -> bool:
    return os.environ.get(NO_CACHE_ENV, "").strip() in ("", "0")


def open_cache(project: Project, templates_dir: Path | None = None) -> Cache:
    return Cache(project.root / CACHE_DIR, templates_dir or TEMPLATES_DIR, settings_of(project))


def render_project(
    project: Project, use_cache: bool = True, store: Cache | None = None, lazy: bool = False
) -> Mapping[str, Text]:
    """Every generated file of the project: from the cache where it has them, else loaded,
    validated and rendered (raises SpecErrors as :func:`generator.load.load_changes`).

    ``store``: this cache rather than the project's (tests look at what it found). ``lazy``:
    without a cache, the validation files as files.Parts (render.generate_parts).
    """
    if store is None and use_cache and enabled():
        store = open_cache(project)
    if store is not None:
        replayed = store.replay(project.changes_dir, project.root)
        if replayed is not None:
            return replayed
    from generator import render
    from generator.load import load_changes

    changes = load_changes(
        project.changes_dir, display_base=project.root, conventions=project.conventions
    )
    files = render.generate_parts(
        changes,
        output=project.output,
        version_table=project.version_table,
        cache=store,
        foreign_tables=project.foreign_tables,
        lazy=lazy,
    )
    if store is not None and store.rendered and store.writable:
        store.prune()  # only after a run that added entries: a warm run reads, no more
    return files
