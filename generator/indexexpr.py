"""A partial index's predicate as PostgreSQL reads it back (``pg_get_expr`` of ``indpred``).

The validation's catalogue check compares an index's predicate with the database's text
(templates/validation/postgresql_table.sql.j2, without quotes and parentheses). PostgreSQL
deparses the predicate with its own casts (``'x'::text``, ``status::text`` for a varchar,
``0::numeric`` for a decimal), so the tool predicts that text from the tree. It can do so for
the shapes partial indexes are made of, which are the shapes accepted in an index's ``where``:

- ``AND``, ``OR`` and ``NOT`` of the conditions below;
- ``<column> IS [NOT] NULL``;
- a boolean column by itself;
- ``<column> <op> <literal>`` (either side), ``<column> <op> <column>`` of the same type;
- ``<column> BETWEEN <literal> AND <literal>``;
- ``<column> [NOT] IN (<literal>, ...)``: kept as written in the state, rendered (and so read
  back) as ``<column> = <a> OR <column> = <b> ...`` (``<>`` and ``AND`` for NOT IN), the
  same three-valued logic: PostgreSQL deparses an IN list as ``= ANY (ARRAY[...])`` with casts
  that depend on every literal's type together, which the comparisons avoid.

- ``lower(<column>)`` / ``upper(<column>)`` ``<op> <string>`` and ``length(<column>) <op>
  <integer>``, of a text or varchar column (PostgreSQL shows ``lower(c COLLATE "C")``, a
  varchar cast to text, ``char_length``).

Anything else of the grammar (``coalesce``, a function of anything but a column, arithmetic,
``now``) is refused in an index predicate with ``unsupported`` naming it (a check or backfill
still takes it).
"""

from __future__ import annotations

from generator import expr
from generator.coltypes import SqlType

_INT4 = 2**31 - 1

# How PostgreSQL names a type in a cast it shows.
_PG_CAST = {
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "decimal": "numeric",
    "float": "double precision",
    "text": "text",
    "varchar": "text",
    "boolean": "boolean",
}


def expanded(node: expr.Expr) -> expr.Expr:
    """The predicate with each ``IN`` list as the comparisons it stands for (``x IN (a, b)``:
    ``x = a OR x = b``; ``x NOT IN (a, b)``: ``x <> a AND x <> b``), as it is rendered."""
    match node:
        case expr.In(operand=o, items=items, negated=neg):
            out: expr.Expr = expr.Compare("<>" if neg else "=", o, items[0])
            for item in items[1:]:
                if neg:
                    out = expr.BoolOp("AND", out, expr.Compare("<>", o, item))
                else:
                    out = expr.BoolOp("OR", out, expr.Compare("=", o, item))
            return out
        case expr.BoolOp(op=op, left=a, right=b):
            return expr.BoolOp(op, expanded(a), expanded(b))
        case expr.Not(operand=o):
            return expr.Not(expanded(o))
    return node


def unsupported(node: expr.Expr, types: dict[str, SqlType]) -> str | None:
    """Why ``node`` cannot be an index predicate (what is accepted), or None."""
    match node:
        case expr.In(operand=expr.Column() as c, items=items):
            return next((why for i in items if (why := _operands(c, i, types))), None)
        case expr.BoolOp(left=a, right=b):
            return unsupported(a, types) or unsupported(b, types)
        case expr.Not(operand=o):
            return unsupported(o, types)
        case expr.IsNull(operand=expr.Column()):
            return None
        case expr.Column(name=name):
            return None if types[name].kind == "boolean" else _HELP
        case expr.Compare(left=a, right=b):
            return _operands(a, b, types)
        case expr.Between(operand=expr.Column() as c, low=lo, high=hi, negated=False):
            return _operands(c, lo, types) or _operands(c, hi, types)
    return _HELP


_HELP = (
    "an index predicate takes AND/OR/NOT of `<column> IS [NOT] NULL`, a boolean column, "
    "`<column> <op> <literal or column>`, `<column> BETWEEN <literal> AND <literal>`, "
    "`<column> [NOT] IN (<literal>, ...)` and `lower/upper(<text column>) <op> <string>`, "
    "`length(<text column>) <op> <integer>`"
)
_LITERALS = (expr.IntLit, expr.DecLit, expr.StrLit, expr.BoolLit)


_TEXT_FUNCS = ("lower", "upper", "length")


def _text_func(node: expr.Expr, types: dict[str, SqlType]) -> expr.Column | None:
    """The column of ``lower(c)``, ``upper(c)`` or ``length(c)`` on a text or varchar c."""
    match node:
        case expr.Func(name=name, args=(expr.Column(name=c) as column,)) if name in _TEXT_FUNCS:
            return column if types[c].kind in ("text", "varchar") else None
    return None


