"""The expression grammar of specs: parsed, checked and rendered by the tool, never raw SQL.

Partial-index ``where``, check ``expression`` and backfill ``set``/``where`` strings are
parsed into a small immutable AST, checked against the table's columns, and rendered for each
dialect so that an expression means the same rows and values on SQLite and PostgreSQL.

The spec loader calls, for a string ``text`` found at a YAML node::

    expr = parse(text)                            # syntax; raises ExprError(offset, message)
    check(expr, "boolean", {"price": "number", ...}, deterministic=True)  # names, types, now
    sql = to_sql(expr, "postgresql", {"price": "number", ...})   # for the template
    stored = canonical(expr)                                     # for the state and review

(``type_class`` maps a spec column type to the class ``check`` wants; ``to_sqlalchemy`` is
the clause form for code that runs statements, such as a backfill.)

``ExprError.offset`` is the 0-based character offset into ``text``;
``source_position(source, line, column, offset)`` turns it into the 1-based line and column of
that character in the YAML file, given the position of the string's node.

The grammar, loosest binding first (see docs/authoring.md, "Expressions")::

    expr       := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | predicate
    predicate  := sum [ compare_op sum
                      | "IS" ["NOT"] "NULL"
                      | ["NOT"] "IN" "(" literal ("," literal)* ")"
                      | ["NOT"] "BETWEEN" sum "AND" sum ]
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := literal | column | function "(" [expr ("," expr)*] ")" | "now" | "(" expr ")"
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

if TYPE_CHECKING:  # imported by to_sqlalchemy: rendering never needs SQLAlchemy
    from sqlalchemy.sql.elements import ColumnElement

MAX_LENGTH: Final = 4000
MAX_DEPTH: Final = 64
MAX_INT: Final = 2**63 - 1  # PostgreSQL bigint; SQLite would silently turn a larger one to REAL
MAX_DECIMAL_DIGITS: Final = 38

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
KEYWORDS: Final = frozenset({"and", "or", "not", "is", "null", "in", "between", "true", "false"})
FUNCTIONS: Final = ("coalesce", "length", "lower", "now", "upper")
COMPARE_OPS: Final = ("=", "<>", "<", "<=", ">", ">=")

Dialect: TypeAlias = Literal["postgresql", "sqlite"]
TypeClass: TypeAlias = Literal["boolean", "number", "text", "timestamp", "other"]
TYPE_CLASSES: Final = ("boolean", "number", "text", "timestamp", "other")


class ExprError(Exception):
    """An expression outside the grammar: ``offset`` (0-based) and what was expected there."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(offset, message)
        self.offset = offset
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (at offset {self.offset})"


def locate(text: str, offset: int) -> tuple[int, int]:
    """The 0-based (line, column) of ``offset`` inside ``text`` (a folded YAML string may
    span lines)."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return line, offset - start


def source_position(source: str, line: int, column: int, offset: int) -> tuple[int, int]:
    """The 1-based (line, column) in the YAML ``source`` of character ``offset`` of the
    string scalar whose node starts at (``line``, ``column``), 1-based, as
    ``generator.yamlpos`` records it (a quote, ``|``/``>`` or the first character).

    Exact for plain and quoted scalars, on one line or folded over several (``''`` and
    backslash escapes counted as one character), and for literal (``|``) and folded (``>``)
    blocks; anything it cannot follow gives the scalar's own position."""
    rows = [row.rstrip("\r") for row in source.split("\n")]
    r, i = line - 1, column - 1
    if not (0 <= r < len(rows)) or not (0 <= i < len(rows[r])):
        return line, column
    first = rows[r][i]
    if first in "|>":
        header = re.match(r"[|>][-+]?([1-9]?)", rows[r][i:])
        indent = None
        if header and header.group(1):
            # an explicit indentation, counted from the node that holds the block
            holder = re.match(r"(?:[ \t]*-[ \t]+)*[ \t]*", rows[r])
            indent = (holder.end() if holder else 0) + int(header.group(1))
        found = _block_position(rows, r, offset, folded=first == ">", indent=indent)
        return found or (line, column)
    quote = first if first in "'\"" else ""
    i += bool(quote)
    k = 0
    while True:
        if quote == '"' and rows[r][i:].rstrip(" \t") == "\\" and r + 1 < len(rows):
            # an escaped line break: the value goes on at the next line's text, no space
            r += 1
            i = len(rows[r]) - len(rows[r].lstrip(" \t"))
            continue
        if rows[r][i:].strip(" \t") == "" and k < offset:
            # A line break inside a flow scalar folds to one space, or to one newline per
            # blank line; the next line's indentation is not part of the value.
            r += 1
            blanks = 0
            while r < len(rows) and rows[r].strip(" \t") == "":
                r, blanks = r + 1, blanks + 1
            if r >= len(rows):
                return line, column
            i = len(rows[r]) - len(rows[r].lstrip(" \t"))
            k += max(1, blanks)
            continue
        if k >= offset:
            return (r + 1, i + 1) if k == offset else (line, column)
        row = rows[r]
        if quote == "'" and row.startswith("''", i):
            i += 2
        elif quote == '"' and row[i] == "\\":
            i += {"x": 4, "u": 6, "U": 10}.get(row[i + 1 : i + 2], 2)
        else:
            i += 1
        k += 1


