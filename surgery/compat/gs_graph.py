"""graphsurgeon's StaticGraph and DynamicGraph, built on `surgery.ir.graph.Graph`.

Scripts receive the IR's own NodeDef protos and edit them in place (`node.input.insert(0, x)`,
`del node.input[:]`, `node.op = ...`, `node.name = ...`). Every proto handed to a script is
remembered; before each API call the remembered ones are compared with the IR and any edit is
replayed through `Graph`, so its indexes stay right without rebuilding them. Entries that only
this module still references are dropped (the script can no longer edit them), which keeps the
per-call cost proportional to what the script holds, not to the graph size.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from surgery.compat.gs_collapse import collapse
from surgery.compat.gs_nodes import as_node_def, is_node_def
from surgery.errors import GraphError
from surgery.ir import model_io
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef, parse_input, parse_tensor
from surgery.ir.protos import GraphDef, NodeDef


class NodeNotFound(GraphError, KeyError):
    """A gs call named a node that is not in the graph (also a KeyError, as dict lookups were)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _position(graph: Graph, name: str) -> int:
    """Graph order of a node."""
    return graph.position(name)


def _parsed_inputs(proto: NodeDef) -> tuple[list[TensorRef], list[str], bool]:
    """(data, controls, canonical?) of a NodeDef's input strings; canonical = controls last."""
    data: list[TensorRef] = []
    controls: list[str] = []
    canonical = True
    for text in proto.input:
        ref, ctl = parse_input(text)
        if ref is not None:
            data.append(ref)
            if controls:
                canonical = False
        elif ctl is not None:
            controls.append(ctl)
    return data, controls, canonical


def _full_match(patterns: Iterable[str], text: str) -> bool:
    """graphsurgeon's matching: equal, or the regex matches the whole string."""
    for pattern in patterns:
        if pattern == text:
            return True
        try:
            if re.fullmatch(pattern, text):
                return True
        except re.error as exc:
            raise GraphError(f"bad regular expression {pattern!r}: {exc}") from None
    return False


