"""Values read from inside a matched scope or node: `operand(r, "TopKV2", "k")`, `limit(...)`.

A plugin field often is a constant deep inside the namespace the plugin replaces (the `k` of
the proposal layer's TopKV2, the NMS `max_output_size`, a score threshold). These functions
find the nodes of an op inside the region, inside the library functions its nodes call (a TF2
while loop's body) and inside the subgraphs its ONNX nodes hold (If branches, Loop bodies),
and read one operand's value: through Identity-like nodes to a Const (or an ONNX Constant), or,
for `limit`, the largest value it can take (`Minimum(Const, x)` is at most the Const).
`subgraph_reads` names the tensors an ONNX node's subgraphs read from the enclosing graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from surgery.errors import GraphError
from surgery.ir.attrs import called_functions
from surgery.ops.opdefs import opset_of, role_slot

# Ops whose output 0 holds their input 0's values (for a value): looked through. ONNX's
# Unsqueeze/Squeeze/Reshape only reshape (a scalar threshold is often Unsqueeze(Constant)).
_PASS = frozenset({"Identity", "StopGradient", "Snapshot", "PreventGradient", "Enter",
                   "Unsqueeze", "Squeeze", "Reshape"})  # fmt: skip
_MIN = frozenset({"Minimum", "Min"})
_MAX = frozenset({"Maximum", "Max"})


@dataclass(frozen=True)
class _View:
    """One op node, in the graph or in a function body: its op, attrs and data-input nodes."""

    where: str  # the node's name, or `function/node` for a body node
    op: str
    attr: Any
    inputs: tuple[str | None, ...]  # producer node per data slot (None: a function argument)
    lookup: Callable[[str], _View | None]
    constant: np.ndarray | None = None  # an ONNX Constant's value


def _onnx_subgraphs(attrs: Any) -> list[Any]:
    """The GraphProtos an ONNX node's kept attributes hold (If branches, Loop/Scan bodies)."""
    from surgery.ir.onnx_io import ATTR_PREFIX

    keys = [k for k in attrs if k.startswith(ATTR_PREFIX)]
    if not keys:
        return []
    from onnx import AttributeProto

    graphs: list[Any] = []
    for key in sorted(keys):
        attribute = AttributeProto.FromString(attrs[key].s)
        if attribute.type == AttributeProto.GRAPH:
            graphs.append(attribute.g)
        elif attribute.type == AttributeProto.GRAPHS:
            graphs.extend(attribute.graphs)
    return graphs


def _outer_reads(body: Any, known: frozenset[str] = frozenset()) -> list[str]:
    """Names of the tensors a GraphProto (and the subgraphs in it) reads from outside it."""
    from onnx import AttributeProto

    local = set(known) | {i.name for i in body.input} | {i.name for i in body.initializer}
    for node in body.node:
        local.update(node.output)
    reads: dict[str, None] = {}
    for node in body.node:
        for name in node.input:
            if name and name not in local:
                reads[name] = None
        for attribute in node.attribute:
            inner = [attribute.g] if attribute.type == AttributeProto.GRAPH else []
            if attribute.type == AttributeProto.GRAPHS:
                inner = list(attribute.graphs)
            for graph in inner:
                reads.update(dict.fromkeys(r for r in _outer_reads(graph, frozenset(local))
                                           if r not in local))  # fmt: skip
    return list(reads)


def subgraph_reads(graph: Any, name: str) -> list[str]:
    """The ONNX tensor names that node `name`'s subgraphs read from the enclosing graph."""
    node = graph.get(name)
    if node is None:
        return []
    reads: dict[str, None] = {}
    for body in _onnx_subgraphs(node.attr):
        reads.update(dict.fromkeys(_outer_reads(body)))
    return list(reads)


def _onnx_body_views(body: Any, where: str, outer: Callable[[str], _View | None]
                     ) -> list[_View]:  # fmt: skip
    """Views of an ONNX subgraph's nodes (named `where/node`); an input made outside the body
    is looked up with `outer` (by tensor name), one made by a node inside by its view."""
    from onnx import numpy_helper

    producer: dict[str, str] = {}
    for index, node in enumerate(body.node):
        for out in node.output:
            producer[out] = node.name or f"{node.op_type}_{index}"
    for init in body.initializer:
        producer.setdefault(init.name, "")
    views: dict[str, _View] = {}

    def lookup(key: str) -> _View | None:
        return views.get(key) or outer(key)

    for index, node in enumerate(body.node):
        label = node.name or f"{node.op_type}_{index}"
        inputs = tuple((producer.get(n) or n) if n else None for n in node.input)
        value = None
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    value = numpy_helper.to_array(attribute.t)
        attrs = {a.name: a for a in node.attribute}
        views[label] = _View(f"{where}/{label}", node.op_type, attrs, inputs, lookup, value)
    for init in body.initializer:
        views.setdefault(init.name, _View(f"{where}/{init.name}", "Constant", {}, (), lookup,
                                          numpy_helper.to_array(init)))  # fmt: skip
    return list(views.values())