def _block_position(
    rows: list[str], r: int, offset: int, folded: bool, indent: int | None
) -> tuple[int, int] | None:
    def blank(row: str) -> bool:
        return row.strip(" ") == "" and (indent is None or len(row) <= indent)

    k = 0
    j = r + 1
    while j < len(rows):
        row = rows[j]
        if blank(row):
            k += 1  # a blank line is a newline of the value
            j += 1
            continue
        here = len(row) - len(row.lstrip(" "))
        if indent is None:
            indent = here
        if here < indent:
            return None
        content = row[indent:]
        if offset < k + len(content):
            return j + 1, indent + offset - k + 1
        k += len(content)
        if offset == k:
            return j + 1, indent + len(content) + 1
        if folded:
            # A folded break is a space between two lines of text, and disappears before
            # blank lines (they stand for the newlines); next to a more-indented line it stays
            # a newline.
            m = j + 1
            while m < len(rows) and blank(rows[m]):
                m += 1
            spaced = content[:1] in (" ", "\t") or (
                m < len(rows) and rows[m][indent : indent + 1] in (" ", "\t")
            )
            k += 1 if spaced or m == j + 1 else 0
        else:
            k += 1
        j += 1
    return None


# --- the AST -----------------------------------------------------------------------------
# ``offset`` is where the node starts in the parsed text; it is left out of equality so that
# a tree parsed from its canonical text equals the original.


