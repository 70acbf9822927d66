"""The rule language's values: their canonical Python form, and equality and order as rules
mean them (close floats are equal, lists compare elementwise)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from surgery.errors import RuleError
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.expr_text import value_text


def canonical(value: Any) -> Any:
    """Canonical Python form: 0-d arrays -> scalars, lists -> tuples, bytes -> str."""
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return tuple(canonical(v) for v in value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def is_seq(value: Any) -> bool:
    """Whether a value is a list (a tuple or an array; a TensorRef is a tensor, not a list)."""
    return isinstance(value, tuple | np.ndarray) and not isinstance(value, TensorRef)


def compare_values(expr: ast.Compare, left: Any, right: Any) -> bool:
    """`left op right` in the rule language: close floats are equal, lists compare elementwise."""
    op = expr.op
    if op in ("in", "not in"):
        if not is_seq(right) and not isinstance(right, str):
            raise RuleError(f"{expr.loc}: the right side of `{op}` must be a list or string")
        if isinstance(right, str):
            found = isinstance(left, str) and left in right
        else:
            found = any(values_equal(left, item) for item in right)
        return found if op == "in" else not found
    if op == "==":
        return values_equal(left, right)
    if op == "!=":
        return not values_equal(left, right)
    try:
        if is_seq(left) or is_seq(right):
            a, b = np.asarray(left), np.asarray(right)
            if a.shape != b.shape and a.ndim and b.ndim:
                return False
            result = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
            return bool(np.all(result))
        return bool({"<": left < right, "<=": left <= right, ">": left > right,
                     ">=": left >= right}[op])  # fmt: skip
    except TypeError:
        raise RuleError(
            f"{expr.loc}: cannot compare {value_text(left)} {op} {value_text(right)}"
        ) from None


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def fast_compare(op: str, right: Any) -> dict[type, Callable[[Any, Any], bool]]:
    """Types of the left side for which `left op right` needs no conversion -> the comparison
    (floats are never compared for equality here: the language calls close floats equal)."""
    if op in _ORDER and type(right) in (int, float):
        return {int: _ORDER[op], float: _ORDER[op]}
    if op in _ORDER and type(right) is str:
        return {str: _ORDER[op]}
    if op in ("==", "!=") and type(right) in (int, str):
        return {type(right): operator.eq if op == "==" else operator.ne}
    return {}


def flat(items: Any) -> list[Any]:
    """The elements of a list, an array's flattened in canonical form."""
    if isinstance(items, np.ndarray):
        return [canonical(v) for v in items.ravel()]
    return list(items)


def values_equal(left: Any, right: Any) -> bool:
    """`left == right` in the rule language: arrays and lists elementwise, close floats equal."""
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        a, b = np.asarray(left), np.asarray(right)
        return a.shape == b.shape and bool(np.all(a == b))
    if is_seq(left) and is_seq(right):
        if len(left) != len(right):
            return False
        return all(values_equal(x, y) for x, y in zip(left, right, strict=True))
    if isinstance(left, float) or isinstance(right, float):
        if isinstance(left, int | float) and isinstance(right, int | float):
            return math.isclose(left, right, rel_tol=1e-6, abs_tol=1e-12)
    return bool(left == right)
