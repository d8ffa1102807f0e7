"""A small, safe condition language over a row's columns (``braid filter --where``); nothing is evaluated
as Python.

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | "(" expr ")" | compare
    compare := value OP value          OP: < <= > >= == !=
    value   := column name | number | "string" | 'string' | null | true | false

A comparison where either side is null is false, except ``== null`` / ``!= null``; an ordering between a
number and a string is false. Unknown columns and syntax errors raise ``WhereError`` with one sentence.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|-?\.\d+(?:[eE][-+]?\d+)?)
                        |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
                        |(?P<op><=|>=|==|!=|<|>|\(|\))
                        |(?P<name>[A-Za-z_][A-Za-z0-9_]*))""", re.VERBOSE)
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
        "!=": operator.ne}
_CONST = {"null": None, "none": None, "true": True, "false": False}
_WORDS = {"and", "or", "not"}


class WhereError(ValueError):
    """The condition cannot be parsed; one sentence."""


def _tokens(text: str) -> list[tuple[str, object]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise WhereError(f"cannot read the condition at {text[pos:].strip()[:20]!r}")
        pos = m.end()
        if m["num"] is not None:
            out.append(("val", float(m["num"])))
        elif m["str"] is not None:
            out.append(("val", re.sub(r"\\(.)", r"\1", m["str"][1:-1])))
        elif m["op"] is not None:
            out.append(("op", m["op"]))
        elif m["name"].lower() in _WORDS:
            out.append(("word", m["name"].lower()))
        elif m["name"].lower() in _CONST:
            out.append(("val", _CONST[m["name"].lower()]))
        else:
            out.append(("col", m["name"]))
    return out


def _compare(op: str, a, b) -> bool:
    if a is None or b is None:
        return (a is b) if op == "==" else (a is not b) if op == "!=" else False
    num_a, num_b = isinstance(a, (int, float)) and not isinstance(a, bool), \
        isinstance(b, (int, float)) and not isinstance(b, bool)
    if op in ("==", "!="):
        return _OPS[op](a, b)
    if num_a != num_b or isinstance(a, bool) or isinstance(b, bool):
        return False
    return _OPS[op](a, b)


def compile_where(text: str, columns) -> Callable[[dict], bool]:
    """A predicate over row dicts; ``columns`` are the names a condition may use."""
    columns = set(columns)
    toks = _tokens(text)
    if not toks:
        raise WhereError("the condition is empty")
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else (None, None)

    def take():
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def value():
        kind, v = take() if pos < len(toks) else (None, None)
        if kind == "val":
            return lambda row, v=v: v
        if kind == "col":
            if v not in columns:
                raise WhereError(f"unknown column {v!r}; the columns are {', '.join(sorted(columns))}")
            return lambda row, v=v: row.get(v)
        raise WhereError(f"expected a column or a value, found {v!r}" if kind else "the condition ends too early")

    def compare():
        left = value()
        kind, op = take() if pos < len(toks) else (None, None)
        if kind != "op" or op not in _OPS:
            raise WhereError(f"expected a comparison (< <= > >= == !=), found {op!r}" if kind
                             else "the condition ends too early: a comparison is missing")
        right = value()
        return lambda row: _compare(op, left(row), right(row))

    def negation():
        if peek() == ("word", "not"):
            take()
            inner = negation()
            return lambda row: not inner(row)
        if peek() == ("op", "("):
            take()
            inner = disjunction()
            if take() != ("op", ")") if pos < len(toks) else True:
                raise WhereError("a parenthesis is not closed")
            return inner
        return compare()

    def conjunction():
        parts = [negation()]
        while peek() == ("word", "and"):
            take()
            parts.append(negation())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def disjunction():
        parts = [conjunction()]
        while peek() == ("word", "or"):
            take()
            parts.append(conjunction())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    pred = disjunction()
    if pos != len(toks):
        raise WhereError(f"unexpected {toks[pos][1]!r} after a complete condition")
    return pred
