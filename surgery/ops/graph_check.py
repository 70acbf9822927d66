"""Structural defects of an input graph: what TensorFlow (and TensorRT) would refuse.

`find_defects` lists, in this order: an empty graph; self-loops (a node reading its own output
or depending on itself); cycles (a while loop's NextIteration -> Merge back edge excepted, as in
`Graph.topological_order`); reads of output ports the producer does not have; dangling inputs
(a node that does not exist). `surgery inspect` prints them; `apply`, `layout` and `export`
refuse a graph that has any (`refuse_invalid`) unless given `--allow-invalid`.

How many outputs a producer has comes from `opdefs.output_roles` (the built-in table, else
TensorFlow's registry; variadic outputs counted through the node's attrs), the graph's function
library (a call of a library function) and, for plugin nodes, the most outputs the plugin's
schema allows (`PluginSchema.output_count`). Ops none of them knows, and variadic outputs whose
count the attrs do not give, are not checked. Reads of port 0 are checked without importing
TensorFlow (the built-in table has the zero-output ops graphs meet: NoOp, Assert, PrintV2), so
that a valid graph of common ops is checked in one pass and no TensorFlow import.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TextIO

from surgery.errors import GraphError
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.onnx_io import OUTPUTS_ATTR as ONNX_OUTPUTS
from surgery.ir.wire import attr_value, list_strings

KINDS = ("empty", "self-loop", "cycle", "port", "dangling")
_ONNX_OUTPUTS_KEY = ONNX_OUTPUTS.encode()
_SHOWN_IN_CYCLE = 8  # nodes of a cycle spelled out in its text
_SHOWN_IN_REFUSAL = 3  # defects spelled out in the one-line refusal


@dataclass(frozen=True)
class Defect:
    """One structural defect: its kind (one of KINDS), the nodes involved, a one-line text."""

    kind: str
    nodes: tuple[str, ...]
    text: str


def _loop_edge(producer: Node, consumer: Node) -> bool:
    """A while loop's NextIteration -> Merge edge: it orders nothing (see topological_order)."""
    return consumer.op == "Merge" and producer.op == "NextIteration"


def _plural(count: int) -> str:
    return "no outputs" if count == 0 else f"only {count} output{'s' if count != 1 else ''}"