def _operands(a: expr.Expr, b: expr.Expr, types: dict[str, SqlType]) -> str | None:
    if isinstance(b, expr.Func) and not isinstance(a, expr.Func):
        a, b = b, a
    if isinstance(a, expr.Func):
        # lower/upper(<text column>) against a string, length(<text column>) against an integer
        if _text_func(a, types) is None:
            return _HELP
        wanted = expr.IntLit if a.name == "length" else expr.StrLit
        return None if isinstance(b, wanted) else _HELP
    if isinstance(b, expr.Column) and not isinstance(a, expr.Column):
        a, b = b, a
    if not isinstance(a, expr.Column):
        return _HELP
    kind = types[a.name].kind
    if kind not in _PG_CAST:
        return f"column {a.name!r} ({types[a.name]}) cannot be compared in an index predicate"
    if isinstance(b, expr.Column):
        return None if _PG_CAST[types[b.name].kind] == _PG_CAST[kind] else _HELP
    if isinstance(b, expr.StrLit) and kind not in ("text", "varchar"):
        return _HELP
    return None if isinstance(b, _LITERALS) else _HELP


def compared_columns(node: expr.Expr) -> frozenset[str]:
    """The columns the predicate uses otherwise than in ``IS [NOT] NULL`` (its rendering and
    PostgreSQL's text depend on their types)."""
    if isinstance(node, expr.IsNull):
        return frozenset()
    if isinstance(node, expr.Column):
        return frozenset({node.name})
    return frozenset().union(*(compared_columns(c) for c in expr.children(node)))


def pg_deparsed(node: expr.Expr, types: dict[str, SqlType]) -> str:
    """``pg_get_expr`` of the predicate (as PostgreSQL 15 writes it), before its quotes and
    parentheses are taken out."""
    match node:
        case expr.In():
            return pg_deparsed(expanded(node), types)
        case expr.BoolOp(op=op, left=a, right=b):
            return f"{pg_deparsed(a, types)} {op} {pg_deparsed(b, types)}"
        case expr.Not(operand=o):
            return f"NOT {pg_deparsed(o, types)}"
        case expr.IsNull(operand=expr.Column(name=name), negated=neg):
            return f"{name} IS {'NOT ' if neg else ''}NULL"
        case expr.Column(name=name):
            return name
        case expr.Compare(op=op, left=a, right=b) if isinstance(a, expr.Func) or isinstance(
            b, expr.Func
        ):
            func = a if isinstance(a, expr.Func) else b
            assert isinstance(func, expr.Func)
            kind = "integer" if func.name == "length" else "text"
            left, right = _side(a, kind, types), _side(b, kind, types)
            if op not in ("=", "<>") and kind == "text":
                left += " COLLATE C"
            return f"{left} {op} {right}"
        case expr.Compare(op=op, left=a, right=b):
            column = a if isinstance(a, expr.Column) else b
            assert isinstance(column, expr.Column)
            kind = types[column.name].kind
            left, right = _side(a, kind, types), _side(b, kind, types)
            if kind in ("smallint", "integer", "bigint") and isinstance(
                b if column is a else a, expr.DecLit
            ):
                if column is a:
                    left += "::numeric"
                else:
                    right += "::numeric"
            if op not in ("=", "<>") and kind in ("text", "varchar"):
                # the rendering collates a text comparison (COLLATE "C" on the column's side);
                # PostgreSQL shows the clause after the left operand, whichever side it is on
                left += " COLLATE C"
            return f"{left} {op} {right}"
        case expr.Between(operand=o, low=lo, high=hi):
            low = expr.Compare(">=", o, lo)
            high = expr.Compare("<=", o, hi)
            return f"{pg_deparsed(low, types)} AND {pg_deparsed(high, types)}"
    raise AssertionError(f"not an index predicate: {node!r}")  # unsupported() refused it


