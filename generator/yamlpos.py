"""Safe YAML reading that keeps a line and column for every node.

Plain PyYAML keeps the last of two duplicate keys without a word and expands aliases
without limit; here both are errors, as are explicit tags, so a spec is plain data. One
parser: libyaml's (PyYAML's C extension, CParser) where PyYAML was built with it, as its
wheels are; PyYAML's pure-Python one otherwise. Either way the data is composed here, in
Python, from the parser's events, so the checks above and every position (the events'
marks) are the same code (a warm ``generate`` does not parse at all: see generator.cache).
The events become the data and its positions directly: each scalar's tag resolved and its
value constructed as PyYAML's composer and constructor do, but no tree of nodes built and
walked again (a cold check reads every spec; tests/generator/test_yaml_parser.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from generator.errors import Path, SpecError, format_path


@dataclass
class Positions:
    """Where each value (and each mapping key) of a document starts, 1-based."""

    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def of_value(self, path: Path) -> tuple[int, int]:
        """The position of the value at ``path`` or of its nearest existing ancestor."""
        for n in range(len(path), -1, -1):
            pos = self.values.get(path[:n])
            if pos is not None:
                return pos
        return (1, 1)

    def of_key(self, path: Path) -> tuple[int, int]:
        return self.keys.get(path) or self.of_value(path)


class _Refused(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        self.mark = mark
        self.message = message


def _refuse(event: Any) -> None:
    """Raise for an alias, an anchor or an explicit tag: a spec is plain data."""
    if isinstance(event, yaml.AliasEvent):
        raise _Refused(event.start_mark, "YAML aliases (*name) are not allowed in specs")
    anchor = getattr(event, "anchor", None)
    if anchor is not None:
        raise _Refused(event.start_mark, f"YAML anchors (&{anchor}) are not allowed in specs")
    tag = getattr(event, "tag", None)
    if tag is not None and tag != "!":
        raise _Refused(event.start_mark, f"YAML tags ({tag}) are not allowed in specs")


# Composing is recursive: without a bound a deeply nested document exhausts the stack
# (RecursionError). A real spec nests about six levels.
MAX_DEPTH = 64


try:
    from yaml._yaml import CParser as _Parser  # libyaml: scans and parses in C

    LIBYAML = True
except ImportError:  # PyYAML built without libyaml
    from yaml.parser import Parser as _Parser  # type: ignore[assignment]
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    LIBYAML = False


if LIBYAML:

    class _StrictLoader(_Parser, SafeConstructor, Resolver):
        def __init__(self, text: str) -> None:
            _Parser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # the pure-Python reader, scanner and parser: yaml.SafeLoader's

    class _StrictLoader(Reader, Scanner, _Parser, SafeConstructor, Resolver):  # type: ignore[no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)  # checks every character here
            Scanner.__init__(self)
            _Parser.__init__(self)  # type: ignore[call-arg]
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


def _mark(mark: yaml.Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _reader_error(exc: yaml.YAMLError, text: str, file: str, chars: bool = False) -> SpecError:
    """A reader error (a control character, say) at its line and column."""
    position = getattr(exc, "position", None)
    if not isinstance(position, int):
        return SpecError(file, 1, 1, "", f"invalid YAML: {exc}")
    if LIBYAML and not chars:  # libyaml reads UTF-8: its position is a byte offset
        position = len(text.encode("utf-8")[:position].decode("utf-8", errors="ignore"))
    line = text.count("\n", 0, position) + 1
    col = position - (text.rfind("\n", 0, position) + 1) + 1
    character = getattr(exc, "character", None)
    if isinstance(character, str):
        character = ord(character)
    what = f"character U+{character:04X}" if isinstance(character, int) else "a character"
    return SpecError(file, line, col, "", f"invalid YAML: {what} is not allowed in YAML")


def load(text: str, file: str) -> tuple[Any, Positions, list[SpecError]]:
    """Parse one YAML document; return the data, its positions and any errors."""
    try:
        loader = _StrictLoader(text)  # the pure-Python reader checks every character here
    except yaml.YAMLError as exc:
        return None, Positions(), [_reader_error(exc, text, file)]
    except UnicodeEncodeError as exc:  # libyaml: a lone surrogate has no UTF-8
        error = yaml.reader.ReaderError(file, exc.start, ord(text[exc.start]), "utf-8", "")
        return None, Positions(), [_reader_error(error, text, file, chars=True)]

    try:
        positions = Positions()
        errors: list[SpecError] = []
        try:
            data, found = _document(loader, positions, errors, file)
        except _Refused as exc:
            line, col = _mark(exc.mark)
            return None, Positions(), [SpecError(file, line, col, "", exc.message)]
        except yaml.MarkedYAMLError as exc:
            line, col = _mark(exc.problem_mark or exc.context_mark)
            problem = exc.problem or exc.context or "invalid YAML"
            return None, Positions(), [SpecError(file, line, col, "", f"invalid YAML: {problem}")]
        except yaml.YAMLError as exc:  # e.g. a reader error on a control character
            return None, Positions(), [_reader_error(exc, text, file)]
        if not found:
            return None, positions, [SpecError(file, 1, 1, "", "the file is empty")]
        return data, positions, errors
    finally:
        loader.dispose()


def _document(
    loader: Any, positions: Positions, errors: list[SpecError], file: str
) -> tuple[Any, bool]:
    """The stream's one document as data (False: the stream has none), as
    ``Composer.get_single_node`` reads it: a second document is an error."""
    loader.get_event()  # STREAM-START
    data, found, start = None, False, None
    if not loader.check_event(yaml.StreamEndEvent):
        loader.get_event()  # DOCUMENT-START
        start = loader.peek_event().start_mark  # the root's, as the composer's document's
        data = _value(loader, (), 1, positions, errors, file)
        loader.get_event()  # DOCUMENT-END
        found = True
    if not loader.check_event(yaml.StreamEndEvent):
        event = loader.get_event()
        raise yaml.composer.ComposerError(
            "expected a single document in the stream",
            start,
            "but found another document",
            event.start_mark,
        )
    loader.get_event()  # STREAM-END
    return data, found


def _value(
    loader: Any,
    path: Path,
    depth: int,
    positions: Positions,
    errors: list[SpecError],
    file: str,
) -> Any:
    """The node the next events make, as data; its position (and its keys') recorded."""
    event = loader.peek_event()
    _refuse(event)
    if depth > MAX_DEPTH:
        raise _Refused(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
    positions.values[path] = _mark(event.start_mark)
    loader.get_event()
    if isinstance(event, yaml.ScalarEvent):
        tag = event.tag
        if tag is None or tag == "!":
            tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        marks: tuple[Any, Any] = (event.start_mark, event.end_mark)  # libyaml's or PyYAML's
        node = yaml.ScalarNode(tag, event.value, *marks, style=event.style)
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            line, col = _mark(node.start_mark)
            errors.append(SpecError(file, line, col, format_path(path), f"invalid value: {exc}"))
            return None
    if isinstance(event, yaml.SequenceStartEvent):
        items: list[Any] = []
        while not loader.check_event(yaml.SequenceEndEvent):
            items.append(_value(loader, (*path, len(items)), depth + 1, positions, errors, file))
        loader.get_event()
        return items
    # a mapping (the parser's events are nodes' starts, ends or scalars)
    out: dict[Any, Any] = {}
    first_seen: dict[Any, int] = {}
    while not loader.check_event(yaml.MappingEndEvent):
        key_event = loader.peek_event()
        line, col = _mark(key_event.start_mark)
        if not isinstance(key_event, yaml.ScalarEvent):  # composed, then left out
            _value(loader, (), depth + 1, Positions(), [], file)
            _value(loader, (), depth + 1, Positions(), [], file)
            errors.append(SpecError(file, line, col, format_path(path), "keys must be plain"))
            continue
        _refuse(key_event)
        if depth + 1 > MAX_DEPTH:
            raise _Refused(key_event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        loader.get_event()
        key = key_event.value
        if key in first_seen:
            _value(loader, (), depth + 1, Positions(), [], file)  # composed, then left out
            errors.append(
                SpecError(
                    file,
                    line,
                    col,
                    format_path((*path, key)),
                    f"duplicate key {key!r} (first given on line {first_seen[key]})",
                )
            )
            continue
        first_seen[key] = line
        positions.keys[(*path, key)] = (line, col)
        out[key] = _value(loader, (*path, key), depth + 1, positions, errors, file)
    loader.get_event()
    return out
