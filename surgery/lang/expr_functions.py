"""The rule language's functions that read the graph or do the math plugin fields need.

`sqrt log2 round floor ceil` (numbers, elementwise on lists), `if(cond, a, b)` (only the
chosen branch is evaluated), `input("name")` (a graph input's tensor), `shape(t)`,
`reads(x, t)` (x's node reads tensor t, also from inside its ONNX subgraphs), and the readers
`operand(r, "Op", role)` / `limit(r, "Op", role)` of a scope or of a node and the subgraphs it
holds (surgery/lang/scope_values.py).
Failures are `EvalFailure`s that say what was looked for: in a `where` the predicate fails, in
a field value the rewriter reports it with the rule's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from surgery.errors import GraphError, RuleError
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.expr_eval import EvalFailure, Evaluator
from surgery.lang.expr_text import value_text
from surgery.lang.expr_values import canonical
from surgery.lang.scope_instances import ScopeInstance
from surgery.lang.tensor_props import tensor_shape

_MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sqrt": np.sqrt,
    "log2": np.log2,
    "round": np.round,  # half to even, as tf.round
    "floor": np.floor,
    "ceil": np.ceil,
}
_TO_INT = frozenset(("round", "floor", "ceil"))
_ARITY = {
    "if": 3, "input": 1, "shape": 1, "operand": 3, "limit": 3, "opset": 1, "reads": 2,
    **dict.fromkeys(_MATH, 1),
}  # fmt: skip


def call(ev: Evaluator, expr: ast.Call) -> Any:
    """Evaluate one call of these functions."""
    func, args = expr.func, expr.args
    if len(args) != _ARITY[func]:
        raise RuleError(f"{expr.loc}: {func}() takes {_ARITY[func]} argument(s), got {len(args)}")
    if func == "if":
        cond = ev.value(args[0])
        return ev.value(args[1] if ev._truth(cond, expr.loc) else args[2])
    if func in _MATH:
        return _math(func, ev.value(args[0]), expr)
    if func == "input":
        return _input(ev, ev.value(args[0]), expr)
    if func == "shape":
        return _shape(ev, ev.value(args[0]), expr)
    if func == "opset":
        return _opset(ev, ev.value(args[0]), expr)
    if func == "reads":
        return _reads(ev, ev.value(args[0]), ev.value(args[1]), expr)
    return _scope_operand(ev, expr, bound=func == "limit")


def _reads(ev: Evaluator, reader: Any, tensor: Any, expr: ast.Call) -> bool:
    """`reads(k, t)`: whether k's node takes tensor t as an operand, or one of the ONNX
    subgraphs it holds (an If branch, a Loop body) reads t from the enclosing graph: how a rule
    ties an If to the tensors its branches capture, which are no operands of the If."""
    if not isinstance(reader, TensorRef) or not isinstance(tensor, TensorRef):
        raise RuleError(f"{expr.loc}: reads() needs two tensor variables (reads(k, t))")
    node = ev.graph.get(reader.node)
    if node is None:
        raise EvalFailure(f"node {reader.node!r} no longer exists", expr.loc)
    if tensor in node.inputs:
        return True
    from surgery.ir.onnx_io import OUTPUTS_ATTR
    from surgery.lang.scope_values import subgraph_reads

    producer = ev.graph.get(tensor.node)
    outputs = producer.attr.get(OUTPUTS_ATTR) if producer is not None else None
    if outputs is None or tensor.port >= len(outputs.list.s):
        return False
    return outputs.list.s[tensor.port].decode() in subgraph_reads(ev.graph, reader.node)


def _opset(ev: Evaluator, domain: Any, expr: ast.Call) -> int:
    """`opset("ai.onnx")`: the version of `domain` the ONNX model imports; 0 when it imports
    none, and for a TensorFlow graph (no opsets), so `opset("ai.onnx") >= 17` is false there."""
    if not isinstance(domain, str):
        raise RuleError(f"{expr.loc}: opset() needs a domain string, got {value_text(domain)}")
    from surgery.ir.onnx_io import graph_opset, is_onnx_graph

    if not is_onnx_graph(ev.graph):
        return 0
    return graph_opset(ev.graph, domain) or 0


def _math(func: str, value: Any, expr: ast.Call) -> Any:
    """sqrt/log2/round/floor/ceil of a number or a list of numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | tuple | np.ndarray):
        raise RuleError(f"{expr.loc}: {func}() needs a number, got {value_text(value)}")
    with np.errstate(all="ignore"):
        out = _MATH[func](np.asarray(value, dtype=np.float64))
    if not np.all(np.isfinite(out)):
        raise EvalFailure(f"{func}({value_text(value)}) is not a finite number", expr.loc)
    if func in _TO_INT:
        out = out.astype(np.int64)
    if out.ndim:
        return tuple(canonical(v) for v in out)
    return canonical(out)