def _side(node: expr.Expr, kind: str, types: dict[str, SqlType]) -> str:
    cast = _PG_CAST[kind]
    match node:
        case expr.Func(name=name, args=(expr.Column(name=c),)):
            # PostgreSQL: a varchar argument cast to text; lower/upper of a collated column
            arg = f"{c}::text" if types[c].kind == "varchar" else c
            if name == "length":
                return f"char_length({arg})"
            return f"{name}({arg} COLLATE C)"
        case expr.Column(name=name):
            if types[name].kind == "varchar":
                return f"{name}::text"  # a varchar is compared as text
            return name
        case expr.StrLit(value=v):
            return "'" + v.replace("'", "''") + "'::text"
        case expr.BoolLit(value=v):
            return "true" if v else "false"
        case expr.IntLit(value=v):
            own = "integer" if abs(v) <= _INT4 else "bigint"
            literal = f"'{v}'::{own}" if v < 0 or own == "bigint" else str(v)
            if cast in ("numeric", "double precision"):
                return f"{literal}::{cast}"
            return literal
        case expr.DecLit(value=v):
            text = format(v, "f")
            literal = f"'{text}'::numeric" if v < 0 else text
            return f"{literal}::{cast}" if cast == "double precision" else literal
    raise AssertionError(f"not an operand of an index predicate: {node!r}")


# --- expression keys of an index (``create_index`` columns such as ``lower(email)``) --------

KEY_HELP = (
    "an index key is a column or an expression of one of the shapes `lower(<text column>)`, "
    "`upper(<text column>)`, `length(<text column>)`, `coalesce(<column>, <literal of its "
    "type>)` or `coalesce(<column>, <column of the same type>)` (integer, text, varchar or "
    "boolean columns)"
)
# coalesce(<column>, ...): the column kinds whose deparsed text the tool predicts, and the
# literal each takes.
_COALESCE_LITERALS: dict[str, type[expr.Node]] = {
    "integer": expr.IntLit,
    "text": expr.StrLit,
    "varchar": expr.StrLit,
    "boolean": expr.BoolLit,
}


def key_unsupported(node: expr.Expr, types: dict[str, SqlType]) -> str | None:
    """Why ``node`` cannot be an index key (what is accepted), or None."""
    match node:
        case expr.Func(name=name, args=(expr.Column(),)) if name in _TEXT_FUNCS:
            if _text_func(node, types) is None:
                col = node.args[0]
                assert isinstance(col, expr.Column)
                return f"{name}() takes a text or varchar column ({col.name} is {types[col.name]})"
            return None
        case expr.Func(name="coalesce", args=(expr.Column(name=c), second)):
            kind = types[c].kind
            if kind not in _COALESCE_LITERALS:
                return f"coalesce() of a {types[c]} column is not supported as a key; {KEY_HELP}"
            if isinstance(second, expr.Column):
                return None if types[second.name].kind == kind else KEY_HELP
            if isinstance(second, _COALESCE_LITERALS[kind]):
                if isinstance(second, expr.IntLit) and abs(second.value) > _INT4:
                    return f"{second.value} is out of the range of an integer"
                return None
            return KEY_HELP
    return KEY_HELP


def key_sql(node: expr.Expr) -> str:
    """The key's SQL, the same on both dialects (no collation: a query's ``lower(email)``
    is the expression the index holds)."""
    q = expr._quote_ident
    match node:
        case expr.Func(name=name, args=(expr.Column(name=c),)):
            return f"{name}({q(c)})"
        case expr.Func(name="coalesce", args=(expr.Column(name=c), second)):
            return f"coalesce({q(c)}, {key_sql(second)})"
        case expr.Column(name=c):
            return q(c)
        case expr.StrLit(value=v):
            return "'" + v.replace("'", "''") + "'"
        case expr.BoolLit(value=v):
            return "TRUE" if v else "FALSE"
        case expr.IntLit(value=v):
            return str(v)
    raise AssertionError(f"not an index key: {node!r}")  # key_unsupported() refused it


def pg_key(node: expr.Expr, types: dict[str, SqlType]) -> str:
    """``pg_get_indexdef(index, n, true)`` of the key (PostgreSQL 15), before its quotes and
    parentheses are taken out."""
    match node:
        case expr.Func(name=name, args=(expr.Column(name=c),)):
            arg = f"{c}::text" if types[c].kind == "varchar" else c
            return f"{name}({arg})"
        case expr.Func(name="coalesce", args=(expr.Column(name=c), second)):
            kind = types[c].kind
            match second:
                case expr.Column(name=other):
                    tail = other
                case expr.StrLit(value=v):
                    cast = "character varying" if kind == "varchar" else "text"
                    tail = "'" + v.replace("'", "''") + f"'::{cast}"
                case expr.BoolLit(value=v):
                    tail = "true" if v else "false"
                case expr.IntLit(value=v):
                    tail = f"'{v}'::integer" if v < 0 else str(v)
                case _:
                    raise AssertionError(f"not an index key: {node!r}")
            return f"COALESCE({c}, {tail})"
    raise AssertionError(f"not an index key: {node!r}")