def _patterns(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return list(value)


class _Handed:
    """A proto given to a script, with the name and op it had when last synced."""

    __slots__ = ("proto", "name", "op")

    def __init__(self, proto: NodeDef):
        self.proto = proto
        self.name = proto.name
        self.op = proto.op


def _refcount(table: dict[int, _Handed], key: int) -> int:
    return sys.getrefcount(table[key].proto)


def _measure_baseline() -> int:
    """References a handed proto has when the script holds none (calibrated, not assumed)."""
    graph_def = GraphDef()
    graph_def.node.add(name="a", op="Const")
    graph = Graph(graph_def)
    graph.add_proto(NodeDef(name="b", op="Const"))
    table: dict[int, _Handed] = {}
    for name in ("a", "b"):
        entry = _Handed(graph.node(name).proto)
        table[id(entry.proto)] = entry
    del entry
    counts = {_refcount(table, key) for key in table}
    return counts.pop() if len(counts) == 1 else -1  # disagreement: never prune


_BASELINE = _measure_baseline()


class _ByNodeName(Mapping):
    """A live mapping keyed by the graph's node names; subclasses say what a name maps to."""

    def __init__(self, owner: StaticGraph):
        self._owner = owner

    def __contains__(self, name: object) -> bool:
        self._owner._sync()
        return isinstance(name, str) and name in self._owner._graph

    def __iter__(self) -> Iterator[str]:
        self._owner._sync()
        return iter(self._owner._graph.names)

    def __len__(self) -> int:
        return len(self._owner._graph)


class _NodeMap(_ByNodeName):
    """`graph.node_map`: name -> NodeDef, live, unknown names raise NodeNotFound."""

    def __getitem__(self, name: str) -> NodeDef:
        return self._owner._lookup(name)


class _NodeOutputs(_ByNodeName):
    """`graph.node_outputs`: name -> nodes reading it (data or control), in graph order."""

    def __getitem__(self, name: str) -> list[NodeDef]:
        owner = self._owner
        node = owner._lookup(name)
        graph = owner._graph
        users = sorted(graph.consumer_names(node.name), key=lambda n: _position(graph, n))
        return [owner._hand(graph.node(u).proto) for u in users]


class StaticGraph:
    """A frozen graph searchable the graphsurgeon way; nodes are the IR's NodeDef protos."""

    def __init__(self, graphdef: Any = None):
        self._handed: dict[int, _Handed] = {}
        self._graph = Graph()
        if graphdef is None:
            return
        if isinstance(graphdef, Graph):
            self._graph = graphdef
        elif isinstance(graphdef, str | os.PathLike):
            self.read(graphdef)
        elif isinstance(graphdef, StaticGraph):
            graphdef._sync(full=True)
            self._graph = graphdef._graph.copy()
        elif isinstance(graphdef, GraphDef):
            own = GraphDef()
            own.CopyFrom(graphdef)
            self._graph = Graph(own)
        elif hasattr(graphdef, "as_graph_def"):  # tf.Graph
            self._graph = Graph(_convert_graph_def(graphdef.as_graph_def()))
        elif type(graphdef).__name__ == "GraphDef":  # TensorFlow's own GraphDef class
            self._graph = Graph(_convert_graph_def(graphdef))
        else:
            raise GraphError(
                f"cannot build a graph from {type(graphdef).__name__}: expected a path, a "
                "GraphDef, a tf.Graph or another StaticGraph/DynamicGraph"
            )

    # ------------------------------------------------------------ the IR and the script's protos
    @property
    def graph(self) -> Graph:
        """The underlying IR, with every script edit replayed."""
        self._sync(full=True)
        return self._graph

    def _hand(self, proto: NodeDef) -> NodeDef:
        """Remember a proto given to the script so that its edits reach the IR."""
        key = id(proto)
        if key not in self._handed:
            self._handed[key] = _Handed(proto)
        return proto

    def _lookup(self, name: Any) -> NodeDef:
        """The proto of the node named `name` (or of NodeDef `name`); unknown raises naming it."""
        self._sync()
        text = name.name if is_node_def(name) else name
        if not isinstance(text, str):
            raise GraphError(f"expected a node name or NodeDef, got {type(name).__name__}")
        node = self._graph.get(text)
        if node is None:
            hint = self._graph._did_you_mean(text)
            raise NodeNotFound(f"no node named {text!r}{hint}")
        return self._hand(node.proto)

    def _sync(self, full: bool = False) -> None:
        """Replay edits the script made to handed-out protos (or, if `full`, to every node)."""
        table = self._handed
        for key in list(table):
            self._sync_one(table[key])
            if key in table and table[key].name not in self._graph:
                del table[key]
            elif _refcount(table, key) <= _BASELINE:
                del table[key]
        if full:
            for node in self._graph:
                self._sync_edges(node.name, node.proto)

    def _sync_one(self, entry: _Handed) -> None:
        graph = self._graph
        proto = entry.proto
        node = graph.get(entry.name)
        if node is None or node.proto is not proto:
            entry.name = ""  # removed from the graph: its edits no longer matter
            return
        if proto.op != entry.op:
            new_op = proto.op
            proto.op = entry.op
            graph.set_op(entry.name, new_op)
            entry.op = new_op
        if proto.name != entry.name:
            self._rename(entry.name, proto)
            entry.name = proto.name
        self._sync_edges(entry.name, proto)

    def _sync_edges(self, name: str, proto: NodeDef) -> None:
        node = self._graph.node(name)
        data, controls, canonical = _parsed_inputs(proto)
        if canonical and data == list(node.inputs) and controls == list(node.controls):
            return
        # set_inputs unlinks the edges the IR recorded, links the new ones, rewrites the proto.
        self._graph.set_inputs(name, data, controls)

    def _rename(self, old: str, proto: NodeDef) -> None:
        """A script set `node.name`: move the node and point its consumers at the new name."""
        graph = self._graph
        new = proto.name
        if not new:
            proto.name = old
            raise GraphError(f"node {old!r} was given an empty name")
        if new in graph:
            proto.name = old
            raise GraphError(f"node {old!r} was renamed to {new!r}, which already exists")
        proto.name = old
        graph._detach(old)
        proto.name = new
        graph._attach(proto)
        for port in graph.used_ports(old):
            graph.replace_uses(TensorRef(old, port), TensorRef(new, port))
        graph.replace_control_uses(old, new)

    def _names(self, nodes: Any) -> list[str]:
        """Names of existing nodes from a node, a name, or an iterable of them (no duplicates)."""
        self._sync()
        if isinstance(nodes, str) or is_node_def(nodes):
            nodes = [nodes]
        names: dict[str, None] = {}
        for item in nodes:
            if is_node_def(item):
                name = item.name
            elif isinstance(item, str):
                name = item[1:] if item.startswith("^") else parse_tensor(item).node
            else:
                raise GraphError(f"expected a node or a node name, got {type(item).__name__}")
            if name not in self._graph:
                raise NodeNotFound(f"no node named {name!r}{self._graph._did_you_mean(name)}")
            names[name] = None
        return list(names)

    # ------------------------------------------------------------ container protocol
    def __len__(self) -> int:
        return len(self._graph)

    def __iter__(self) -> Iterator[NodeDef]:
        self._sync()
        for name in self._graph.names:
            node = self._graph.get(name)
            if node is not None:
                yield self._hand(node.proto)

    def __getitem__(self, key: str | int) -> NodeDef:
        if isinstance(key, str):
            return self._lookup(key)
        names = self._graph.names
        try:
            return self._lookup(names[key])
        except IndexError:
            raise GraphError(f"node index {key} out of range ({len(names)} nodes)") from None

    def __contains__(self, name: object) -> bool:
        self._sync()
        return isinstance(name, str) and name in self._graph

    # ------------------------------------------------------------ file I/O
    def read(self, filename: str | os.PathLike) -> None:
        """Load a frozen `.pb` (or `.pbtxt`) into this graph, replacing its contents."""
        self._graph = model_io.load(filename)
        self._handed.clear()

    def write(self, filename: str | os.PathLike) -> None:
        """Write the graph deterministically and atomically."""
        model_io.save(self.graph, filename)

    def write_tensorboard(self, logdir: str) -> None:
        """Not supported: use `surgery inspect` or the visualizer."""
        raise GraphError("write_tensorboard is not supported; use `surgery inspect` instead")

    def as_graph_def(self) -> GraphDef:
        """A GraphDef snapshot of the graph (edits to it do not reach this graph)."""
        return self.graph.to_graph_def()

    # ------------------------------------------------------------ analysis
    @property
    def node_map(self) -> _NodeMap:
        """name -> NodeDef."""
        return _NodeMap(self)

    @property
    def node_outputs(self) -> _NodeOutputs:
        """name -> NodeDefs that read any output of it (data or control)."""
        return _NodeOutputs(self)

    @property
    def graph_inputs(self) -> list[NodeDef]:
        """Placeholders and queues, as graphsurgeon guessed inputs."""
        return self.find_nodes_by_op(
            ["Placeholder", "PlaceholderWithDefault", "FIFOQueueV2", "FIFOQueue"]
        )

    @property
    def graph_outputs(self) -> list[NodeDef]:
        """Nodes nothing reads from and that have at least one input (graphsurgeon's guess)."""
        self._sync()
        graph = self._graph
        return [
            self._hand(n.proto)
            for n in graph
            if (n.inputs or n.controls) and not graph.consumer_names(n.name)
        ]

    # ------------------------------------------------------------ search
    def find_nodes_by_op(self, op: str | Iterable[str]) -> list[NodeDef]:
        """Nodes whose op is `op` (or one of several), in graph order."""
        self._sync()
        graph = self._graph
        nodes = graph.nodes_by_op(*dict.fromkeys(_patterns(op)))
        nodes.sort(key=lambda n: _position(graph, n.name))
        return [self._hand(n.proto) for n in nodes]

    def find_nodes_by_name(self, name: str | Iterable[str]) -> list[NodeDef]:
        """Nodes whose last path component equals or fully matches one of the regexes."""
        self._sync()
        patterns = _patterns(name)
        return [
            self._hand(n.proto)
            for n in self._graph
            if _full_match(patterns, n.name.rsplit("/", 1)[-1])
        ]

    def find_nodes_by_path(self, path: str | Iterable[str]) -> list[NodeDef]:
        """Nodes whose full name equals or fully matches one of the regexes."""
        self._sync()
        patterns = _patterns(path)
        graph = self._graph
        if all(re.escape(p) == p for p in patterns):  # plain names: direct lookups
            found = [graph.get(p) for p in dict.fromkeys(patterns)]
            nodes = sorted(
                (n for n in found if n is not None), key=lambda n: _position(graph, n.name)
            )
            return [self._hand(n.proto) for n in nodes]
        return [self._hand(n.proto) for n in graph if _full_match(patterns, n.name)]

    def find_node_chains_by_op(self, chain: list[str]) -> list[list[NodeDef]]:
        """Chains of nodes whose ops follow `chain` (input first) through data edges."""
        self._sync()
        graph = self._graph
        if not chain:
            return []

        def match(node: Any, depth: int) -> list[Any]:
            if node.op != chain[depth]:
                return []
            if depth == 0:
                return [node]
            found: list[Any] = []
            for producer in dict.fromkeys(r.node for r in node.inputs):
                upstream = graph.get(producer)
                if upstream is not None:
                    found.extend(match(upstream, depth - 1))
            return found + [node] if found else []

        result = []
        for node in graph.nodes_by_op(chain[-1]):
            found = match(node, len(chain) - 1)
            if found:
                result.append([self._hand(n.proto) for n in found])
        return result

    def _input_nodes(self, node: Any) -> list[Any]:
        """IR nodes feeding `node`: data inputs in slot order, then control sources."""
        target = self._graph.node(self._names(node)[0])
        names = [r.node for r in target.inputs] + list(target.controls)
        return [n for n in (self._graph.get(x) for x in names) if n is not None]

    def find_node_inputs(self, node: Any) -> list[NodeDef]:
        """The nodes `node` reads from (data slots in order, then control inputs)."""
        return [self._hand(n.proto) for n in self._input_nodes(node)]

    def find_node_inputs_by_name(self, node: Any, name: str | Iterable[str]) -> list[NodeDef]:
        """Inputs of `node` whose last path component matches one of the regexes."""
        patterns = _patterns(name)
        return [
            self._hand(n.proto)
            for n in self._input_nodes(node)
            if _full_match(patterns, n.name.rsplit("/", 1)[-1])
        ]

    def find_node_inputs_by_op(self, node: Any, op: str | Iterable[str]) -> list[NodeDef]:
        """Inputs of `node` whose op is one of `op`."""
        ops = set(_patterns(op))
        return [self._hand(n.proto) for n in self._input_nodes(node) if n.op in ops]


def _convert_graph_def(foreign: Any) -> GraphDef:
    """TensorFlow's GraphDef -> ours, through its bytes."""
    own = GraphDef()
    own.ParseFromString(foreign.SerializeToString())
    return own


class DynamicGraph(StaticGraph):
    """A StaticGraph that scripts edit: remove, forward, collapse, connect, append, sort."""

    def remove(self, nodes: Any, remove_exclusive_dependencies: bool = False) -> None:
        """Remove nodes; inputs naming them are dropped from the nodes that survive.

        With `remove_exclusive_dependencies`, producers read only by removed nodes go too,
        recursively, as in graphsurgeon.
        """
        graph = self._graph
        doomed = dict.fromkeys(self._names(nodes))
        if remove_exclusive_dependencies:
            remaining: dict[str, int] = {}
            queue = list(doomed)
            while queue:
                name = queue.pop()
                node = graph.node(name)
                for producer in dict.fromkeys([r.node for r in node.inputs] + list(node.controls)):
                    if producer in doomed or producer not in graph:
                        continue
                    if producer not in remaining:
                        remaining[producer] = len(graph.consumer_names(producer))
                    remaining[producer] -= 1
                    if remaining[producer] == 0:
                        doomed[producer] = None
                        queue.append(producer)
        survivors: dict[str, None] = {}
        for name in doomed:
            for user in graph.consumer_names(name):
                if user not in doomed:
                    survivors[user] = None
        for user in survivors:
            node = graph.node(user)
            graph.set_inputs(
                user,
                [r for r in node.inputs if r.node not in doomed],
                [c for c in node.controls if c not in doomed],
            )
        graph.remove_nodes(list(doomed))

    def forward_inputs(self, nodes: Any) -> None:
        """Remove nodes, splicing each one's inputs into its consumers at the slot it held.

        A consumer of `n` (port 0) gets all of n's data inputs in its place, as graphsurgeon
        did; a consumer of `n:k` gets n's k-th input; `^n` becomes control edges on n's inputs.
        Unlike graphsurgeon, nodes with control inputs are forwarded too (their consumers
        inherit those control inputs) instead of being silently kept.
        """
        graph = self._graph
        for name in self._names(nodes):
            node = graph.node(name)
            data, ctl = list(node.inputs), list(node.controls)
            for user in graph.consumer_names(name):
                if user == name:
                    continue
                consumer = graph.node(user)
                new_inputs: list[TensorRef] = []
                reads_data = False
                for ref in consumer.inputs:
                    if ref.node != name:
                        new_inputs.append(ref)
                        continue
                    reads_data = True
                    if ref.port == 0:
                        new_inputs.extend(data)
                    elif ref.port < len(data):
                        new_inputs.append(data[ref.port])
                    else:
                        raise GraphError(
                            f"cannot forward {name!r}: {user!r} reads {ref} but {name!r} has "
                            f"only {len(data)} inputs"
                        )
                new_controls: list[str] = []
                for src in consumer.controls:
                    if src == name:
                        new_controls.extend(r.node for r in data)
                        new_controls.extend(ctl)
                    else:
                        new_controls.append(src)
                if reads_data:
                    new_controls.extend(ctl)
                new_controls = [c for c in dict.fromkeys(new_controls) if c != user]
                graph.set_inputs(user, new_inputs, new_controls)
            graph.remove_nodes([name])

    def collapse_namespaces(
        self,
        namespace_map: Mapping[str, Any],
        exclude_nodes: Any = None,
        unique_inputs: bool = True,
        outputs: Mapping[str, int] | None = None,
    ) -> None:
        """Replace each namespace by its plugin node (see `surgery.compat.gs_collapse`).

        `outputs` (an addition) maps a namespace tensor such as `"ROI/unstack:1"` to the plugin
        output port its consumers should read; by default `ns/node:k` becomes `plugin:k`.
        """
        self._sync()
        excluded: list[str] = []
        if exclude_nodes is not None:
            items = (
                [exclude_nodes]
                if isinstance(exclude_nodes, str) or is_node_def(exclude_nodes)
                else list(exclude_nodes)
            )
            excluded = self._names(items)
        added = collapse(self._graph, namespace_map, excluded, unique_inputs, outputs)
        # graphsurgeon filled the script's own plugin objects with the inputs; do the same.
        for plugin in namespace_map.values():
            name = getattr(plugin, "name", None)
            proto = added.get(name) if name is not None else None
            if proto is not None and plugin is not proto:
                del plugin.input[:]
                plugin.input.extend(proto.input)

    def append(self, node: Any) -> None:
        """Add one NodeDef (a copy) to the graph; a name already present raises."""
        self._sync()
        self._graph.add_proto(as_node_def(node))

    def extend(self, node_list: Iterable[Any]) -> None:
        """Add several NodeDefs (copies)."""
        for node in node_list:
            self.append(node)

    def add(self, nodes: Any) -> None:
        """Add free-standing NodeDef(s): one node or a list."""
        if is_node_def(nodes):
            nodes = [nodes]
        self.extend(nodes)

    def _tensor(self, who: Any) -> TensorRef:
        """A node, name or `name:port` -> TensorRef of an existing node."""
        if is_node_def(who):
            return TensorRef(self._names(who)[0], 0)
        if not isinstance(who, str):
            raise GraphError(f"expected a node or a tensor name, got {type(who).__name__}")
        ref = parse_tensor(who)
        self._names(ref.node)
        return ref

    def connect(self, who: Any, to_whom: Any, error_if_connected: bool = False) -> None:
        """Make `to_whom` read `who` (a node, name or `name:port`) as its last data input."""
        ref = self._tensor(who)
        target = self._names(to_whom)[0]
        node = self._graph.node(target)
        if ref in node.inputs:
            if error_if_connected:
                raise GraphError(f"{ref} is already an input of {target!r}")
            return
        self._graph.set_inputs(target, list(node.inputs) + [ref])

    def disconnect(self, who: Any, of_whom: Any, error_if_not_connected: bool = False) -> None:
        """Remove the edges from `who` into `of_whom` (every port of a node, or one `name:k`)."""
        target = self._names(of_whom)[0]
        node = self._graph.node(target)
        one_port = isinstance(who, str) and ":" in who and not who.startswith("^")
        ref = self._tensor(who)
        keep = [r for r in node.inputs if not (r == ref if one_port else r.node == ref.node)]
        controls = [c for c in node.controls if one_port or c != ref.node]
        if len(keep) == len(node.inputs) and len(controls) == len(node.controls):
            if error_if_not_connected:
                raise GraphError(
                    f"{who if isinstance(who, str) else ref.node!r} is not an input of {target!r}"
                )
            return
        self._graph.set_inputs(target, keep, controls)

    def sort(self, name: Any, inputs: Any, error_if_not_found: bool = True) -> None:
        """Move the given inputs of `name` to the front, in the order given; the rest follow."""
        target = self._names(name)[0]
        node = self._graph.node(target)
        items = [inputs] if isinstance(inputs, str) or is_node_def(inputs) else list(inputs)
        wanted = [self._tensor(i) for i in items]
        current = list(node.inputs)
        front: list[TensorRef] = []
        for ref in wanted:
            if ref in current:
                current.remove(ref)
                front.append(ref)
            elif error_if_not_found:
                raise GraphError(f"{ref} is not an input of {target!r}")
        self._graph.set_inputs(target, front + current)
