"""Conditions over projected records (`speed > 120 and zone == "north"`), compiled without `eval`.

Python's own parser reads the text; only comparisons, `and`/`or`/`not`, `in` over a literal list, field names and
literals are accepted. The tree is turned into closures over a page's columns (one list of values per field,
None where a record lacks the field), so a condition costs the function C-level `map`s, not a Python call per
record. A record lacking a field, or holding a value that does not compare with the literal (a string against a
number), does not match: a condition never fails the function.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import repeat
from typing import Any

Record = dict[str, Any]
Columns = Mapping[str, Sequence[Any]]
# Whether each of `n` records matches, given the fields' columns.
Mask = Callable[[Columns, int], list[bool]]

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ORDERING = frozenset((operator.gt, operator.ge, operator.lt, operator.le))
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
    mask: Mask

    def test(self, record: Record) -> bool:
        """Whether one projected record matches."""
        return self.mask({name: [record.get(name)] for name in self.fields}, 1)[0]


def compile_condition(text: str) -> Condition:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        msg = f"cannot parse {text!r}: {exc.msg}"
        raise ExpressionError(msg, max((exc.offset or 1) - 1, 0)) from None
    fields: set[str] = set()
    mask = _mask(tree.body, fields)
    return Condition(text, frozenset(fields), mask)


def _mask(node: ast.expr, fields: set[str]) -> Mask:
    if isinstance(node, ast.BoolOp):
        parts = [_mask(v, fields) for v in node.values]
        combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
        return lambda columns, n: reduce(lambda a, b: list(map(combine, a, b)), (p(columns, n) for p in parts))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _mask(node.operand, fields)
        return lambda columns, n: list(map(operator.not_, inner(columns, n)))
    if isinstance(node, ast.Compare):
        return _comparison(node, fields)
    msg = f"expected a comparison such as 'speed > 120', got {ast.unparse(node)!r}"
    raise ExpressionError(msg, node.col_offset)


@dataclass(frozen=True)
class _Operand:
    """A field (its column) or a literal (one value for every record)."""

    field: str | None
    value: Any = None

    def values(self, columns: Columns, n: int) -> Iterable[Any]:
        if self.field is None:
            return repeat(self.value, n)
        column = columns.get(self.field)
        return repeat(None, n) if column is None else column

    def lacks_some(self, columns: Columns) -> bool:
        """Whether a record lacks the field (None in its column, or no column)."""
        if self.field is None:
            return False
        column = columns.get(self.field)
        return column is None or None in column


def _comparison(node: ast.Compare, fields: set[str]) -> Mask:
    operands = [_operand(n, fields) for n in (node.left, *node.comparators)]
    steps = []
    for i, op in enumerate(node.ops):
        fn = _COMPARE.get(type(op))
        if fn is None:
            msg = f"operator {type(op).__name__} is not allowed"
            raise ExpressionError(msg, node.col_offset)
        steps.append((operands[i], fn, operands[i + 1]))

    def mask(columns: Columns, n: int) -> list[bool]:
        return reduce(lambda a, b: list(map(operator.and_, a, b)),
                      (_compare(left, fn, right, columns, n) for left, fn, right in steps))

    return mask


def _compare(left: _Operand, fn: Callable[[Any, Any], bool], right: _Operand, columns: Columns,
             n: int) -> list[bool]:
    # None in a field's column is a record lacking the field: no match (a literal None is compared as a value).
    # An ordering raises TypeError on it, which sends the comparison one by one; the others need a look first.
    if fn in _ORDERING or not (left.lacks_some(columns) or right.lacks_some(columns)):
        try:
            return list(map(fn, left.values(columns, n), right.values(columns, n)))
        except TypeError:
            pass  # some value does not compare with the other side: judged one by one below

    def guarded(x: Any, y: Any) -> bool:
        if (x is None and left.field is not None) or (y is None and right.field is not None):
            return False
        try:
            return bool(fn(x, y))
        except TypeError:
            return False

    return list(map(guarded, left.values(columns, n), right.values(columns, n)))


def _operand(node: ast.expr, fields: set[str]) -> _Operand:
    if isinstance(node, ast.Name):
        fields.add(node.id)
        return _Operand(node.id)
    if isinstance(node, ast.Constant) and isinstance(node.value, _LITERALS):
        return _Operand(None, node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)):
        return _Operand(None, -node.operand.value)
    if isinstance(node, (ast.List, ast.Tuple)):
        return _Operand(None, frozenset(_literal(e) for e in node.elts))
    msg = f"{ast.unparse(node)!r} is not a field name or a literal"
    raise ExpressionError(msg, node.col_offset)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, _LITERALS):
        return node.value
    msg = f"list items must be literals, got {ast.unparse(node)!r}"
    raise ExpressionError(msg, node.col_offset)
