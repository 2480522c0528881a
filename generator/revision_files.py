"""The revision chain of ``generated_migrations/versions/``: generated and hand-written
revisions together, read without importing them (importing runs a script's code).

A hand-written revision is one without the generated header; it is the operator's, the
generator never writes or deletes it, and the chain must still have exactly one head.

``generate`` and its cache use this (no Alembic or SQLAlchemy import: it starts fast);
where a *database* stands against the graph at run time is :mod:`generator.revisions`, which
asks Alembic's ``ScriptDirectory`` and the version table.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from generator.files import Text, is_generated


@dataclass(frozen=True)
class Revision:
    revision: str
    down: tuple[str, ...]  # its parents: none for the first, two or more for a merge
    path: str  # "versions/<file>.py"
    generated: bool

    @property
    def name(self) -> str:
        return Path(self.path).stem


def _literal(node: ast.expr) -> tuple[str, ...] | None:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


# What parse() found in a text before, by (path, text): generator.cache keeps the revision of
# each migration it renders beside the text, and a warm run does not parse it again.
_known: dict[tuple[str, str], Revision | None] = {}


def remember(path: str, text: str, revision: Revision | None) -> None:
    if len(_known) >= 20_000:  # a long-lived process: keep it bounded
        _known.clear()
    _known[(path, text)] = revision


def parse(path: str, text: str) -> Revision | None:
    """The revision a script declares, or None when it declares none it can be read from."""
    if (path, text) in _known:
        return _known[(path, text)]
    try:
        module = ast.parse(text)
    except SyntaxError:
        return None
    found: dict[str, tuple[str, ...] | None] = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            found[target.id] = _literal(value)
    revision, down = found.get("revision"), found.get("down_revision")
    if not revision or len(revision) != 1 or down is None:
        return None
    return Revision(revision[0], down, path, is_generated(text))


def read(
    out_dir: Path,
    rendered: Mapping[str, Text] | None = None,
    on_disk: Mapping[str, Text] | None = None,
) -> list[Revision]:
    """Every revision: the generated ones from ``rendered`` when given (what generate is about
    to write), else from disk, and the hand-written ones from disk. ``on_disk``: texts of
    files read from disk already (files.compare), not read again."""
    texts: dict[str, str] = {}
    on_disk = on_disk or {}
    for file in sorted((out_dir / "versions").glob("*.py")):
        path = f"versions/{file.name}"
        if path in on_disk:
            texts[path] = str(on_disk[path])  # a migration is rendered as one str
            continue
        try:
            texts[path] = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    if rendered is not None:
        texts = {p: t for p, t in texts.items() if not is_generated(t)}
        texts.update({p: str(t) for p, t in rendered.items() if p.startswith("versions/")})
    return [r for p, t in sorted(texts.items()) if (r := parse(p, t)) is not None]


def problems(revisions: list[Revision]) -> list[str]:
    """What breaks the chain: duplicate ids, unknown parents, not exactly one head."""
    out: list[str] = []
    by_id: dict[str, Revision] = {}
    for rev in revisions:
        other = by_id.get(rev.revision)
        if other is not None:
            out.append(f"{rev.path}: revision {rev.revision!r} is also declared by {other.path}")
        by_id.setdefault(rev.revision, rev)
    parents = {p for rev in revisions for p in rev.down}
    for rev in revisions:
        for parent in rev.down:
            if parent not in by_id:
                out.append(f"{rev.path}: down_revision {parent!r} is no revision here")
    heads = [rev for rev in by_id.values() if rev.revision not in parents]
    if len(heads) > 1:
        listed = ", ".join(f"{h.revision} ({h.path})" for h in heads)
        out.append(
            f"{len(heads)} heads: {listed}; point the hand-written revision's down_revision at "
            "the last generated one (or the other way round) so the chain has one head"
        )
    return out


def chain(revisions: list[Revision]) -> list[Revision]:
    """The revisions from base to head (parents before children; a cycle is left out)."""
    by_id = {rev.revision: rev for rev in revisions}
    waiting = {r.revision: sum(p in by_id for p in r.down) for r in by_id.values()}
    children: dict[str, list[str]] = {}
    for rev in by_id.values():
        for parent in rev.down:
            children.setdefault(parent, []).append(rev.revision)
    ready = sorted(r for r, n in waiting.items() if n == 0)
    out: list[Revision] = []
    while ready:
        current = ready.pop(0)
        out.append(by_id[current])
        for child in sorted(children.get(current, [])):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return out


def nearest_generated(revisions: list[Revision], revision: str) -> Revision | None:
    """``revision`` itself when generated, else its closest generated ancestor."""
    by_id = {rev.revision: rev for rev in revisions}
    todo, seen = [revision], set()
    while todo:
        current = by_id.get(todo.pop(0))
        if current is None or current.revision in seen:
            continue
        if current.generated:
            return current
        seen.add(current.revision)
        todo.extend(current.down)
    return None