class _OutputCounts:
    """How many output ports a producer node has, or None where that cannot be told."""

    def __init__(self, graph: Graph, use_tf: bool):
        self._functions = {f.signature.name: f.signature for f in graph.library.function}
        self._use_tf = use_tf
        self._catalog: Any = None
        # (op, with TF) -> ("fixed", n) | ("attrs", None) | ("unknown", None)
        self._kinds: dict[tuple[str, bool], tuple[str, int | None]] = {}
        self._per_node: dict[Node, int | None] = {}  # counts from attrs
        self._port0: dict[str, bool] = {}

    def _plugin_most(self, op: str) -> tuple[str, int | None] | None:
        if self._catalog is None:
            from surgery.ops.plugin_schema import load_catalog

            self._catalog = load_catalog()
        if op not in self._catalog:
            return None
        most = self._catalog.get(op).output_count()[1]
        return ("unknown", None) if most is None else ("fixed", most)

    def _kind(self, op: str, with_tf: bool) -> tuple[str, int | None]:
        key = (op, with_tf)
        found = self._kinds.get(key)
        if found is not None:
            return found
        from surgery.ops import opdefs

        sig = opdefs.builtin_signature(op)
        specs: tuple[Any, ...] | None = sig.outputs if sig is not None else None
        if specs is None and op in self._functions:
            specs = tuple(
                opdefs.ArgSpec(a.name, a.number_attr, a.type_list_attr)
                for a in self._functions[op].output_arg
            )
        result: tuple[str, int | None] | None = None
        if specs is None:
            result = self._plugin_most(op)
            if result is None and with_tf:
                tf_sig = opdefs.tf_signature(op)
                specs = tf_sig.outputs if tf_sig is not None else None
        if result is None:
            if specs is None:
                result = ("unknown", None)
            elif any(s.variadic for s in specs):
                result = ("attrs", None)
            else:
                result = ("fixed", len(specs))
        self._kinds[key] = result
        return result

    def count(self, producer: Node, port: int) -> int | None:
        """The producer's number of outputs (None: not known), looked up as `port` needs: port
        0 without importing TensorFlow."""
        wire = producer.unparsed()  # a node loaded from ONNX names them all
        if wire is not None:  # read from the bytes it is held as, not parsed for this
            names = attr_value(wire, _ONNX_OUTPUTS_KEY)
            if names is not None:
                return len(list_strings(names))
        else:
            recorded = producer.attr.get(ONNX_OUTPUTS)
            if recorded is not None:
                return len(recorded.list.s)
        with_tf = self._use_tf and port > 0
        kind, value = self._kind(producer.op, with_tf)
        if kind == "fixed":
            return value
        if kind == "unknown" or producer.op in self._functions:
            return None
        per_node = self._per_node
        if producer in per_node:
            return per_node[producer]
        from surgery.ops import opdefs

        # only a known op gets here, so this consults TensorFlow only if it was looked up there
        roles = opdefs.output_roles(producer.op, producer.attr, use_tf=self._use_tf)
        found = None if any(r.endswith("[*]") for r in roles) else len(roles)
        per_node[producer] = found
        return found

    def port0_suspect(self, op: str) -> bool:
        """Whether a read of port 0 of an `op` node may be a missing port (zero outputs, or a
        count from attrs), as far as is known without TensorFlow."""
        suspect = self._port0.get(op)
        if suspect is None:
            kind, value = self._kind(op, False)
            suspect = kind == "attrs" or (kind == "fixed" and value == 0)
            self._port0[op] = suspect
        return suspect


def find_defects(graph: Graph, *, use_tf: bool = True) -> list[Defect]:
    """Every structural defect of `graph` (none for a valid graph); see the module docstring.
    `use_tf=False` never consults TensorFlow's op registry (ops outside the built-in table,
    the function library and the plugin schemas are then not checked).

    One pass over the edges (a million-node graph: about 2 s) unless graph order is not
    topological: then Tarjan's algorithm looks for the cycles."""
    if len(graph) == 0:
        return [Defect("empty", (), "the graph has no nodes")]
    get = graph._nodes.get  # the hot loop: one dict lookup per edge, no method call
    counts = _OutputCounts(graph, use_tf)
    suspect = counts.port0_suspect
    self_loops: list[Defect] = []
    ports: list[Defect] = []
    ordered = True
    missing = False
    for node in graph:
        pos = node.pos
        looped = ""
        for ref in node._inputs:
            producer = get(ref[0])
            if producer is None:
                missing = True  # dangling: listed below
                continue
            if producer is node:
                looped = f"reads its own output {ref}"
            elif ordered and producer.pos >= pos and not _loop_edge(producer, node):
                ordered = False
            port = ref[1]
            if port == 0 and not suspect(producer.op):
                continue
            have = counts.count(producer, port)
            if have is not None and port >= have:
                ports.append(Defect(
                    "port", (node.name, producer.name),
                    f"{node.name!r} reads {ref}, but {producer.op} {producer.name!r} has "
                    f"{_plural(have)}",
                ))  # fmt: skip
        for src in node._controls:
            producer = get(src)
            if producer is None:
                missing = True
            elif producer is node:
                looped = looped or f"has a control edge from itself (^{src})"
            elif ordered and producer.pos >= pos:
                ordered = False
        if looped:
            self_loops.append(Defect(
                "self-loop", (node.name,), f"{node.name!r} {looped} (a self-loop)"
            ))  # fmt: skip
    cycles = [] if ordered else _cycles(graph)
    dangling = [
        Defect("dangling", (name, ), (
            f"{name!r} has a control edge from missing node {src[1:]!r}" if src.startswith("^")
            else f"{name!r} reads {src} from missing node {_node_of(src)!r}"
        ))
        for name, src in (graph.dangling_inputs() if missing else ())
    ]  # fmt: skip
    return [*self_loops, *cycles, *ports, *dangling]