@dataclass(frozen=True)
class Node:
    offset: int = field(default=0, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Column(Node):
    name: str

    def __post_init__(self) -> None:
        if not IDENTIFIER.match(self.name):
            raise ValueError(f"invalid column name {self.name!r}")


@dataclass(frozen=True)
class IntLit(Node):
    value: int

    def __post_init__(self) -> None:
        if type(self.value) is not int or abs(self.value) > MAX_INT:
            raise ValueError(f"integer literal out of range: {self.value!r}")


@dataclass(frozen=True)
class DecLit(Node):
    value: Decimal

    def __post_init__(self) -> None:
        if not self.value.is_finite():
            raise ValueError(f"decimal literal must be finite: {self.value!r}")


@dataclass(frozen=True)
class StrLit(Node):
    value: str

    def __post_init__(self) -> None:
        if "\x00" in self.value:
            raise ValueError("a string literal cannot hold a NUL character")


@dataclass(frozen=True)
class BoolLit(Node):
    value: bool


@dataclass(frozen=True)
class NullLit(Node):
    pass


LiteralNode: TypeAlias = IntLit | DecLit | StrLit | BoolLit | NullLit


@dataclass(frozen=True)
class Neg(Node):
    """Unary minus of anything but a number literal (``-5`` is ``IntLit(-5)``)."""

    operand: Expr

    def __post_init__(self) -> None:
        if isinstance(self.operand, IntLit | DecLit):
            raise ValueError("a negated number literal is a negative literal")


@dataclass(frozen=True)
class Arith(Node):
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Compare(Node):
    op: Literal["=", "<>", "<", "<=", ">", ">="]
    left: Expr
    right: Expr


@dataclass(frozen=True)
class IsNull(Node):
    operand: Expr
    negated: bool = False


@dataclass(frozen=True)
class In(Node):
    operand: Expr
    items: tuple[LiteralNode, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("an IN list needs at least one literal")


@dataclass(frozen=True)
class Between(Node):
    operand: Expr
    low: Expr
    high: Expr
    negated: bool = False


@dataclass(frozen=True)
class Not(Node):
    operand: Expr


@dataclass(frozen=True)
class BoolOp(Node):
    op: Literal["AND", "OR"]
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Func(Node):
    name: Literal["coalesce", "length", "lower", "upper"]
    args: tuple[Expr, ...]

    def __post_init__(self) -> None:
        if (self.name == "coalesce") != (len(self.args) >= 2) or (
            self.name != "coalesce" and len(self.args) != 1
        ):
            raise ValueError(f"wrong number of arguments for {self.name}")


@dataclass(frozen=True)
class Now(Node):
    pass


Expr: TypeAlias = (
    Column
    | IntLit
    | DecLit
    | StrLit
    | BoolLit
    | NullLit
    | Neg
    | Arith
    | Compare
    | IsNull
    | In
    | Between
    | Not
    | BoolOp
    | Func
    | Now
)


def children(expr: Expr) -> tuple[Expr, ...]:
    match expr:
        case Neg(operand=o) | Not(operand=o) | IsNull(operand=o):
            return (o,)
        case Arith(left=a, right=b) | Compare(left=a, right=b) | BoolOp(left=a, right=b):
            return (a, b)
        case In(operand=o, items=items):
            return (o, *items)
        case Between(operand=o, low=lo, high=hi):
            return (o, lo, hi)
        case Func(args=args):
            return args
    return ()


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node, parents before children (iterative: a deep tree cannot overflow)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def columns(expr: Expr) -> frozenset[str]:
    """The names of the columns the expression reads."""
    return frozenset(n.name for n in walk(expr) if isinstance(n, Column))


def uses_now(expr: Expr) -> bool:
    return any(isinstance(n, Now) for n in walk(expr))


def is_deterministic(expr: Expr) -> bool:
    """False when the value depends on the moment it is evaluated (``now``): PostgreSQL
    requires IMMUTABLE in an index predicate, and a CHECK that holds today may fail on restore;
    SQLite refuses non-deterministic functions in a partial index."""
    return not uses_now(expr)


# --- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: Literal["word", "qword", "int", "dec", "str", "op", "bad", "end"]
    text: str
    offset: int

    def shown(self) -> str:
        if self.kind == "end":
            return "the end"
        text = self.text if len(self.text) <= 20 else self.text[:17] + "..."
        return repr(text)


_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_JUNK = re.compile(r"[0-9A-Za-z_.]{1,20}")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = ("<>", "!=", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ",")
_SPACE = " \t\r\n"


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
            continue
        if text.startswith(("--", "/*"), i):
            raise ExprError(i, "comments are not allowed in an expression")
        if m := _NUMBER.match(text, i):
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] in "_."):
                bad = _JUNK.match(text, i)
                shown = bad.group() if bad else text[i : end + 1]
                raise ExprError(i, f"malformed number {shown!r} (expected digits[.digits])")
            out.append(_Token("dec" if "." in m.group() else "int", m.group(), i))
            i = end
        elif m := _WORD.match(text, i):
            out.append(_Token("word", m.group(), i))
            i = m.end()
        elif ch == "'":
            j, parts = i + 1, []
            while True:
                k = text.find("'", j)
                if k < 0:
                    raise ExprError(i, "unterminated string literal (expected a closing ')")
                parts.append(text[j:k])
                if text.startswith("''", k):
                    parts.append("'")
                    j = k + 2
                else:
                    break
            value = "".join(parts)
            if "\x00" in value:
                raise ExprError(i, "a string literal cannot hold a NUL character")
            out.append(_Token("str", value, i))
            i = k + 1
        elif ch == '"':
            k = text.find('"', i + 1)
            if k < 0:
                raise ExprError(i, 'unterminated quoted column name (expected a closing ")')
            out.append(_Token("qword", text[i + 1 : k], i))
            i = k + 1
        else:
            for op in _OPS:
                if text.startswith(op, i):
                    out.append(_Token("op", op, i))
                    i += len(op)
                    break
            else:
                # Left to the parser, which knows what it expected here.
                out.append(_Token("bad", ch, i))
                i += 1
    out.append(_Token("end", "", n))
    return out


# --- the parser --------------------------------------------------------------------------

