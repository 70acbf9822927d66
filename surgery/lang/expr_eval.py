"""Safe evaluation of rule expressions (`where` conditions, field values) over matched tensors.

The evaluator walks the `rule_ast` expression tree itself: no `eval`, no attribute access on
Python objects, only the properties and whitelisted functions listed here. A value that cannot be
known (a shape nobody recorded, a non-Const `.value`) raises `EvalFailure` with a reason and the
`Loc` of the sub-expression, which the matcher turns into a failed predicate for `explain`.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import re2

from surgery.errors import RuleError
from surgery.ir.onnx_io import OUTPUTS_ATTR
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast

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


@dataclass(frozen=True)
class ScopeInstance:
    """One namespace instance a scope statement selected: its region and interface."""

    var: str
    namespace: str
    nodes: tuple[str, ...]  # graph order
    enters: tuple[TensorRef, ...]
    leaves: tuple[TensorRef, ...]
    side: tuple[tuple[str, TensorRef], ...] = ()  # (role, tensor): entering, not an input

    @functools.cached_property
    def node_set(self) -> frozenset[str]:
        """The region as a set."""
        return frozenset(self.nodes)


Binding = TensorRef | tuple[TensorRef, ...] | ScopeInstance


# --------------------------------------------------------------------------- name patterns
def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is our RuleError, not a line on stderr
    options.never_capture = True  # only whether a name matches is asked
    return options


_RE2_OPTIONS = _re2_options()
_RE2_REFUSES = (
    "scope patterns are matched by RE2, in time linear in the name's length, so backreferences "
    "and lookaround are not supported"
)


class NameRegex:
    """A rule file's name pattern (`regex "..."`, or a glob translated) compiled with RE2.

    RE2 matches in time linear in the name's length whatever the pattern: rule files are data
    that users share, and a backtracking engine takes exponential time on `(a+)+$` (or
    polynomial on the glob `*a*a*a*a*b`) against a long name. `fullmatch` is the whole name.
    """

    __slots__ = ("pattern", "_compiled")

    def __init__(self, pattern: str, glob: str | None = None) -> None:
        """Compile; RuleError (without a location) saying why RE2 refuses the pattern (naming
        `glob` when the regex is its translation)."""
        self.pattern = pattern
        try:
            self._compiled = re2.compile(pattern, _RE2_OPTIONS)
        except re2.error as exc:
            why = exc.args[0] if exc.args else exc
            if isinstance(why, bytes):
                why = why.decode("utf-8", "replace")
            if glob is not None:
                raise RuleError(f"bad name pattern {glob!r}: {why}") from None
            raise RuleError(f"bad regex {pattern!r}: {why} ({_RE2_REFUSES})") from None

    def fullmatch(self, name: str) -> bool:
        """Whether the whole of `name` matches."""
        # as UTF-8 bytes, what RE2 reads anyway: the wrapper then skips mapping byte offsets
        # back to characters (2.5 us a call instead of 4.3)
        return self._compiled.fullmatch(name.encode()) is not None


@functools.lru_cache(maxsize=512)
def name_regex(pattern: str) -> NameRegex:
    """A scope's `regex "..."` compiled with RE2; RuleError (no location) if RE2 refuses it."""
    return NameRegex(pattern)


@functools.lru_cache(maxsize=512)
def glob_regex(pattern: str) -> NameRegex:
    """Compile a name glob: `*` within a segment, `**` any depth, `?`, `[abc]`, `{a,b}`."""
    out: list[str] = []
    i, n, depth = 0, len(pattern), 0
    while i < n:
        ch = pattern[i]
        if pattern.startswith("/**", i) and (i + 3 == n or pattern[i + 3] == "/"):
            out.append("(?:/.*)?")  # `a/**` is `a` and everything under it
            i += 3
        elif pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        elif ch == "{":
            out.append("(?:")
            depth += 1
            i += 1
        elif ch == "}" and depth:
            out.append(")")
            depth -= 1
            i += 1
        elif ch == "," and depth:
            out.append("|")
            i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    if depth:
        raise RuleError(f"unbalanced '{{' in name pattern {pattern!r}")
    return NameRegex("".join(out), pattern)  # RuleError for `[]`, `[a-`


def glob_match(pattern: str, name: str) -> bool:
    """Whether `name` matches the glob `pattern` as a whole."""
    return glob_regex(pattern).fullmatch(name)