def _graph_view(graph: Any, name: str) -> _View | None:
    """The view of graph node `name` (None if absent)."""
    node = graph.get(name)
    if node is None:
        return None
    value = None
    if node.op == "Constant":
        from surgery.ir.onnx_io import constant_value

        value = constant_value(node)
    return _View(name, node.op, node.attr, tuple(r.node for r in node.inputs),
                 lambda other: _graph_view(graph, other), value)  # fmt: skip


def _tensor_producers(graph: Any) -> Callable[[str], _View | None]:
    """Looks an ONNX tensor name up to the view of the graph node making it. The table of every
    node's outputs is made on the first lookup: most bodies read their operands from Constants
    of their own, and a whole-graph pass per operand() call would grow with the model."""
    from surgery.ir.onnx_io import OUTPUTS_ATTR

    table: dict[str, str] = {}

    def lookup(tensor: str) -> _View | None:
        if not table:
            for node in graph:
                outputs = node.attr.get(OUTPUTS_ATTR)
                for out in outputs.list.s if outputs is not None else ():
                    table.setdefault(out.decode(), node.name)
        name = table.get(tensor)
        return _graph_view(graph, name) if name is not None else None

    return lookup


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


def _subgraph_views(bodies: list[Any], where: str, outer: Callable[[str], _View | None]
                    ) -> list[_View]:  # fmt: skip
    """Views of the nodes of ONNX subgraphs and of the subgraphs nested in them."""
    from onnx import AttributeProto

    found: list[_View] = []
    for body in bodies:
        views = _onnx_body_views(body, where, outer)
        found.extend(views)
        for view in views:
            nested = [a.g for a in view.attr.values() if a.type == AttributeProto.GRAPH]
            nested += [g for a in view.attr.values() if a.type == AttributeProto.GRAPHS
                       for g in a.graphs]  # fmt: skip
            if nested:
                found.extend(_subgraph_views(nested, view.where, view.lookup))
    return found


def scope_views(graph: Any, nodes: tuple[str, ...], ops: frozenset[str]) -> list[_View]:
    """Views of the nodes of `ops` in the region, in the library functions it calls
    (transitively) and in the ONNX subgraphs its nodes hold: region first in graph order, then
    subgraphs, then functions in call order."""
    library = {f.signature.name: f for f in graph.library.function}
    found: list[_View] = []
    todo: list[str] = []
    bodies: list[_View] = []
    outer: Callable[[str], _View | None] | None = None
    from surgery.ir.onnx_io import is_onnx_graph

    onnx = is_onnx_graph(graph)  # only ONNX nodes hold subgraphs in attributes
    for name in nodes:
        node = graph.get(name)
        if node is None:
            continue
        if node.op in ops:
            view = _graph_view(graph, name)
            if view is not None:
                found.append(view)
        subgraphs = _onnx_subgraphs(node.attr) if onnx else []
        if subgraphs:
            outer = outer or _tensor_producers(graph)
            bodies.extend(v for v in _subgraph_views(subgraphs, name, outer) if v.op in ops)
        if library:  # a node's function attributes matter only where there are functions
            todo.extend(called_functions(node.attr))
    found.extend(bodies)
    seen: set[str] = set()
    while todo:
        fname = todo.pop(0)
        if fname in seen or fname not in library:
            continue
        seen.add(fname)
        for view in _body_views(library[fname]).values():
            if view.op in ops:
                found.append(view)
            todo.extend(called_functions(view.attr))
    return found


def _const(view: _View) -> np.ndarray | None:
    """A Const view's value (or an ONNX Constant's)."""
    if view.constant is not None:
        return view.constant
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
    if view.op in _MIN | _MAX and len(view.inputs) == 2:
        a = static_value(_input(view, 0), bound, depth + 1)
        b = static_value(_input(view, 1), bound, depth + 1)
        if a is not None and b is not None:
            return np.minimum(a, b) if view.op in _MIN else np.maximum(a, b)
        if bound and view.op in _MIN:
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
