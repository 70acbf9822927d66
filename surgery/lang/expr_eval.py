"""Safe evaluation of rule expressions (`where` conditions, field values) over matched tensors.

The evaluator walks the `rule_ast` expression tree itself: no `eval`, no attribute access on
Python objects, only the properties and whitelisted functions listed here. A value that cannot be
known (a shape nobody recorded, a non-Const `.value`) raises `EvalFailure` with a reason and the
`Loc` of the sub-expression, which the matcher turns into a failed predicate for `explain`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from surgery.errors import RuleError
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.expr_text import expr_text, value_text
from surgery.lang.expr_values import (
    canonical,
    compare_values,
    fast_compare,
    flat,
    is_seq,
)
from surgery.lang.name_patterns import glob_match
from surgery.lang.scope_instances import Binding, ScopeInstance, select_scope_tensors
from surgery.lang.tensor_props import const_value, namespace_of, tensor_dtype, tensor_shape

TENSOR_PROPS = ("op", "name", "port", "value", "shape", "dtype", "rank", "scope", "consumers")
SCOPE_PROPS = ("name", "nodes", "enters", "leaves")
FUNCTIONS = ast.FUNCTIONS


class EvalFailure(Exception):
    """A predicate that cannot hold (false or unknowable); carries the reason and the Loc.

    The reason may be given as a function: it is then worked out only when read (the engine
    tries many predicates that fail and reads none of the reasons).
    """

    def __init__(self, reason: str | Callable[[], str], loc: ast.Loc):
        super().__init__()
        self._reason = reason
        self.loc = loc

    @property
    def reason(self) -> str:
        """Why the predicate does not hold."""
        if callable(self._reason):
            self._reason = self._reason()
        return self._reason

    def __str__(self) -> str:
        return f"{self.loc}: {self.reason}"


def _onnx_default(graph: Any, op: str, name: str) -> Any:
    """The default of attribute `name` of `op` when the graph is an ONNX model, else None."""
    from surgery.ops.opdefs import onnx_attribute_default, opset_of

    ops = opset_of(graph, use_tf=False)
    return onnx_attribute_default(op, name, ops.opset) if ops.format == "onnx" else None


_DISPATCH: dict[type, Callable[..., Any]] = {}
# Functions of surgery/lang/expr_functions.py: math, `if`, graph inputs and values inside scopes.
_GRAPH_FUNCTIONS = frozenset(
    ("sqrt", "log2", "round", "floor", "ceil", "if", "input", "shape", "operand", "limit",
     "opset", "reads")
)  # expression type -> Evaluator method


class Evaluator:
    """Evaluate expressions against a graph and the current bindings (var -> tensor/list/scope)."""

    def __init__(self, graph: Any, bindings: Mapping[str, Binding]):
        self.graph = graph
        self.bindings = bindings

    # ---------------------------------------------------------------- entry points
    def value(self, expr: Any) -> Any:
        """The value of `expr` (raises EvalFailure when it cannot be known)."""
        kind = type(expr)
        cls = type(self)
        method = _DISPATCH.get(kind) if cls is Evaluator else None  # subclasses may override
        if method is None:
            method = getattr(cls, "_" + kind.__name__.lower(), None)
            if method is None:
                raise RuleError(f"cannot evaluate {kind.__name__} here")
            if cls is Evaluator:
                _DISPATCH[kind] = method
        return method(self, expr)

    def check(self, expr: Any) -> None:
        """Raise EvalFailure naming the first sub-condition that does not hold."""
        if isinstance(expr, ast.BoolOp) and expr.op == "and":
            for operand in expr.operands:
                self.check(operand)
            return
        if isinstance(expr, ast.BoolOp) and expr.op == "or":
            first: EvalFailure | None = None
            for operand in expr.operands:
                try:
                    self.check(operand)
                    return
                except EvalFailure as exc:
                    first = first or exc
            if first is not None:
                raise EvalFailure(
                    lambda: f"none of `{expr_text(expr)}` holds ({first.reason})", expr.loc
                )
            return
        if not self._truth(self.value(expr), expr.loc):
            raise EvalFailure(lambda: f"`{expr_text(expr)}` is false{self._why(expr)}", expr.loc)

    def _why(self, expr: Any) -> str:
        """The values of the refs in a false comparison, e.g. ` (y.alpha = 1.5)`."""
        parts: list[str] = []
        for side in _refs(expr):
            try:
                parts.append(f"{expr_text(side)} = {value_text(self.value(side))}")
            except EvalFailure:
                continue
        return f" ({', '.join(dict.fromkeys(parts))})" if parts else ""

    @staticmethod
    def _truth(value: Any, loc: ast.Loc) -> bool:
        if isinstance(value, np.ndarray):
            return bool(value.size) and bool(np.all(value))
        if isinstance(value, TensorRef | ScopeInstance):
            return True
        return bool(value)

    # ---------------------------------------------------------------- nodes
    def _literal(self, expr: ast.Literal) -> Any:
        if isinstance(expr.value, tuple):
            return tuple(canonical(self.value(v)) for v in expr.value)
        return expr.value

    def _bound(self, var: str, loc: ast.Loc) -> Binding:
        try:
            return self.bindings[var]
        except KeyError:
            raise RuleError(f"{loc}: unknown variable {var!r}") from None

    def _ref(self, expr: ast.Ref) -> Any:
        bound = self._bound(expr.var, expr.loc)
        if expr.port is not None:
            if not isinstance(bound, TensorRef):
                raise RuleError(f"{expr.loc}: {expr.var}:{expr.port} needs a tensor variable")
            bound = TensorRef(bound.node, expr.port)
        if expr.attr is not None:
            return self._attribute(bound, expr.attr, expr)
        if expr.prop is None:
            return bound
        if isinstance(bound, ScopeInstance):
            return self._scope_prop(bound, expr)
        if isinstance(bound, tuple) and not isinstance(bound, TensorRef):
            if expr.prop == "len":
                return len(bound)
            raise RuleError(f"{expr.loc}: {expr.var} is a list of tensors; use {expr.var}[i]")
        return self.tensor_prop(bound, expr.prop, expr)

    def _scopetensor(self, expr: ast.ScopeTensor) -> Any:
        """`r.in[0]` (a tensor), `r.in[*]` (a list), with an optional property of each."""
        scope = self._bound(expr.scope, expr.loc)
        if not isinstance(scope, ScopeInstance):
            raise RuleError(f"{expr.loc}: {expr.scope!r} is not a scope variable")
        try:
            refs = select_scope_tensors(scope, expr)
        except RuleError as exc:
            raise EvalFailure(str(exc), expr.loc) from None
        if expr.attr is not None:
            values = [self._attribute(t, expr.attr, expr) for t in refs]
        elif expr.prop is not None:
            values = [self.tensor_prop(t, expr.prop, expr) for t in refs]
        else:
            values = refs
        return tuple(values) if expr.every else values[0]

    def _scope_prop(self, scope: ScopeInstance, expr: ast.Ref) -> Any:
        prop = expr.prop
        if prop == "name":
            return scope.namespace
        if prop in ("nodes", "enters", "leaves"):
            return len(getattr(scope, prop))
        raise RuleError(
            f"{expr.loc}: a scope has no property {prop!r} (known: {', '.join(SCOPE_PROPS)})"
        )

    def tensor_prop(self, ref: TensorRef, prop: str, expr: Any) -> Any:
        """One property of a tensor (or, failing the known names, its node's attribute)."""
        loc = expr.loc
        node = self.graph.get(ref[0])
        if node is None:
            raise EvalFailure(f"node {ref.node!r} no longer exists", loc)
        if prop == "op":
            return node.op
        if prop == "name":
            return node.name
        if prop == "port":
            return ref.port
        if prop == "scope":
            return namespace_of(node.name)
        if prop == "consumers":
            return self.graph.consumer_count(ref)
        if prop == "value":
            value = const_value(self.graph, ref)
            if value is None:
                raise EvalFailure(f"{ref} is not a Const (op {node.op}): value unknown", loc)
            return canonical(value)
        if prop in ("shape", "rank"):
            shape = tensor_shape(self.graph, ref)
            if shape is None:
                raise EvalFailure(f"shape unknown for {ref}", loc)
            return tuple(shape) if prop == "shape" else len(shape)
        if prop == "dtype":
            dtype = tensor_dtype(self.graph, ref)
            if dtype is None:
                raise EvalFailure(f"dtype unknown for {ref}", loc)
            return dtype
        return self._attribute(ref, prop, expr)

    def _attribute(self, ref: Any, name: str, expr: Any) -> Any:
        if not isinstance(ref, TensorRef):
            raise RuleError(f"{expr.loc}: .{name} needs a tensor variable")
        node = self.graph.get(ref.node)
        if node is None:
            raise EvalFailure(f"node {ref.node!r} no longer exists", expr.loc)
        attrs = node.attr
        if name not in attrs:
            default = _onnx_default(self.graph, node.op, name)
            if default is None:
                raise EvalFailure(f"{node.name} ({node.op}) has no attribute {name!r}", expr.loc)
            return canonical(tuple(default) if isinstance(default, list) else default)
        return canonical(_attr_value()(attrs[name]))

    def _index(self, expr: ast.Index) -> Any:
        base = self.value(expr.base)
        index = self.value(expr.index)
        if not isinstance(index, int) or isinstance(index, bool):
            raise RuleError(f"{expr.loc}: index must be an integer, got {value_text(index)}")
        if isinstance(base, ScopeInstance) or not is_seq(base) and not isinstance(base, str):
            raise RuleError(f"{expr.loc}: {expr_text(expr.base)} cannot be indexed")
        try:
            return canonical(base[index])
        except IndexError:
            raise EvalFailure(
                f"index {index} out of range for {expr_text(expr.base)} (length {len(base)})",
                expr.loc,
            ) from None

    def _binop(self, expr: ast.BinOp) -> Any:
        left, right = self.value(expr.left), self.value(expr.right)
        if isinstance(left, str) and isinstance(right, str) and expr.op == "+":
            return left + right
        for side in (left, right):
            if isinstance(side, str | TensorRef | ScopeInstance | bool) or side is None:
                raise RuleError(f"{expr.loc}: `{expr_text(expr)}` needs numbers")
        array = is_seq(left) or is_seq(right)
        a = np.asarray(left) if array else left
        b = np.asarray(right) if array else right
        try:
            if expr.op == "+":
                out = a + b
            elif expr.op == "-":
                out = a - b
            elif expr.op == "*":
                out = a * b
            elif expr.op == "/":
                out = a / b
            elif expr.op == "//":
                out = a // b
            else:
                raise RuleError(f"{expr.loc}: unknown operator {expr.op!r}")
        except ZeroDivisionError:
            raise EvalFailure(f"division by zero in `{expr_text(expr)}`", expr.loc) from None
        except ValueError as exc:
            raise EvalFailure(f"`{expr_text(expr)}`: {exc}", expr.loc) from None
        if isinstance(out, np.ndarray) and out.ndim == 1 and not isinstance(left, np.ndarray):
            return tuple(canonical(v) for v in out)
        return canonical(out)

    def _compare(self, expr: ast.Compare) -> bool:
        return compare_values(expr, self.value(expr.left), self.value(expr.right))

    def _boolop(self, expr: ast.BoolOp) -> bool:
        try:
            self.check(expr)
            return True
        except EvalFailure:
            return False

    def _not(self, expr: ast.Not) -> bool:
        return not self._truth(self.value(expr.operand), expr.loc)

    def _call(self, expr: ast.Call) -> Any:
        func = expr.func
        if func in _GRAPH_FUNCTIONS:
            from surgery.lang.expr_functions import call

            return call(self, expr)
        args = [self.value(a) for a in expr.args]
        try:
            if func == "len":
                (arg,) = args
                if isinstance(arg, ScopeInstance):
                    return len(arg.nodes)
                return len(arg)
            if func == "abs":
                (arg,) = args
                return canonical(np.abs(arg)) if is_seq(arg) else abs(arg)
            if func in ("min", "max"):
                items = args[0] if len(args) == 1 else args
                return canonical((min if func == "min" else max)(flat(items)))
            if func in ("int", "float"):  # a one-element list is its element (`axis = [3]`)
                (arg,) = args
                if is_seq(arg) and len(arg) == 1:
                    arg = canonical(arg[0])
                return int(arg) if func == "int" else float(arg)
            if func == "prod":
                (arg,) = args
                return math.prod(flat(arg))
            if func == "matches":
                name, pattern = args
                if isinstance(name, TensorRef):
                    name = name.node
                try:
                    return glob_match(str(pattern), str(name))
                except RuleError as exc:  # a glob RE2 cannot read
                    raise RuleError(f"{expr.loc}: matches(): {exc}") from None
        except (TypeError, ValueError) as exc:
            raise RuleError(f"{expr.loc}: {func}(): {exc}") from None
        raise RuleError(f"{expr.loc}: unknown function {func!r} (known: {', '.join(FUNCTIONS)})")


def compile_check(expr: Any) -> Callable[[Evaluator], None]:
    """`Evaluator.check` of `expr` as a function of an evaluator, made once per expression: the
    and-chains and the comparisons of a property with a literal skip the generic walk."""
    if isinstance(expr, ast.BoolOp) and expr.op == "and":
        parts = [compile_check(o) for o in expr.operands]

        def check_all(ev: Evaluator) -> None:
            for part in parts:
                part(ev)

        return check_all
    if (
        isinstance(expr, ast.Compare) and isinstance(expr.left, ast.Ref)
        and isinstance(expr.right, ast.Literal) and not isinstance(expr.right.value, tuple)
    ):  # fmt: skip
        left_expr, right, op = expr.left, expr.right.value, expr.op
        fast = fast_compare(op, right)

        def check_compare(ev: Evaluator) -> None:
            left = ev._ref(left_expr)
            compare = fast.get(type(left))
            if compare is not None:
                ok = compare(left, right)
            else:
                ok = compare_values(expr, left, right)
            if not ok:
                raise EvalFailure(lambda: f"`{expr_text(expr)}` is false{ev._why(expr)}",
                                  expr.loc)  # fmt: skip

        return check_compare
    return lambda ev: ev.check(expr)


@functools.cache
def _attr_value() -> Callable[[Any], Any]:
    """`surgery.ir.attrs.attr_value`, imported on first use."""
    from surgery.ir.attrs import attr_value

    return attr_value


def _refs(expr: Any) -> list[Any]:
    """Ref sub-expressions of a comparison, for explaining why it is false."""
    if isinstance(expr, ast.Ref | ast.ScopeTensor) and (expr.prop or expr.attr):
        return [expr]
    if isinstance(expr, ast.Compare | ast.BinOp):
        return _refs(expr.left) + _refs(expr.right)
    if isinstance(expr, ast.Call):
        return [r for a in expr.args for r in _refs(a)] + ([expr] if expr.func == "len" else [])
    if isinstance(expr, ast.Index):
        return [expr]
    if isinstance(expr, ast.Not):
        return _refs(expr.operand)
    return []