_PRIMARY = "a column, a literal, a function call or '('"


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.parens = 0
        # The depth of every node built, by id: a tree deeper than MAX_DEPTH is refused so
        # that nothing that walks it recursively can overflow the stack.
        self.depths: dict[int, int] = {}

    # helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def at_end(self) -> bool:
        return self.tokens[self.pos].kind == "end"

    def advance(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def is_kw(self, *words: str, ahead: int = 0) -> bool:
        tok = self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]
        return tok.kind == "word" and tok.text.lower() in words

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def expect_op(self, op: str, what: str) -> _Token:
        if not self.is_op(op):
            raise ExprError(self.tok.offset, f"expected {what}, found {self.tok.shown()}")
        return self.advance()

    def expect_kw(self, word: str, what: str) -> None:
        if not self.is_kw(word):
            raise ExprError(self.tok.offset, f"expected {what}, found {self.tok.shown()}")
        self.advance()

    def node(self, expr: Expr) -> Expr:
        depth = 1 + max((self.depths.get(id(c), 1) for c in children(expr)), default=0)
        if depth > MAX_DEPTH:
            raise ExprError(
                expr.offset, f"expression nested too deeply (more than {MAX_DEPTH} levels)"
            )
        self.depths[id(expr)] = depth
        return expr

    # grammar
    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise ExprError(self.tok.offset, f"expected an expression ({_PRIMARY}), found the end")
        expr = self.or_()
        if not self.at_end():
            if self.is_op(")"):
                raise ExprError(self.tok.offset, "unbalanced ')' (no '(' to close)")
            raise ExprError(
                self.tok.offset,
                "expected an operator, AND, OR or the end of the expression, "
                f"found {self.tok.shown()}",
            )
        return expr

    def or_(self) -> Expr:
        left = self.and_()
        while self.is_kw("or"):
            self.advance()
            left = self.node(BoolOp("OR", left, self.and_(), offset=left.offset))
        return left

    def and_(self) -> Expr:
        left = self.not_()
        while self.is_kw("and"):
            self.advance()
            left = self.node(BoolOp("AND", left, self.not_(), offset=left.offset))
        return left

    def not_(self) -> Expr:
        if self.is_kw("not"):
            start = self.advance().offset
            self.enter(start)
            try:
                return self.node(Not(self.not_(), offset=start))
            finally:
                self.parens -= 1
        return self.predicate()

    def enter(self, offset: int) -> None:
        # Parentheses, NOT and unary minus recurse without always adding a node, so they are
        # counted on their own.
        self.parens += 1
        if self.parens > MAX_DEPTH:
            raise ExprError(offset, f"expression nested too deeply (more than {MAX_DEPTH} levels)")

    def predicate(self) -> Expr:
        left = self.sum_()
        tok = self.tok
        result: Expr
        if self.is_op(*COMPARE_OPS, "!="):
            self.advance()
            op = "<>" if tok.text == "!=" else tok.text
            result = Compare(op, left, self.sum_(), offset=left.offset)  # type: ignore[arg-type]
        elif self.is_kw("is"):
            self.advance()
            negated = self.is_kw("not")
            if negated:
                self.advance()
            self.expect_kw("null", "NULL after IS NOT" if negated else "NULL or NOT NULL after IS")
            result = IsNull(left, negated, offset=left.offset)
        elif self.is_kw("in", "between") or (
            self.is_kw("not") and self.is_kw("in", "between", ahead=1)
        ):
            negated = self.is_kw("not")
            if negated:
                self.advance()
            if self.advance().text.lower() == "in":
                result = In(left, self.in_list(), negated, offset=left.offset)
            else:
                low = self.sum_()
                self.expect_kw("and", "AND between the bounds of BETWEEN")
                result = Between(left, low, self.sum_(), negated, offset=left.offset)
        else:
            return left
        result = self.node(result)
        if self.is_op(*COMPARE_OPS, "!=") or self.is_kw("is", "in", "between"):
            raise ExprError(
                self.tok.offset,
                f"comparisons do not chain: found {self.tok.shown()} after a comparison "
                "(use parentheses, or AND)",
            )
        return result

    def in_list(self) -> tuple[LiteralNode, ...]:
        self.expect_op("(", "'(' after IN")
        items = [self.literal("in an IN list")]
        while self.is_op(","):
            self.advance()
            items.append(self.literal("in an IN list"))
        self.expect_op(")", "',' or ')' in an IN list")
        return tuple(items)

    def literal(self, where: str) -> LiteralNode:
        tok = self.tok
        sign = 1
        if self.is_op("-"):
            self.advance()
            sign = -1
            if self.tok.kind not in ("int", "dec"):
                raise ExprError(
                    self.tok.offset, f"expected a number after '-', found {self.tok.shown()}"
                )
        if self.tok.kind in ("int", "dec") or (
            self.tok.kind in ("str",) or self.is_kw("true", "false", "null")
        ):
            lit = self.primary()
            if sign < 0:
                return self.negate(lit, tok.offset)  # type: ignore[return-value]
            return lit  # type: ignore[return-value]
        raise ExprError(
            tok.offset,
            f"expected a literal (number, 'string', TRUE, FALSE or NULL) {where}, "
            f"found {tok.shown()}",
        )

    def sum_(self) -> Expr:
        left = self.product()
        while self.is_op("+", "-"):
            op = self.advance().text
            left = self.node(Arith(op, left, self.product(), offset=left.offset))  # type: ignore[arg-type]
        return left

    def product(self) -> Expr:
        left = self.unary()
        while self.is_op("*", "/"):
            op = self.advance().text
            left = self.node(Arith(op, left, self.unary(), offset=left.offset))  # type: ignore[arg-type]
        return left

    def unary(self) -> Expr:
        if self.is_op("-"):
            start = self.advance().offset
            self.enter(start)
            try:
                return self.negate(self.unary(), start)
            finally:
                self.parens -= 1
        return self.primary()

    def negate(self, operand: Expr, offset: int) -> Expr:
        if isinstance(operand, IntLit):
            return self.node(IntLit(-operand.value, offset=offset))
        if isinstance(operand, DecLit):
            return self.node(DecLit(operand.value.copy_negate(), offset=offset))
        return self.node(Neg(operand, offset=offset))

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "int":
            self.advance()
            value = int(tok.text)
            if value > MAX_INT:
                raise ExprError(tok.offset, f"integer literal out of range (at most {MAX_INT})")
            return self.node(IntLit(value, offset=tok.offset))
        if tok.kind == "dec":
            self.advance()
            if len(tok.text) - 1 > MAX_DECIMAL_DIGITS:
                raise ExprError(
                    tok.offset, f"decimal literal has more than {MAX_DECIMAL_DIGITS} digits"
                )
            return self.node(DecLit(Decimal(tok.text), offset=tok.offset))
        if tok.kind == "str":
            self.advance()
            return self.node(StrLit(tok.text, offset=tok.offset))
        if tok.kind == "qword":
            self.advance()
            return self.node(self.column(tok.text, tok.offset))
        if self.is_op("("):
            self.advance()
            self.enter(tok.offset)
            try:
                inner = self.or_()
            finally:
                self.parens -= 1
            self.expect_op(")", f"')' to close the '(' at offset {tok.offset}, or an operator")
            return inner
        if tok.kind == "word":
            word = tok.text.lower()
            if word in ("true", "false"):
                self.advance()
                return self.node(BoolLit(word == "true", offset=tok.offset))
            if word == "null":
                self.advance()
                return self.node(NullLit(offset=tok.offset))
            if word == "now":
                self.advance()
                if self.is_op("("):
                    self.advance()
                    self.expect_op(")", "')': now() takes no arguments")
                return self.node(Now(offset=tok.offset))
            after = self.tokens[self.pos + 1]
            if word not in KEYWORDS and after.kind == "op" and after.text == "(":
                return self.call(tok)
            if word not in KEYWORDS:
                self.advance()
                return self.node(self.column(tok.text, tok.offset))
        raise ExprError(tok.offset, f"expected {_PRIMARY}, found {tok.shown()}")

    def call(self, tok: _Token) -> Expr:
        name = tok.text.lower()
        if name not in FUNCTIONS:
            raise ExprError(
                tok.offset,
                f"unknown function {tok.text!r} (expected one of {', '.join(FUNCTIONS)})",
            )
        self.advance()
        self.advance()  # "("
        self.enter(tok.offset)
        try:
            args = [] if self.is_op(")") else [self.or_()]
            while self.is_op(","):
                self.advance()
                args.append(self.or_())
        finally:
            self.parens -= 1
        self.expect_op(")", f"',' or ')' in the arguments of {name}()")
        if name == "coalesce" and len(args) < 2:
            raise ExprError(tok.offset, "coalesce() takes at least two arguments")
        if name != "coalesce" and len(args) != 1:
            raise ExprError(tok.offset, f"{name}() takes exactly one argument, got {len(args)}")
        return self.node(Func(name, tuple(args), offset=tok.offset))  # type: ignore[arg-type]

    def column(self, name: str, offset: int) -> Column:
        if not IDENTIFIER.match(name):
            hint = " (column names are lower case)" if IDENTIFIER.match(name.lower()) else ""
            raise ExprError(
                offset,
                f"invalid column name {name!r}{hint} (expected ^{IDENTIFIER.pattern[:-2]}$)",
            )
        return Column(name, offset=offset)