def select_scope_tensors(inst: ScopeInstance, sel: ast.ScopeTensor) -> list[TensorRef]:
    """The tensors `r.in[i]`, `r.in[*]`, `r.out("glob:1")` name; RuleError (no loc) if none."""
    pool = inst.enters if sel.direction == "in" else inst.leaves
    if sel.every:
        return list(pool)
    what = "entering" if sel.direction == "in" else "leaving"
    shown = ", ".join(map(str, pool)) or "none"
    if sel.index is not None:
        if not 0 <= sel.index < len(pool):
            raise RuleError(
                f"scope {inst.namespace!r} has {len(pool)} {what} tensors ({shown}); "
                f"{sel.scope}.{sel.direction}[{sel.index}] does not exist"
            )
        return [pool[sel.index]]
    glob = sel.glob or ""
    name_glob, port = glob, None
    head, sep, tail = glob.rpartition(":")
    if sep and tail.isdigit():
        name_glob, port = head, int(tail)
    # among a scope's few interface tensors, `*` may cross '/' (`*split:1`, `rpn_class*`)
    name_glob = name_glob.replace("**", "*").replace("*", "**")
    hits = [t for t in pool if glob_match(name_glob, t.node) and (port is None or t.port == port)]
    if len(hits) != 1:
        raise RuleError(
            f"{sel.scope}.{sel.direction}(\"{glob}\") selects {len(hits)} of the {what} tensors "
            f"of scope {inst.namespace!r} ({shown}); it must select one"
        )
    return hits


def scope_tensor_text(sel: ast.ScopeTensor) -> str:
    """`r.in[0]`, `r.in[*]`, `r.out("g*")`, with any `.prop` / `.attr.name`."""
    inner = "[*]" if sel.every else f"[{sel.index}]" if sel.index is not None else f'("{sel.glob}")'
    tail = f".attr.{sel.attr}" if sel.attr else f".{sel.prop}" if sel.prop else ""
    return f"{sel.scope}.{sel.direction}{inner}{tail}"


# --------------------------------------------------------------------------- tensor properties
def namespace_of(name: str) -> str:
    """`a/b/c` -> `a/b`; top-level names have the empty namespace."""
    return name.rpartition("/")[0]


def const_value(graph: Any, ref: TensorRef) -> np.ndarray | None:
    """The value of a Const node's output, or of an ONNX Constant's `value` (no looking through
    Identity)."""
    node = graph.get(ref.node)
    if node is not None and node.op == "Constant":
        from surgery.ir.onnx_io import constant_value

        return constant_value(node)
    if node is None or node.op != "Const" or "value" not in node.attr:
        return None
    from surgery.ir.tensor_values import to_numpy

    return to_numpy(node.attr["value"].tensor)


def tensor_dtype(graph: Any, ref: TensorRef) -> str | None:
    """The dtype name of a tensor when the node says it: `_output_shapes`-free attrs only."""
    node = graph.get(ref.node)
    if node is None:
        return None
    from surgery.ir.tensor_values import dtype_name

    attrs = node.attr
    if "_output_types" in attrs and len(attrs["_output_types"].list.type) > ref.port:
        return dtype_name(attrs["_output_types"].list.type[ref.port])
    if node.op == "Const" and "value" in attrs and ref.port == 0:
        return dtype_name(attrs["value"].tensor.dtype)
    for key in ("dtype", "T", "out_type", "DstT"):
        if key in attrs and attrs[key].WhichOneof("value") == "type":
            return dtype_name(attrs[key].type)
    if OUTPUTS_ATTR in attrs:  # an ONNX node: typed by its value_info or its producers
        from surgery.ir.onnx_dtypes import onnx_dtype

        return onnx_dtype(graph, ref)
    return None


def tensor_shape(graph: Any, ref: TensorRef) -> tuple[int, ...] | None:
    """Dims (-1 unknown) from `_output_shapes`, a `shape` attr or a Const value; else None."""
    node = graph.get(ref.node)
    if node is None:
        return None
    from surgery.ir.tensor_values import shape_of

    attrs = node.attr
    if "_output_shapes" in attrs and len(attrs["_output_shapes"].list.shape) > ref.port:
        return shape_of(attrs["_output_shapes"].list.shape[ref.port])
    if ref.port == 0 and node.op == "Const" and "value" in attrs:
        return shape_of(attrs["value"].tensor.tensor_shape)
    if ref.port == 0 and "shape" in attrs and attrs["shape"].WhichOneof("value") == "shape":
        return shape_of(attrs["shape"].shape)
    return None


# --------------------------------------------------------------------------- rendering
def expr_text(expr: Any) -> str:
    """Rule-language spelling of an expression (for messages)."""
    if isinstance(expr, ast.Literal):
        if isinstance(expr.value, tuple):
            return "[" + ", ".join(expr_text(v) for v in expr.value) + "]"
        if isinstance(expr.value, str):
            return f'"{expr.value}"'
        if isinstance(expr.value, bool):
            return "true" if expr.value else "false"
        return repr(expr.value)
    if isinstance(expr, ast.Ref):
        text = expr.var + (f":{expr.port}" if expr.port is not None else "")
        if expr.attr is not None:
            return f"{text}.attr.{expr.attr}"
        return f"{text}.{expr.prop}" if expr.prop else text
    if isinstance(expr, ast.Index):
        return f"{expr_text(expr.base)}[{expr_text(expr.index)}]"
    if isinstance(expr, ast.BinOp | ast.Compare):
        return f"{expr_text(expr.left)} {expr.op} {expr_text(expr.right)}"
    if isinstance(expr, ast.BoolOp):
        return f" {expr.op} ".join(expr_text(o) for o in expr.operands)
    if isinstance(expr, ast.Not):
        return f"not {expr_text(expr.operand)}"
    if isinstance(expr, ast.Call):
        return f"{expr.func}({', '.join(expr_text(a) for a in expr.args)})"
    if isinstance(expr, ast.ScopeTensor):
        return scope_tensor_text(expr)
    return str(expr)


