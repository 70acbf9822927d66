"""Values read from inside a matched scope: `operand(r, "TopKV2", "k")`, `limit(...)`.

A plugin field often is a constant deep inside the namespace the plugin replaces (the `k` of
the proposal layer's TopKV2, the NMS `max_output_size`, a score threshold). These functions
find the nodes of an op inside the region, and inside the library functions its nodes call (a
TF2 while loop's body), and read one operand's value: through Identity-like nodes to a Const,
or, for `limit`, the largest value it can take (`Minimum(Const, x)` is at most the Const).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from surgery.errors import GraphError
from surgery.ops.opdefs import opset_of, role_slot

# Ops whose output 0 is their input 0 (for a value): looked through.
_PASS = frozenset({"Identity", "StopGradient", "Snapshot", "PreventGradient", "Enter"})


@dataclass(frozen=True)
class _View:
    """One op node, in the graph or in a function body: its op, attrs and data-input nodes."""

    where: str  # the node's name, or `function/node` for a body node
    op: str
    attr: Any
    inputs: tuple[str | None, ...]  # producer node per data slot (None: a function argument)
    lookup: Callable[[str], _View | None]


def _graph_view(graph: Any, name: str) -> _View | None:
    """The view of graph node `name` (None if absent)."""
    node = graph.get(name)
    if node is None:
        return None
    return _View(name, node.op, node.attr, tuple(r.node for r in node.inputs),
                 lambda other: _graph_view(graph, other))  # fmt: skip


def _body_views(function: Any) -> dict[str, _View]:
    """Views of a FunctionDef's nodes; inputs spelled `node:out:i` name `node`."""
    defs = {nd.name: nd for nd in function.node_def}
    views: dict[str, _View] = {}

    def lookup(name: str) -> _View | None:
        return views.get(name)

    for nd in function.node_def:
        inputs: list[str | None] = []
        for text in nd.input:
            if text.startswith("^"):
                continue
            head = text.split(":", 1)[0]
            inputs.append(head if head in defs else None)
        views[nd.name] = _View(f"{function.signature.name}/{nd.name}", nd.op, nd.attr,
                               tuple(inputs), lookup)  # fmt: skip
    return views


def _called(attrs: Any) -> Iterator[str]:
    """Names of the functions an attribute map refers to (`body`, `cond`, `f`, lists)."""
    for value in attrs.values():
        if value.HasField("func"):
            yield value.func.name
        for func in value.list.func:
            yield func.name


def scope_views(graph: Any, nodes: tuple[str, ...], ops: frozenset[str]) -> list[_View]:
    """Views of the nodes of `ops` in the region and in the library functions it calls
    (transitively), region first in graph order, then functions in call order."""
    library = {f.signature.name: f for f in graph.library.function}
    found: list[_View] = []
    todo: list[str] = []
    for name in nodes:
        node = graph.get(name)
        if node is None:
            continue
        if node.op in ops:
            view = _graph_view(graph, name)
            if view is not None:
                found.append(view)
        todo.extend(_called(node.attr))
    seen: set[str] = set()
    while todo:
        fname = todo.pop(0)
        if fname in seen or fname not in library:
            continue
        seen.add(fname)
        for view in _body_views(library[fname]).values():
            if view.op in ops:
                found.append(view)
            todo.extend(_called(view.attr))
    return found


def _const(view: _View) -> np.ndarray | None:
    """A Const view's value."""
    if view.op != "Const" or "value" not in view.attr:
        return None
    from surgery.ir.tensor_values import to_numpy

    return to_numpy(view.attr["value"].tensor)


def static_value(view: _View | None, bound: bool, depth: int = 0) -> np.ndarray | None:
    """The value a view's output 0 holds, or with `bound` the largest it can hold; None when
    unknown. Looks through Identity-like nodes and Minimum/Maximum of known values."""
    if view is None or depth > 32:
        return None
    value = _const(view)
    if value is not None:
        return value
    if view.op in _PASS and view.inputs:
        return static_value(_input(view, 0), bound, depth + 1)
    if view.op in ("Minimum", "Maximum") and len(view.inputs) == 2:
        a = static_value(_input(view, 0), bound, depth + 1)
        b = static_value(_input(view, 1), bound, depth + 1)
        if a is not None and b is not None:
            return np.minimum(a, b) if view.op == "Minimum" else np.maximum(a, b)
        if bound and view.op == "Minimum":
            return a if a is not None else b
    if view.op == "Cast" and view.inputs:
        return static_value(_input(view, 0), bound, depth + 1)
    return None


def _input(view: _View, slot: int) -> _View | None:
    """The producer view of data slot `slot`."""
    if slot >= len(view.inputs) or view.inputs[slot] is None:
        return None
    return view.lookup(view.inputs[slot])  # type: ignore[arg-type]


def operand_values(
    graph: Any, nodes: tuple[str, ...], ops: str, role: str | int, bound: bool
) -> tuple[list[tuple[str, Any]], list[str]]:
    """For each node of `ops` ("A|B") in the region (and the functions it calls): (where,
    value of operand `role`) when known; and the places where it is not known."""
    wanted = frozenset(o.strip() for o in ops.split("|") if o.strip())
    opset = opset_of(graph)
    known: list[tuple[str, Any]] = []
    unknown: list[str] = []
    for view in scope_views(graph, nodes, wanted):
        if isinstance(role, int):
            slot = role
        else:
            try:
                slot = role_slot(view.op, role, view.attr, len(view.inputs), ops=opset)
            except GraphError as exc:
                raise GraphError(f"{view.where}: {exc}") from None
        value = static_value(_input(view, slot), bound)
        if value is None:
            unknown.append(view.where)
        else:
            known.append((view.where, value))
    return known, unknown