def parse(text: str) -> Expr:
    """The AST of ``text``; raises ``ExprError(offset, message)`` for anything outside the
    grammar, anything longer than MAX_LENGTH characters or nested deeper than MAX_DEPTH."""
    if not isinstance(text, str):
        raise ExprError(0, f"expected an expression as a string, found {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(MAX_LENGTH, f"expression longer than {MAX_LENGTH} characters")
    return _Parser(text).parse()


# --- types -------------------------------------------------------------------------------
# "any" is a column whose type the caller did not give; "null" the NULL literal.
_T: TypeAlias = Literal["boolean", "number", "text", "timestamp", "other", "any", "null"]


def type_class(sql_type: str) -> TypeClass:
    """The class of a spec column type (``integer``, ``decimal(12,4)``, ``varchar(20)``...)."""
    base = sql_type.split("(", 1)[0].strip().lower()
    if base in ("smallint", "integer", "bigint", "decimal", "float"):
        return "number"
    if base in ("text", "varchar"):
        return "text"
    if base == "boolean":
        return "boolean"
    if base in ("timestamptz", "timestamp"):
        return "timestamp"
    return "other"


def _fits(a: _T, b: _T) -> bool:
    return a == b or "any" in (a, b) or "null" in (a, b)


class _Types:
    def __init__(self, cols: Mapping[str, TypeClass] | None) -> None:
        self.cols = cols
        self.types: dict[int, _T] = {}

    def of(self, expr: Expr) -> _T:
        t = self.types.get(id(expr))
        if t is None:
            t = self.types[id(expr)] = self._infer(expr)
        return t

    def operand(self, expr: Expr, allowed: tuple[_T, ...], role: str) -> _T:
        if isinstance(expr, NullLit):
            raise ExprError(
                expr.offset,
                f"NULL as {role} is always unknown (use IS NULL / IS NOT NULL, or coalesce())",
            )
        t = self.of(expr)
        if t != "any" and t not in allowed:
            raise ExprError(
                expr.offset,
                f"expected {' or '.join(allowed)} as {role}, found a {t} ({canonical(expr)})",
            )
        return t

    def same(self, exprs: tuple[Expr, ...], role: str) -> _T:
        common: _T = "any"
        for e in exprs:
            t = self.operand(e, ("boolean", "number", "text", "timestamp"), role)
            if not _fits(common, t):
                raise ExprError(
                    e.offset,
                    f"cannot compare a {common} with a {t} ({canonical(e)}); "
                    "both sides must have the same type",
                )
            if common == "any":
                common = t
        return common

    def _infer(self, expr: Expr) -> _T:
        match expr:
            case Column(name=name):
                if self.cols is None:
                    return "any"
                if name not in self.cols:
                    known = ", ".join(sorted(self.cols)) or "none"
                    raise ExprError(
                        expr.offset, f"unknown column {name!r} (expected one of {known})"
                    )
                return self.cols[name]
            case IntLit() | DecLit():
                return "number"
            case StrLit():
                return "text"
            case BoolLit():
                return "boolean"
            case NullLit():
                return "null"
            case Now():
                return "timestamp"
            case Neg(operand=o):
                self.operand(o, ("number",), "the operand of '-'")
                return "number"
            case Arith(op=op, left=a, right=b):
                self.operand(a, ("number",), f"the left operand of '{op}'")
                self.operand(b, ("number",), f"the right operand of '{op}'")
                if op == "/" and isinstance(b, IntLit | DecLit) and b.value == 0:
                    raise ExprError(b.offset, "division by zero")
                return "number"
            case Compare(left=a, right=b):
                self.same((a, b), f"an operand of '{expr.op}'")
                return "boolean"
            case IsNull(operand=o):
                if isinstance(o, NullLit):
                    raise ExprError(o.offset, "NULL IS [NOT] NULL is a constant; test a column")
                self.of(o)
                return "boolean"
            case In(operand=o, items=items):
                self.same((o, *items), "an IN operand or item")
                return "boolean"
            case Between(operand=o, low=lo, high=hi):
                self.same((o, lo, hi), "an operand of BETWEEN")
                return "boolean"
            case Not(operand=o):
                self.operand(o, ("boolean",), "the operand of NOT")
                return "boolean"
            case BoolOp(op=op, left=a, right=b):
                self.operand(a, ("boolean",), f"an operand of {op}")
                self.operand(b, ("boolean",), f"an operand of {op}")
                return "boolean"
            case Func(name="coalesce", args=args):
                if all(isinstance(a, NullLit) for a in args):
                    raise ExprError(expr.offset, "coalesce() needs an argument that is not NULL")
                common: _T = "any"
                for arg in args:
                    t = self.of(arg)
                    if t == "other" or not _fits(common, t):
                        raise ExprError(
                            arg.offset,
                            "coalesce() arguments must have one type: "
                            f"found a {t} after a {common}",
                        )
                    if common in ("any", "null"):
                        common = t
                return common
            case Func(name="length", args=(arg,)):
                self.operand(arg, ("text",), "the argument of length()")
                return "number"
            case Func(name=name, args=(arg,)):
                self.operand(arg, ("text",), f"the argument of {name}()")
                return "text"
        raise AssertionError(f"unhandled node {expr!r}")  # pragma: no cover


def infer(expr: Expr, columns: Mapping[str, TypeClass] | None = None) -> _T:
    """The type of ``expr`` ("any" when it depends on a column of unknown type); raises
    ExprError at the first node whose operands do not fit (unknown column, text + number, a
    comparison with NULL, ...)."""
    return _Types(columns).of(expr)


def check(
    expr: Expr,
    want: TypeClass,
    columns: Mapping[str, TypeClass] | None = None,
    *,
    deterministic: bool = False,
) -> None:
    """Refuse ``expr`` where a value of class ``want`` is expected: "boolean" for a ``where``
    or a check ``expression``, the column's class for a backfill ``set``. ``deterministic``
    refuses ``now`` (an index predicate or a CHECK)."""
    t = infer(expr, columns)
    if t == "null" and want == "boolean":
        raise ExprError(expr.offset, "expected a condition, found NULL")
    if not _fits(t, want):
        what = "a condition (a comparison, IS NULL, IN, BETWEEN, AND/OR/NOT)"
        expected = what if want == "boolean" else f"a {want} value"
        raise ExprError(expr.offset, f"expected {expected}, found a {t} ({canonical(expr)})")
    if deterministic:
        for node in walk(expr):
            if isinstance(node, Now):
                raise ExprError(
                    node.offset,
                    "now is not allowed here: an index predicate or a check must not depend "
                    "on the time it is evaluated",
                )


# --- rendering ---------------------------------------------------------------------------
# Binding strength, loosest first. The same table holds for both dialects for every
# construct of the grammar (operands of comparisons are sums or tighter, comparisons never
# chain), so minimal parentheses mean the same on both.
_OR, _AND, _NOT, _PRED, _SUM, _PRODUCT, _UNARY, _ATOM = range(1, 9)


def _prec(expr: Expr) -> int:
    match expr:
        case BoolOp(op="OR"):
            return _OR
        case BoolOp():
            return _AND
        case Not():
            return _NOT
        case Compare() | IsNull() | In() | Between():
            return _PRED
        case Arith(op="+" | "-"):
            return _SUM
        case Arith():
            return _PRODUCT
        case Neg():
            return _UNARY
        case IntLit(value=v) if v < 0:
            return _UNARY
        case DecLit(value=v) if v.is_signed():
            return _UNARY
    return _ATOM


class _Renderer:
    def __init__(
        self, dialect: Dialect | None, types: _Types | None, quote: Callable[[str], str]
    ) -> None:
        self.dialect = dialect
        self.types = types
        self.quote = quote

    def sub(self, expr: Expr, at_least: int) -> str:
        text = self.render(expr)
        return f"({text})" if _prec(expr) < at_least else text

    def is_text(self, expr: Expr) -> bool:
        return self.types is not None and self.types.of(expr) == "text"

    def collated(self, expr: Expr, at_least: int) -> str:
        # PostgreSQL orders and folds case by the column's collation (the database's locale
        # unless declared); "C" orders by code point and folds ASCII only, as SQLite does.
        text = self.sub(expr, at_least)
        if self.dialect == "postgresql" and self.is_text(expr):
            text = f'{self.sub(expr, _ATOM)} COLLATE "C"'
        return text

    def render(self, expr: Expr) -> str:
        pg = self.dialect == "postgresql"
        match expr:
            case Column(name=name):
                return self.quote(name)
            case IntLit(value=v):
                return str(v)
            case DecLit(value=v):
                return format(v, "f")
            case StrLit(value=v):
                return "'" + v.replace("'", "''") + "'"
            case BoolLit(value=v):
                if self.dialect is None:
                    return "TRUE" if v else "FALSE"
                return ("true" if v else "false") if pg else ("1" if v else "0")
            case NullLit():
                return "NULL"
            case Now():
                return "now()" if self.dialect is None else "CURRENT_TIMESTAMP"
            case Neg(operand=o):
                # "-(-x)": two minus signs side by side would start an SQL comment
                inner = self.sub(o, _ATOM if _prec(o) == _UNARY else _UNARY)
                return f"-{inner}"
            case Arith(op=op, left=a, right=b):
                p = _prec(expr)
                left, right = self.sub(a, p), self.sub(b, p + 1)
                if op == "/" and pg and not (isinstance(b, IntLit | DecLit) and b.value != 0):
                    # SQLite answers NULL to a division by zero, PostgreSQL raises.
                    right = f"NULLIF({self.render(b)}, 0)"
                return f"{left} {op} {right}"
            case Compare(op=op, left=a, right=b):
                if op in ("=", "<>") or not (self.is_text(a) or self.is_text(b)):
                    return f"{self.sub(a, _SUM)} {op} {self.sub(b, _SUM)}"
                # An explicit collation on one side decides the comparison.
                if self.is_text(a):
                    return f"{self.collated(a, _SUM)} {op} {self.sub(b, _SUM)}"
                return f"{self.sub(a, _SUM)} {op} {self.collated(b, _SUM)}"
            case IsNull(operand=o, negated=neg):
                return f"{self.sub(o, _SUM)} IS {'NOT ' if neg else ''}NULL"
            case In(operand=o, items=items, negated=neg):
                listed = ", ".join(self.render(i) for i in items)
                return f"{self.sub(o, _SUM)} {'NOT ' if neg else ''}IN ({listed})"
            case Between(operand=o, low=lo, high=hi, negated=neg):
                text_range = self.is_text(o) or self.is_text(lo) or self.is_text(hi)
                first = self.collated(o, _SUM) if text_range else self.sub(o, _SUM)
                if text_range and not self.is_text(o) and pg:
                    # o is a column of unknown type next to text bounds: collate the bounds
                    low, high = self.collated(lo, _SUM), self.collated(hi, _SUM)
                else:
                    low, high = self.sub(lo, _SUM), self.sub(hi, _SUM)
                word = "NOT BETWEEN" if neg else "BETWEEN"
                return f"{first} {word} {low} AND {high}"
            case Not(operand=o):
                return f"NOT {self.sub(o, _NOT)}"
            case BoolOp(op=op, left=a, right=b):
                p = _prec(expr)
                return f"{self.sub(a, p)} {op} {self.sub(b, p + 1)}"
            case Func(name=name, args=args):
                if name in ("lower", "upper") and pg:
                    return f'{name}({self.sub(args[0], _ATOM)} COLLATE "C")'
                if name == "length" and pg:
                    return f"char_length({self.render(args[0])})"
                return f"{name}({', '.join(self.render(a) for a in args)})"
        raise AssertionError(f"unhandled node {expr!r}")  # pragma: no cover


def _canonical_name(name: str) -> str:
    return f'"{name}"' if name in KEYWORDS or name == "now" else name


def canonical(expr: Expr) -> str:
    """The stable text of ``expr``: keywords upper case, one space around operators, the
    fewest parentheses that keep the tree; ``parse(canonical(e)) == e``."""
    return _Renderer(None, None, _canonical_name).render(expr)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def to_sql(expr: Expr, dialect: Dialect, columns: Mapping[str, TypeClass] | None = None) -> str:
    """The SQL of ``expr`` for ``dialect`` ("postgresql" or "sqlite"). Give ``columns``
    (name -> type class) so that text comparisons are collated on PostgreSQL; the expression
    is type-checked against them on the way."""
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"unknown dialect {dialect!r}")
    types = _Types(columns)
    types.of(expr)
    return _Renderer(dialect, types, _quote_ident).render(expr)