def value_text(value: Any, limit: int = 60) -> str:
    """A short spelling of an evaluated value."""
    if isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=8, separator=", ").replace("\n", "")
    elif isinstance(value, ScopeInstance):
        text = f"scope {value.namespace!r}"
    elif isinstance(value, TensorRef):
        text = str(value)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- evaluation
def _norm(value: Any) -> Any:
    """Canonical Python form: 0-d arrays -> scalars, lists -> tuples, bytes -> str."""
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _onnx_default(graph: Any, op: str, name: str) -> Any:
    """The default of attribute `name` of `op` when the graph is an ONNX model, else None."""
    from surgery.ops.opdefs import onnx_attribute_default, opset_of

    ops = opset_of(graph, use_tf=False)
    return onnx_attribute_default(op, name, ops.opset) if ops.format == "onnx" else None


def _is_seq(value: Any) -> bool:
    return isinstance(value, tuple | np.ndarray) and not isinstance(value, TensorRef)


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
            return tuple(_norm(self.value(v)) for v in expr.value)
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
            return _norm(value)
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
            return _norm(tuple(default) if isinstance(default, list) else default)
        return _norm(_attr_value()(attrs[name]))

    def _index(self, expr: ast.Index) -> Any:
        base = self.value(expr.base)
        index = self.value(expr.index)
        if not isinstance(index, int) or isinstance(index, bool):
            raise RuleError(f"{expr.loc}: index must be an integer, got {value_text(index)}")
        if isinstance(base, ScopeInstance) or not _is_seq(base) and not isinstance(base, str):
            raise RuleError(f"{expr.loc}: {expr_text(expr.base)} cannot be indexed")
        try:
            return _norm(base[index])
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
        array = _is_seq(left) or _is_seq(right)
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
            return tuple(_norm(v) for v in out)
        return _norm(out)

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
                return _norm(np.abs(arg)) if _is_seq(arg) else abs(arg)
            if func in ("min", "max"):
                items = args[0] if len(args) == 1 else args
                return _norm((min if func == "min" else max)(_flat(items)))
            if func in ("int", "float"):  # a one-element list is its element (`axis = [3]`)
                (arg,) = args
                if _is_seq(arg) and len(arg) == 1:
                    arg = _norm(arg[0])
                return int(arg) if func == "int" else float(arg)
            if func == "prod":
                (arg,) = args
                return math.prod(_flat(arg))
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
        fast = _fast_compare(op, right)

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


def compare_values(expr: ast.Compare, left: Any, right: Any) -> bool:
    """`left op right` in the rule language: close floats are equal, lists compare elementwise."""
    op = expr.op
    if op in ("in", "not in"):
        if not _is_seq(right) and not isinstance(right, str):
            raise RuleError(f"{expr.loc}: the right side of `{op}` must be a list or string")
        if isinstance(right, str):
            found = isinstance(left, str) and left in right
        else:
            found = any(_equal(left, item) for item in right)
        return found if op == "in" else not found
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    try:
        if _is_seq(left) or _is_seq(right):
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


def _fast_compare(op: str, right: Any) -> dict[type, Callable[[Any, Any], bool]]:
    """Types of the left side for which `left op right` needs no conversion -> the comparison
    (floats are never compared for equality here: the language calls close floats equal)."""
    if op in _ORDER and type(right) in (int, float):
        return {int: _ORDER[op], float: _ORDER[op]}
    if op in _ORDER and type(right) is str:
        return {str: _ORDER[op]}
    if op in ("==", "!=") and type(right) in (int, str):
        return {type(right): operator.eq if op == "==" else operator.ne}
    return {}


@functools.cache
def _attr_value() -> Callable[[Any], Any]:
    """`surgery.ir.attrs.attr_value`, imported on first use."""
    from surgery.ir.attrs import attr_value

    return attr_value


def _flat(items: Any) -> list[Any]:
    if isinstance(items, np.ndarray):
        return [_norm(v) for v in items.ravel()]
    return list(items)


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        a, b = np.asarray(left), np.asarray(right)
        return a.shape == b.shape and bool(np.all(a == b))
    if _is_seq(left) and _is_seq(right):
        if len(left) != len(right):
            return False
        return all(_equal(x, y) for x, y in zip(left, right, strict=True))
    if isinstance(left, float) or isinstance(right, float):
        if isinstance(left, int | float) and isinstance(right, int | float):
            return math.isclose(left, right, rel_tol=1e-6, abs_tol=1e-12)
    return bool(left == right)


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