def _node_of(tensor: str) -> str:
    from surgery.ir.ports import parse_tensor

    return parse_tensor(tensor).node


def _cycles(graph: Graph) -> list[Defect]:
    """One defect per strongly connected component of more than one node (Tarjan's algorithm,
    iterative), over data and control edges but loop back edges and self-loops."""
    nodes = list(graph)
    index_of = {node.name: i for i, node in enumerate(nodes)}
    preds: list[list[int]] = []
    for node in nodes:
        found: dict[int, None] = {}
        for ref in node._inputs:
            j = index_of.get(ref[0])
            if j is not None and nodes[j] is not node and not _loop_edge(nodes[j], node):
                found[j] = None
        for src in node._controls:
            j = index_of.get(src)
            if j is not None and nodes[j] is not node:
                found[j] = None
        preds.append(list(found))
    n = len(nodes)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    counter = 0
    components: list[list[int]] = []
    for root in range(n):
        if index[root] != -1:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]
        while work:
            v, i = work[-1]
            succ = preds[v]
            if i < len(succ):
                work[-1] = (v, i + 1)
                w = succ[i]
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
                continue
            work.pop()
            if work:
                u = work[-1][0]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    components.sort()
    defects = []
    for component in components:
        path = _one_cycle(component, preds)
        names = [nodes[i].name for i in path]
        if len(names) > _SHOWN_IN_CYCLE + 1:
            names = [*names[:_SHOWN_IN_CYCLE], "…", names[-1]]
        text = "cycle " + " -> ".join(names)
        extra = len(component) - (len(path) - 1)
        if extra > 0:
            text += f" ({len(component)} nodes lie on cycles together)"
        defects.append(Defect("cycle", tuple(nodes[i].name for i in component), text))
    return defects


def _one_cycle(component: list[int], preds: list[list[int]]) -> list[int]:
    """A shortest cycle through the component's first node, in data-flow order, first node
    repeated at the end."""
    start = component[0]
    members = set(component)
    parent: dict[int, int] = {start: start}
    queue = [start]
    for v in queue:  # breadth first along inputs: each step goes to a producer of v
        for w in preds[v]:
            if w == start:
                chain = [v]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                # chain: v reads start ... ; start reads chain[-2]: flow is start -> v -> ...
                return [start, *chain]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    return [start, start]  # not reached for a real component


def describe(defects: list[Defect], limit: int = _SHOWN_IN_REFUSAL) -> str:
    """The first `limit` defects' texts on one line, and how many more."""
    shown = "; ".join(d.text for d in defects[:limit])
    if len(defects) > limit:
        shown += f"; and {len(defects) - limit} more"
    return shown


def refuse_invalid(
    graph: Graph, path: str, allow_invalid: bool = False, stream: TextIO | None = None
) -> list[Defect]:
    """Raise GraphError (one line naming the nodes) if `graph` has defects, unless
    `allow_invalid`: then warn on `stream` (stderr) and return them."""
    defects = find_defects(graph)
    if not defects:
        return defects
    count = f"{len(defects)} defect{'s' if len(defects) != 1 else ''}"
    if not allow_invalid:
        raise GraphError(
            f"{path}: invalid graph ({count}): {describe(defects)}; `surgery inspect` lists "
            "them; --allow-invalid goes on anyway"
        )
    print(f"warning: {path}: invalid graph ({count}): {describe(defects)}; going on "
          "(--allow-invalid)", file=stream or sys.stderr)  # fmt: skip
    return defects


__all__ = [
    "KINDS", "Defect", "describe", "find_defects", "refuse_invalid",
]  # fmt: skip