@functools.cache
def _clause_class() -> type[ColumnElement[Any]]:
    """The SQLAlchemy clause class of an expression, defined on first use: importing
    SQLAlchemy costs a tenth of a second that `generate` has no use for."""
    from sqlalchemy.ext.compiler import compiles
    from sqlalchemy.sql.compiler import SQLCompiler
    from sqlalchemy.sql.elements import ColumnElement
    from sqlalchemy.sql.type_api import TypeEngine

    class _Clause(ColumnElement[Any]):
        """An expression as a SQLAlchemy clause, compiled by ``to_sql`` for the statement's
        dialect (so a backfill can run it through the application's engine)."""

        inherit_cache = False  # the tree is not part of SQLAlchemy's cache key

        def __init__(
            self, expr: Expr, columns: Mapping[str, TypeClass] | None, type_: TypeEngine[Any]
        ) -> None:
            self.expr = expr
            self.column_types = columns
            self.type = type_

    @compiles(_Clause)
    def _compile_clause(element: _Clause, compiler: SQLCompiler, **kw: Any) -> str:
        name = compiler.dialect.name
        if name not in ("postgresql", "sqlite"):
            raise ValueError(f"unknown dialect {name!r}")
        return to_sql(element.expr, name, element.column_types)  # type: ignore[arg-type]

    return _Clause


def to_sqlalchemy(expr: Expr, columns: Mapping[str, TypeClass] | None = None) -> ColumnElement[Any]:
    """``expr`` as a SQLAlchemy clause for ``select(...).where(...)`` or an UPDATE's values,
    rendered by ``to_sql`` for whichever dialect the statement is compiled for."""
    from sqlalchemy.sql import sqltypes

    t = infer(expr, columns)
    type_ = sqltypes.Boolean() if t == "boolean" else sqltypes.NullType()
    return _clause_class()(expr, columns, type_)  # type: ignore[call-arg]