def _input(ev: Evaluator, name: Any, expr: ast.Call) -> TensorRef:
    """The tensor of the graph input (Placeholder) `name`."""
    if not isinstance(name, str):
        raise RuleError(f"{expr.loc}: input() needs a placeholder name, got {value_text(name)}")
    graph = ev.graph
    node = graph.get(name) if graph is not None else None
    if node is None or node.op != "Placeholder":
        known = sorted(n.name for n in graph.graph_inputs()) if graph is not None else []
        what = "is not a Placeholder" if node is not None else "does not exist"
        raise EvalFailure(
            f"input({name!r}): the graph input {what} (graph inputs: "
            f"{', '.join(known) or 'none'})", expr.loc,
        )  # fmt: skip
    return TensorRef(name, 0)


def _shape(ev: Evaluator, ref: Any, expr: ast.Call) -> tuple[int, ...]:
    """A tensor's shape (-1 for an unknown dim)."""
    if not isinstance(ref, TensorRef):
        raise RuleError(f"{expr.loc}: shape() needs a tensor, got {value_text(ref)}")
    shape = tensor_shape(ev.graph, ref)
    if shape is None or any(d < 0 for d in shape):
        shown = "unknown" if shape is None else "[" + ", ".join(
            "?" if d < 0 else str(d) for d in shape) + "]"  # fmt: skip
        node = ev.graph.get(ref.node) if ev.graph is not None else None
        hint = (f"; pin it with --input {ref.node}=D0,D1,..."
                if node is not None and node.op == "Placeholder"
                else "; pin the graph inputs with --input NAME=D0,D1,...")  # fmt: skip
        raise EvalFailure(f"shape({ref}) is {shown}: not static{hint}", expr.loc)
    return tuple(shape)


def _scope_operand(ev: Evaluator, expr: ast.Call, bound: bool) -> Any:
    """`operand(r, "Op|Op2", role)`: the value of operand `role` (a name or slot) of the
    nodes of that op in scope r (or in node x and the ONNX subgraphs it holds, for a tensor
    variable x); they must agree. `limit` gives the largest value it can take."""
    from surgery.lang.scope_values import operand_values

    func = expr.func
    where, ops, role = (ev.value(a) for a in expr.args)
    if isinstance(where, ScopeInstance):
        nodes, place = where.nodes, f"scope {where.namespace!r}"
        inside = "nor in the functions it calls"
    elif isinstance(where, TensorRef):
        nodes, place = (where.node,), f"node {where.node!r}"
        inside = "nor in its subgraphs"
    else:
        raise RuleError(f"{expr.loc}: {func}() needs a scope or tensor variable first")
    if not isinstance(ops, str) or not isinstance(role, str | int) or isinstance(role, bool):
        raise RuleError(f'{expr.loc}: {func}() is {func}(scope, "Op", role name or slot)')
    try:
        known, unknown = operand_values(ev.graph, nodes, ops, role, bound)
    except GraphError as exc:
        raise RuleError(f"{expr.loc}: {func}(): {exc}") from None
    what = f"operand {role!r} of {ops} in {place}"
    if not known and not unknown:
        raise EvalFailure(
            f"{func}(): no {ops} node in {place} ({inside}): cannot read {what}", expr.loc,
        )  # fmt: skip
    if unknown:
        kind = "an upper bound" if bound else "a constant"
        raise EvalFailure(
            f"{func}(): {what} is not {kind} at {', '.join(unknown)}", expr.loc
        )  # fmt: skip
    values = {repr(canonical(v)): (where, canonical(v)) for where, v in known}
    if len(values) > 1:
        shown = "; ".join(f"{w}: {value_text(v)}" for w, v in values.values())
        raise EvalFailure(f"{func}(): {what} differs between nodes ({shown})", expr.loc)
    return next(iter(values.values()))[1]
