"""Graph IR: nodes addressed by name, edges as (tensor -> consumer slot), control edges apart.

Every edit goes through `Graph`, which keeps the NodeDef protos, the name and op-type indexes and
the consumer index in step, so that editing one end of an edge updates the other and lookups of a
tensor's consumers stay O(1) without rebuilding anything. The consumer index lives on the
producing Node (`(port, consumer Node, slot)` per data edge, the control consumers beside them):
a node's readers cost O(degree) and no lookup by name. Edges whose producer does not exist (yet)
wait in a side table until a node of that name is attached.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from surgery.errors import GraphError
from surgery.ir.gc_pause import gc_paused
from surgery.ir.node import (
    Edge,
    HeldNode,
    Node,
    edge_order,
    interned_op,
    port_edge_order,
    pos_of,
    split_inputs,
)
from surgery.ir.ports import TensorLike, TensorRef, as_tensor, control_name
from surgery.ir.protos import GraphDef, NodeDef
from surgery.ir.wire import GRAPHDEF_NODE_KEY, varint


class Graph:
    """A TensorFlow GraphDef as an editable graph; the function library and versions ride along.

    `Graph(graph_def)` takes ownership of `graph_def` (its NodeDefs become the nodes' protos);
    pass a copy if the caller keeps using it. A loader that made the NodeDefs may pass what it
    knows of them, in their order: `names` (each one's name) and `inputs` (each one's data
    inputs as `split_inputs` parses them, None where not given or where it has control inputs)
    saves reading the names back from the protos and parsing the inputs (the ONNX loader). It
    may also keep most NodeDefs as the wire bytes it wrote: `wires` has each node's bytes (and
    `ops` its op), or None for the next NodeDef of `graph_def`; those nodes are parsed only when
    something reads their NodeDef (see `Node`).
    """

    def __init__(
        self, graph_def: GraphDef | None = None, *, names: list[str] | None = None,
        inputs: list[list[TensorRef] | None] | None = None,
        wires: list[bytes | None] | None = None, ops: list[str] | None = None,
    ):  # fmt: skip
        """A graph of `graph_def`'s nodes (or of `wires`); see the class docstring."""
        self._nodes: dict[str, Node] = {}
        self._by_op: dict[str, dict[str, None]] = {}
        self._indexed = False  # consumer index (Node._users, Node._cusers) built on first query
        self._orphans: dict[str, list[Edge]] = {}  # data edges from names not in the graph
        self._corphans: dict[str, dict[Node, None]] = {}  # control edges from such names
        self._next_pos = 0  # insertion counter (Node.pos): orders consumers as the graph does
        self._base = graph_def if graph_def is not None else GraphDef()
        # node list still exactly the base's: save it without copying
        self._base_intact = wires is None
        # Added nodes' NodeDefs, and those parsed from bytes, live in one message (one protobuf
        # arena, where a NodeDef of its own takes a 1.5 KB arena block); nothing reads this
        # GraphDef as a graph.
        self._pool = GraphDef()
        if graph_def is not None:
            self._load(graph_def, names, inputs, wires, ops)

    def __del__(self) -> None:
        """Drop the consumer index: a while loop's edges make its nodes a reference cycle,
        which reference counting cannot free (and `gc_paused` may have frozen them out of the
        cyclic GC's reach), and each node's proto keeps the whole GraphDef alive."""
        for node in self._nodes.values():
            node._users = node._cusers = None
        self._orphans.clear()
        self._corphans.clear()

    # ---------------------------------------------------------------- building and saving
    def _load(
        self, graph_def: GraphDef, names: list[str] | None,
        inputs: list[list[TensorRef] | None] | None, wires: list[bytes | None] | None,
        ops: list[str] | None,
    ) -> None:  # fmt: skip
        """Make the nodes, in order, and index them by name and op (see `__init__`)."""
        nodes, by_op, pool = self._nodes, self._by_op, self._pool
        protos = graph_def.node
        count = len(protos) if wires is None else len(wires)
        if names is not None and (len(names) != count or inputs is None or len(inputs) != count):
            raise GraphError(
                f"Graph: {count} nodes, but {len(names)} names and "
                f"{len(inputs) if inputs is not None else 'no'} input lists given (one each)"
            )
        if wires is not None and (names is None or ops is None or len(ops) != count
                                  or wires.count(None) != len(protos)):  # fmt: skip
            raise GraphError(
                f"Graph: {count} nodes given as bytes or NodeDefs need a name and an op each, "
                f"and a NodeDef for each of the {wires.count(None)} not given as bytes "
                f"({len(protos)} given)"
            )
        eager, op_of = iter(protos), ops or []
        with gc_paused(count):
            for index in range(count):
                wire = wires[index] if wires is not None else None
                if names is None or inputs is None:
                    proto = next(eager)
                    node = Node(proto, proto.name)
                else:
                    ins = inputs[index]
                    ctl = None if ins is None else ()
                    if wire is None:
                        node = Node(next(eager), names[index], ins, ctl)
                    else:
                        node = HeldNode(wire, pool, names[index], op_of[index], ins, ctl)
                name = node.name
                if nodes.setdefault(name, node) is not node:  # one lookup, not two
                    raise GraphError(f"duplicate node name {name!r}")
                node.pos = index
                same_op = by_op.get(node.op)
                if same_op is None:
                    by_op[node.op] = {name: None}
                else:
                    same_op[name] = None
        self._next_pos = len(nodes)

    def _index(self) -> None:
        """Build the consumer index once (every node's inputs parsed); edits keep it in step."""
        if self._indexed:
            return
        nodes = self._nodes
        with gc_paused(len(nodes)):
            for node in nodes.values():
                if node._ins is None:
                    node._ins, node._ctl = split_inputs(node.proto.input, nodes)
                self._link_all(node)
        self._indexed = True

    def _link_all(self, node: Node) -> None:
        for slot, ref in enumerate(node._inputs):
            self._link(ref, node, slot)
        for src in node._controls:
            self._link_control(src, node)

    def _edges(self, name: str) -> list[Edge]:
        """Data edges reading any output of node `name` (which need not exist), unordered."""
        self._index()
        node = self._nodes.get(name)
        users = node._users if node is not None else self._orphans.get(name)
        return users if users is not None else []

    def _control_edges(self, name: str) -> dict[Node, None]:
        """Nodes with a control dependency on node `name` (which need not exist), unordered."""
        self._index()
        node = self._nodes.get(name)
        users = node._cusers if node is not None else self._corphans.get(name)
        return users if users is not None else {}

    def _attach(self, proto: NodeDef, node: Node | None = None, pos: int | None = None) -> Node:
        name = proto.name
        if name in self._nodes:
            raise GraphError(f"duplicate node name {name!r}")
        if node is None:
            node = Node(proto, name)
        self._base_intact = False
        self._nodes[name] = node
        if pos is None:
            pos = self._next_pos
            self._next_pos += 1
        node.pos = pos
        self._by_op.setdefault(node.op, {})[name] = None
        if self._indexed:
            # edges that waited for a node of this name are now its readers
            node._users = self._orphans.pop(name, None) if self._orphans else None
            node._cusers = self._corphans.pop(name, None) if self._corphans else None
            self._link_all(node)
        return node

    def _header_copy(self) -> GraphDef:
        out = GraphDef()
        for field, value in self._base.ListFields():
            if field.name == "node":
                continue
            if field.message_type is not None:
                getattr(out, field.name).CopyFrom(value)
            else:
                setattr(out, field.name, value)
        return out

    def to_graph_def(self) -> GraphDef:
        """A new GraphDef: header fields (versions, library) as loaded, nodes in graph order."""
        if self._base_intact:
            out = GraphDef()
            out.CopyFrom(self._base)
            return out
        out = self._header_copy()
        out.node.extend(node.proto for node in self._nodes.values())
        return out

    def serialize(self) -> bytes:
        """Deterministic wire bytes (sorted maps); no copy when no node was added or removed."""
        if self._base_intact:
            return self._base.SerializeToString(deterministic=True)
        return b"".join(self.serialize_chunks())

    def serialize_chunks(self) -> Iterator[bytes]:
        """`serialize()` as pieces made as they are written, one node at a time: each piece's
        memory is freed before the next is made and so reused, where a list of them all would
        fault in a fresh copy of the model (0.05-0.4 s for 100 MiB, most with huge pages)."""
        if self._base_intact:
            yield self._base.SerializeToString(deterministic=True)
            return
        # Deterministic serialisation writes fields in number order and `node` is field 1, so
        # the nodes' bytes followed by the header's bytes equal serialising a merged GraphDef,
        # without copying every NodeDef into a new message first.
        for node in self._nodes.values():
            body = node.proto.SerializeToString(deterministic=True)
            yield GRAPHDEF_NODE_KEY + varint(len(body))
            yield body
        yield self._header_copy().SerializeToString(deterministic=True)

    @property
    def library(self) -> Any:
        """The GraphDef's function library (FunctionDefLibrary), kept intact on round trip."""
        return self._base.library

    def _repr_html_(self) -> str:
        """Jupyter: the graph drawn inline (see `surgery.views.visualize.notebook_html`)."""
        from surgery.views.visualize import notebook_html

        return notebook_html(self)

    def copy(self) -> Graph:
        return Graph(self.to_graph_def())

    # ---------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    @property
    def names(self) -> list[str]:
        return list(self._nodes)

    def get(self, name: str) -> Node | None:
        return self._nodes.get(name)

    def node(self, name: str) -> Node:
        """The node called `name`; an unknown name raises with the closest existing names."""
        node = self._nodes.get(name)
        if node is None:
            raise GraphError(f"no node named {name!r}{self._did_you_mean(name)}")
        return node

    def _did_you_mean(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._nodes.keys(), n=3, cutoff=0.75)
        return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""

    def nodes_by_op(self, *ops: str) -> list[Node]:
        """Nodes whose op is one of `ops`, in graph order within each op."""
        return [self._nodes[n] for op in ops for n in self._by_op.get(op, ())]

    def op_types(self) -> dict[str, int]:
        return {op: len(names) for op, names in self._by_op.items() if names}

    def consumers(self, tensor: TensorLike) -> list[tuple[Node, int]]:
        """(consumer, input slot) for every data edge reading `tensor`, in graph order."""
        name, port = tensor if isinstance(tensor, TensorRef) else as_tensor(tensor)
        edges = self._edges(name)
        if not edges:
            return []
        users = [e for e in edges if e[0] == port]
        if len(users) > 1:
            users.sort(key=edge_order)
        return [(e[1], e[2]) for e in users]

    def consumer_count(self, tensor: TensorLike) -> int:
        """How many data edges read `tensor` (no sorting)."""
        name, port = tensor if isinstance(tensor, TensorRef) else as_tensor(tensor)
        return sum(1 for e in self._edges(name) if e[0] == port)

    def is_read(self, name: str) -> bool:
        """Whether any node reads an output of `name` (data or control)."""
        return bool(self._edges(name)) or bool(self._control_edges(name))

    def position(self, name: str) -> int:
        """Graph-order key of node `name` (larger for nodes added later); orders matches."""
        return self._nodes[name].pos

    def control_consumers(self, name: str) -> list[Node]:
        """Nodes holding a control dependency on node `name`."""
        return sorted(self._control_edges(name), key=pos_of)

    def used_ports(self, name: str, num_ports_hint: int = 8) -> list[int]:
        """Output ports of `name` that some node reads, ascending (`num_ports_hint` is unused:
        the index knows every port)."""
        edges = self._edges(name)
        if not edges:
            return []
        if len(edges) == 1:
            return [edges[0][0]]
        return sorted({e[0] for e in edges})

    def readers(self, name: str) -> list[Node]:
        """Every node reading any output of `name`, data (by port, then graph order) then
        control, without duplicates."""
        edges = self._edges(name)
        seen: dict[Node, None] = {}
        if len(edges) == 1:
            seen[edges[0][1]] = None
        elif edges:
            for edge in sorted(edges, key=port_edge_order):
                seen[edge[1]] = None
        controls = self._control_edges(name)
        if controls:
            seen.update(controls)
        return list(seen)

    def consumer_names(self, name: str) -> list[str]:
        """Names of `readers(name)`."""
        return [n.name for n in self.readers(name)]

    def producers(self, name: str) -> list[Node]:
        """Existing nodes that `name` reads from, data then control, without duplicates."""
        node = self.node(name)
        seen: dict[str, None] = {}
        for ref in node._inputs:
            seen[ref.node] = None
        for src in node._controls:
            seen[src] = None
        return [self._nodes[n] for n in seen if n in self._nodes]

    def graph_inputs(self) -> list[Node]:
        return self.nodes_by_op("Placeholder", "PlaceholderWithDefault")

    def graph_outputs(self) -> list[Node]:
        """Nodes nothing reads from (neither data nor control), in graph order."""
        self._index()
        return [n for n in self._nodes.values() if not n._users and not n._cusers]

    # ---------------------------------------------------------------- node edits
    def add_node(
        self,
        name: str,
        op: str,
        inputs: Iterable[TensorLike] = (),
        controls: Iterable[str] = (),
        attrs: Mapping[str, Any] | None = None,
        device: str = "",
    ) -> Node:
        """Create a node. `attrs` maps names to AttrValue protos (see `surgery.ir.attrs`)."""
        if name in self._nodes:
            raise GraphError(f"a node named {name!r} already exists")
        if not name:
            raise GraphError(f"a {op or 'node'} without a name cannot be added")
        refs = [t if type(t) is TensorRef else as_tensor(t) for t in inputs]
        ctl = tuple(dict.fromkeys(controls))
        texts = [t[0] if t[1] == 0 else f"{t[0]}:{t[1]}" for t in refs]
        texts.extend("^" + c for c in ctl)
        proto = self._pool.node.add(name=name, op=op, device=device, input=texts)
        for key, value in (attrs or {}).items():
            proto.attr[key].CopyFrom(value)
        return self._attach(proto, Node(proto, name, refs, ctl))

    def add_proto(self, proto: NodeDef) -> Node:
        """Insert a copy of a NodeDef (inputs parsed as ports and control edges)."""
        if not proto.name:
            raise GraphError(f"a {proto.op or 'node'} without a name cannot be added")
        if proto.name in self._nodes:
            raise GraphError(f"a node named {proto.name!r} already exists")
        own = self._pool.node.add()
        own.CopyFrom(proto)
        return self._attach(own)

    def remove_nodes(self, names: Iterable[str], *, drop_controls: bool = True) -> None:
        """Remove nodes; refuse if a surviving node still reads one of their tensors.

        Control edges from removed nodes to survivors are dropped (they ordered work that no
        longer exists) unless `drop_controls` is False, in which case they are refused as well.
        """
        self._take(names, drop_controls=drop_controls)

    def _take(
        self, names: Iterable[str], *, drop_controls: bool = True, readers_ok: Any = ()
    ) -> tuple[list[Node], list[tuple[str, str]]]:
        """`remove_nodes`, returning what `_restore` needs: the removed Nodes (each keeps its
        position) and the dropped control edges (user, source). Survivors may keep reading the
        nodes named in `readers_ok` (a node of the same name replaces it at once: their edges
        stay)."""
        doomed = {name: self.node(name) for name in names}
        self._index()
        for name, node in doomed.items():
            edges = node._users
            if edges and name not in readers_ok and any(e[1].name not in doomed for e in edges):
                for port, user, slot in sorted(edges, key=port_edge_order):
                    if user.name not in doomed:
                        raise GraphError(
                            f"cannot remove {name!r}: {user.name!r} still reads "
                            f"{TensorRef(name, port)} at input {slot}"
                        )
            if not drop_controls and node._cusers:
                for user in node._cusers:
                    if user.name not in doomed:
                        raise GraphError(
                            f"cannot remove {name!r}: ^{name} is a control input of "
                            f"{user.name!r}"
                        )
        dropped: list[tuple[str, str]] = []
        for name, node in doomed.items():
            if node._cusers:
                for user in sorted(node._cusers, key=pos_of):
                    if user.name not in doomed:
                        self.remove_control(user.name, name)
                        dropped.append((user.name, name))
        taken = [self._detach(name) for name in doomed]
        return taken, dropped

    def _restore(self, taken: list[Node], dropped: list[tuple[str, str]]) -> None:
        """Undo `_take`: put the very nodes back at their old positions, then their controls."""
        for node in taken:
            self._attach(node.proto, node, node.pos)
        if taken:
            self._reorder()
        for user, src in dropped:
            self.add_control(user, src)

    def _reorder(self) -> None:
        """Graph order (node dict, op index) by position again after nodes were put back."""
        nodes = self._nodes
        self._nodes = {n.name: n for n in sorted(nodes.values(), key=pos_of)}
        for op, names in self._by_op.items():
            self._by_op[op] = dict.fromkeys(sorted(names, key=self.position))

    def _detach(self, name: str) -> Node:
        self._base_intact = False
        node = self._nodes.pop(name)
        self._by_op[node.op].pop(name, None)
        if self._indexed:
            for slot, ref in enumerate(node._inputs):
                self._unlink(ref, node, slot)
            for src in node._controls:
                self._unlink_control(src, node)
            # survivors still reading the name wait for the next node of that name
            if node._users:
                self._orphans[name] = node._users
            if node._cusers:
                self._corphans[name] = node._cusers
            node._users = node._cusers = None
        return node

    def _link(self, ref: TensorRef, user: Node, slot: int) -> None:
        producer = self._nodes.get(ref[0])
        edge = (ref[1], user, slot)
        if producer is not None:
            users = producer._users
            if users is None:
                producer._users = [edge]
            else:
                users.append(edge)
        else:
            self._orphans.setdefault(ref[0], []).append(edge)

    def _unlink(self, ref: TensorRef, user: Node, slot: int) -> None:
        producer = self._nodes.get(ref[0])
        users = producer._users if producer is not None else self._orphans.get(ref[0])
        if users is None:
            return
        try:
            users.remove((ref[1], user, slot))
        except ValueError:
            return
        if not users:
            if producer is not None:
                producer._users = None
            else:
                del self._orphans[ref[0]]

    def _link_control(self, src: str, user: Node) -> None:
        producer = self._nodes.get(src)
        if producer is not None:
            users = producer._cusers
            if users is None:
                producer._cusers = {user: None}
            else:
                users[user] = None
        else:
            self._corphans.setdefault(src, {})[user] = None

    def _unlink_control(self, src: str, user: Node) -> None:
        producer = self._nodes.get(src)
        users = producer._cusers if producer is not None else self._corphans.get(src)
        if users is None:
            return
        users.pop(user, None)
        if not users:
            if producer is not None:
                producer._cusers = None
            else:
                del self._corphans[src]

    def set_op(self, name: str, op: str) -> None:
        node = self.node(name)
        self._by_op[node.op].pop(name, None)
        node.proto.op = op
        node.op = interned_op(op)
        self._by_op.setdefault(op, {})[name] = None

    # ---------------------------------------------------------------- edge edits
    def set_inputs(
        self, name: str, inputs: Iterable[TensorLike], controls: Iterable[str] | None = None
    ) -> None:
        """Replace the data inputs (and, if given, the control inputs) of node `name`."""
        node = self.node(name)
        new_data = [as_tensor(t) for t in inputs]
        indexed = self._indexed
        if indexed:
            for slot, ref in enumerate(node._inputs):
                self._unlink(ref, node, slot)
        node._inputs = new_data
        if indexed:
            for slot, ref in enumerate(new_data):
                self._link(ref, node, slot)
        if controls is not None:
            if indexed:
                for src in node._controls:
                    self._unlink_control(src, node)
            node._controls = tuple(dict.fromkeys(controls))
            if indexed:
                for src in node._controls:
                    self._link_control(src, node)
        self._sync(node)

    def set_input(self, name: str, slot: int, tensor: TensorLike) -> None:
        """Point input `slot` of `name` at `tensor`."""
        node = self.node(name)
        if not 0 <= slot < len(node._inputs):
            raise GraphError(
                f"{name!r} has {len(node._inputs)} data inputs; slot {slot} is out of range"
            )
        ref = as_tensor(tensor)
        if self._indexed:
            self._unlink(node._inputs[slot], node, slot)
            self._link(ref, node, slot)
        node._inputs[slot] = ref
        if node._proto is not None:  # else written when its bytes are parsed
            node._proto.input[slot] = str(ref)

    def insert_input(self, name: str, slot: int, tensor: TensorLike) -> None:
        inputs = list(self.node(name)._inputs)
        inputs.insert(slot, as_tensor(tensor))
        self.set_inputs(name, inputs)

    def remove_input(self, name: str, slot: int) -> TensorRef:
        inputs = list(self.node(name)._inputs)
        if not 0 <= slot < len(inputs):
            raise GraphError(f"{name!r} has {len(inputs)} data inputs; slot {slot} is out of range")
        removed = inputs.pop(slot)
        self.set_inputs(name, inputs)
        return removed

    def add_control(self, name: str, source: str) -> None:
        """Make node `name` depend on node `source` (a control input; nothing if it has it)."""
        node = self.node(name)
        if source in node._controls:
            return
        node._controls = (*node._controls, source)
        if self._indexed:
            self._link_control(source, node)
        if node._proto is not None:  # else written when its bytes are parsed
            node._proto.input.append(control_name(source))

    def remove_control(self, name: str, source: str) -> None:
        node = self.node(name)
        if source not in node._controls:
            raise GraphError(f"{name!r} has no control input ^{source}")
        self.set_inputs(name, node._inputs, [c for c in node._controls if c != source])

    def replace_uses(
        self, old: TensorLike, new: TensorLike, *, exclude: Iterable[str] = ()
    ) -> int:
        """Rewire every consumer of tensor `old` (but those in `exclude`) to `new`; count them."""
        old_ref, new_ref = as_tensor(old), as_tensor(new)
        skip = set(exclude)
        moved = 0
        for user, slot in self.consumers(old_ref):
            if user.name in skip:
                continue
            self.set_input(user.name, slot, new_ref)
            moved += 1
        return moved

    def replace_control_uses(self, old: str, new: str, *, exclude: Iterable[str] = ()) -> int:
        """Move control dependencies on node `old` to node `new`."""
        skip = set(exclude)
        moved = 0
        for node in list(self._control_edges(old)):
            if node.name in skip:
                continue
            controls = [new if c == old else c for c in node._controls]
            self.set_inputs(node.name, node._inputs, controls)
            moved += 1
        return moved

    def _sync(self, node: Node) -> None:
        """The NodeDef's input fields from the node's edges (a node still held as bytes gets
        them when they are parsed)."""
        if node._proto is None:
            return
        proto_inputs = node._proto.input
        del proto_inputs[:]
        proto_inputs.extend(str(ref) for ref in node._inputs)
        proto_inputs.extend(control_name(c) for c in node._controls)

    # ---------------------------------------------------------------- whole-graph checks
    def topological_order(self) -> list[str]:
        """Node names, producers before consumers (graph order breaks ties); cycles raise. A
        while loop's NextIteration -> Merge back edge orders nothing (TF1 control flow)."""
        nodes = self._nodes
        indegree = {}
        for name, node in nodes.items():
            preds = {r.node for r in node._inputs if r.node in nodes}
            preds.update(c for c in node._controls if c in nodes)
            if node.op == "Merge":
                preds = {p for p in preds if nodes[p].op != "NextIteration"}
            indegree[name] = len(preds)
        ready = [n for n, d in indegree.items() if d == 0]
        ready.reverse()
        order: list[str] = []
        while ready:
            name = ready.pop()
            order.append(name)
            fresh = []
            back = nodes[name].op == "NextIteration"
            for user in self.consumer_names(name):
                if back and nodes[user].op == "Merge":
                    continue
                indegree[user] -= 1
                if indegree[user] == 0:
                    fresh.append(user)
            ready.extend(reversed(fresh))
        if len(order) != len(nodes):
            stuck = [n for n, d in indegree.items() if d > 0]
            raise GraphError(f"graph has a cycle through {', '.join(stuck[:8])}")
        return order

    def dangling_inputs(self) -> list[tuple[str, str]]:
        """(node, input) pairs whose source node does not exist."""
        nodes = self._nodes
        bad: list[tuple[str, str]] = []
        for name, node in nodes.items():
            bad.extend((name, str(r)) for r in node._inputs if r.node not in nodes)
            bad.extend((name, "^" + c) for c in node._controls if c not in nodes)
        return bad

    def check(self) -> None:
        """Raise GraphError if an input is dangling or the graph has a cycle."""
        bad = self.dangling_inputs()
        if bad:
            shown = "; ".join(f"{n} reads missing {i}" for n, i in bad[:5])
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise GraphError(f"dangling inputs: {shown}{more}")
        self.topological_order()
