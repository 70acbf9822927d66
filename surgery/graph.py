"""Graph IR: nodes addressed by name, edges as (tensor -> consumer slot), control edges apart.

Every edit goes through `Graph`, which keeps the NodeDef protos, the name and op-type indexes and
the consumer index in step, so that editing one end of an edge updates the other and lookups of a
tensor's consumers stay O(1) without rebuilding anything. The consumer index is keyed by producer
node: `(port, consumer, slot)` per data edge, so a node's used ports and consumers cost O(degree).
"""

from __future__ import annotations

import contextlib
import difflib
import gc
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from surgery.errors import GraphError
from surgery.ports import TensorLike, TensorRef, as_tensor, control_name
from surgery.protos import GraphDef, NodeDef

_new_ref = tuple.__new__
_NO_RANK = float("nan")  # a Node's rank before the engine ranks it (compares false to all)


_NODE_TAG = b"\x0a"  # GraphDef.node: field 1, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_FREEZE_AFTER = 1_000_000  # tracked objects made during a pause that are worth freezing


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Bulk construction of millions of objects: pause the cyclic GC (it would rescan them all).

    When the pause made more than `_FREEZE_AFTER` tracked objects (a graph of about 100k nodes
    or more), they are moved to the permanent generation (`gc.freeze`) before the GC resumes:
    the graph's objects hold no reference cycles, so scanning them could free nothing, and at a
    million nodes the scans of the young generations would otherwise cost 7 s each. They are
    still freed by reference counting. (`gc.unfreeze` is never called: handing them back to the
    oldest generation crashes TensorRT's plugin registration later in the process.)
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_count()[0] > _FREEZE_AFTER:
                gc.freeze()
            gc.enable()


def _split_inputs(texts: Iterable[str]) -> tuple[list[TensorRef], tuple[str, ...]]:
    """NodeDef input strings -> (data tensors in slot order, control sources)."""
    data: list[TensorRef] = []
    controls: list[str] = []
    for text in texts:
        if ":" not in text and text[:1] != "^":  # the common case: port 0 by name
            data.append(_new_ref(TensorRef, (text, 0)))
            continue
        if text[:1] == "^":
            controls.append(text[1:])
            continue
        cut = text.rfind(":")
        if cut > 0 and text[cut + 1 :].isdigit():
            data.append(_new_ref(TensorRef, (text[:cut], int(text[cut + 1 :]))))
        else:
            data.append(_new_ref(TensorRef, (text, 0)))
    return data, tuple(controls) if controls else ()  # (): one shared empty tuple


def _pos_of(node: Node) -> int:
    return node.pos


class Node:
    """One NodeDef. Read edges here; change them through the owning `Graph`.

    Input strings are parsed into ports on first use, so that loading a large graph only to
    save it again costs no parsing. The node's graph position and the engine's topological rank
    live on the node itself (not in name-keyed tables: at a million nodes every such lookup is
    a cache miss).
    """

    __slots__ = ("proto", "name", "pos", "rank", "_ins", "_ctl")

    def __init__(
        self, proto: NodeDef, name: str,
        ins: list[TensorRef] | None = None, ctl: tuple[str, ...] | None = None,
    ):  # fmt: skip
        self.proto = proto
        self.name = name  # proto.name, read once (each read of it makes a new str)
        self.pos: int = -1  # graph-order key, set by the owning Graph
        self.rank: float = _NO_RANK  # topological rank, kept by the engine's `Ranks`
        self._ins: list[TensorRef] | None = ins
        self._ctl: tuple[str, ...] | None = ctl  # a tuple: edits replace it, never mutate it

    def _parse(self) -> None:
        if self._ins is None:
            self._ins, self._ctl = _split_inputs(self.proto.input)

    @property
    def _inputs(self) -> list[TensorRef]:
        ins = self._ins
        if ins is None:
            self._parse()
            ins = self._ins
        return ins  # type: ignore[return-value]

    @_inputs.setter
    def _inputs(self, value: list[TensorRef]) -> None:
        self._parse()  # parse before one half is replaced
        self._ins = value

    @property
    def _controls(self) -> tuple[str, ...]:
        ctl = self._ctl
        if ctl is None:
            self._parse()
            ctl = self._ctl
        return ctl  # type: ignore[return-value]

    @_controls.setter
    def _controls(self, value: tuple[str, ...]) -> None:
        self._parse()
        self._ctl = value

    @property
    def op(self) -> str:
        return self.proto.op

    @property
    def device(self) -> str:
        return self.proto.device

    @property
    def attr(self) -> Any:
        """The NodeDef's attribute map (attribute edits do not touch edges)."""
        return self.proto.attr

    @property
    def inputs(self) -> tuple[TensorRef, ...]:
        """Data inputs in slot order."""
        return tuple(self._inputs)

    @property
    def controls(self) -> tuple[str, ...]:
        """Names of the nodes this one has a control dependency on."""
        return self._controls

    def output(self, port: int = 0) -> TensorRef:
        return TensorRef(self.name, port)

    def __repr__(self) -> str:
        ins = ", ".join(str(t) for t in self._inputs)
        ctl = "".join(f", ^{c}" for c in self._controls)
        return f"<Node {self.name} = {self.op}({ins}{ctl})>"


class Graph:
    """A TensorFlow GraphDef as an editable graph; the function library and versions ride along.

    `Graph(graph_def)` takes ownership of `graph_def` (its NodeDefs become the nodes' protos);
    pass a copy if the caller keeps using it.
    """

    def __init__(self, graph_def: GraphDef | None = None):
        self._nodes: dict[str, Node] = {}
        self._by_op: dict[str, dict[str, None]] = {}
        self._edge_index: tuple[dict, dict] | None = None  # built on first edge query
        self._next_pos = 0  # insertion counter (Node.pos): orders consumers as the graph does
        self._base = graph_def if graph_def is not None else GraphDef()
        self._base_intact = True  # node list still exactly the base's: save it without copying
        # Added nodes' NodeDefs live in one message (one protobuf arena, where a NodeDef of its
        # own takes a 1.5 KB arena block); nothing reads this GraphDef as a graph.
        self._pool = GraphDef()
        if graph_def is not None:
            self._load(graph_def)

    # ---------------------------------------------------------------- building and saving
    def _load(self, graph_def: GraphDef) -> None:
        nodes, by_op = self._nodes, self._by_op
        with _gc_paused():
            for index, proto in enumerate(graph_def.node):
                name = proto.name
                node = Node(proto, name)
                if nodes.setdefault(name, node) is not node:  # one lookup, not two
                    raise GraphError(f"duplicate node name {name!r}")
                node.pos = index
                names = by_op.get(proto.op)
                if names is None:
                    by_op[proto.op] = {name: None}
                else:
                    names[name] = None
        self._next_pos = len(nodes)

    def _index(self) -> tuple[dict[str, list[tuple[int, str, int]]], dict[str, dict[str, None]]]:
        """(data edges by producer node as (port, consumer, slot), control consumers by node),
        built once, then kept in step."""
        if self._edge_index is None:
            consumers: dict[str, list[tuple[int, str, int]]] = {}
            controls: dict[str, dict[str, None]] = {}
            with _gc_paused():
                for name, node in self._nodes.items():
                    for slot, ref in enumerate(node._inputs):
                        users = consumers.get(ref[0])
                        if users is None:
                            consumers[ref[0]] = [(ref[1], name, slot)]
                        else:
                            users.append((ref[1], name, slot))
                    for src in node._controls:
                        users_c = controls.get(src)
                        if users_c is None:
                            controls[src] = {name: None}
                        else:
                            users_c[name] = None
            self._edge_index = (consumers, controls)
        return self._edge_index

    @property
    def _consumers(self) -> dict[str, list[tuple[int, str, int]]]:
        return self._index()[0]

    @property
    def _control_consumers(self) -> dict[str, dict[str, None]]:
        return self._index()[1]

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
        self._by_op.setdefault(proto.op, {})[name] = None
        if self._edge_index is not None:
            consumers, controls = self._edge_index
            for slot, ref in enumerate(node._inputs):
                users = consumers.get(ref[0])
                if users is None:
                    consumers[ref[0]] = [(ref[1], name, slot)]
                else:
                    users.append((ref[1], name, slot))
            for src in node._controls:
                controls.setdefault(src, {})[name] = None
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
        # Deterministic serialisation writes fields in number order and `node` is field 1, so
        # the nodes' bytes followed by the header's bytes equal serialising a merged GraphDef,
        # without copying every NodeDef into a new message first.
        parts = []
        for node in self._nodes.values():
            body = node.proto.SerializeToString(deterministic=True)
            parts.append(_NODE_TAG + _varint(len(body)))
            parts.append(body)
        parts.append(self._header_copy().SerializeToString(deterministic=True))
        return b"".join(parts)

    @property
    def library(self) -> Any:
        """The GraphDef's function library (FunctionDefLibrary), kept intact on round trip."""
        return self._base.library

    def _repr_html_(self) -> str:
        """Jupyter: the graph drawn inline (see `surgery.visualize.notebook_html`)."""
        from surgery.visualize import notebook_html

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
        node, port = tensor if isinstance(tensor, TensorRef) else as_tensor(tensor)
        edges = self._index()[0].get(node)
        if not edges:
            return []
        nodes = self._nodes
        users = [(n, slot) for p, n, slot in edges if p == port]
        if len(users) > 1:
            users.sort(key=self._edge_key)
        return [(nodes[n], slot) for n, slot in users]

    def consumer_count(self, tensor: TensorLike) -> int:
        """How many data edges read `tensor` (no sorting, no Node lookups)."""
        node, port = tensor if isinstance(tensor, TensorRef) else as_tensor(tensor)
        edges = self._index()[0].get(node)
        return sum(1 for e in edges if e[0] == port) if edges else 0

    def is_read(self, name: str) -> bool:
        """Whether any node reads an output of `name` (data or control)."""
        consumers, controls = self._index()
        return bool(consumers.get(name)) or bool(controls.get(name))

    def position(self, name: str) -> int:
        """Graph-order key of node `name` (larger for nodes added later); orders matches."""
        return self._nodes[name].pos

    def _edge_key(self, edge: tuple[str, int]) -> tuple[int, int]:
        return self._nodes[edge[0]].pos, edge[1]

    def control_consumers(self, name: str) -> list[Node]:
        """Nodes holding a control dependency on node `name`."""
        nodes = self._nodes
        return sorted((nodes[n] for n in self._control_consumers.get(name, ())), key=_pos_of)

    def used_ports(self, name: str, num_ports_hint: int = 8) -> list[int]:
        """Output ports of `name` that some node reads, ascending (`num_ports_hint` is unused:
        the index knows every port)."""
        edges = self._index()[0].get(name)
        if not edges:
            return []
        if len(edges) == 1:
            return [edges[0][0]]
        return sorted({e[0] for e in edges})

    def consumer_names(self, name: str) -> list[str]:
        """Every node reading any output of `name`, data or control, without duplicates."""
        consumers, controls = self._index()
        edges = consumers.get(name)
        if edges:
            ports = sorted({e[0] for e in edges}) if len(edges) > 1 else [edges[0][0]]
            seen: dict[str, None] = {}
            nodes = self._nodes
            for port in ports:
                users = [(n, s) for p, n, s in edges if p == port]
                if len(users) > 1:
                    users.sort(key=lambda e: (nodes[e[0]].pos, e[1]))
                for n, _ in users:
                    seen[n] = None
        else:
            seen = {}
        users_c = controls.get(name)
        if users_c:
            for consumer in users_c:
                seen[consumer] = None
        return list(seen)

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
        consumers, controls = self._index()
        read = {src for src, users in consumers.items() if users}
        read.update(src for src, users in controls.items() if users)
        return [n for name, n in self._nodes.items() if name not in read]

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
        """Create a node. `attrs` maps names to AttrValue protos (see `surgery.attrs`)."""
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
        doomed = dict.fromkeys(names)
        for name in doomed:
            self.node(name)
        consumers = self._consumers
        for name in doomed:
            edges = consumers.get(name)
            if edges and name not in readers_ok and any(e[1] not in doomed for e in edges):
                position = self.position
                for port, user, slot in sorted(edges, key=lambda e: (e[0], position(e[1]), e[2])):
                    if user not in doomed:
                        raise GraphError(
                            f"cannot remove {name!r}: {user!r} still reads "
                            f"{TensorRef(name, port)} at input {slot}"
                        )
            if not drop_controls:
                for user in self._control_consumers.get(name, ()):
                    if user not in doomed:
                        raise GraphError(
                            f"cannot remove {name!r}: ^{name} is a control input of {user!r}"
                        )
        dropped: list[tuple[str, str]] = []
        for name in doomed:
            users_c = self._control_consumers.get(name)
            if users_c:
                for user in sorted(users_c, key=self.position):
                    if user not in doomed:
                        self.remove_control(user, name)
                        dropped.append((user, name))
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
        self._nodes = {n.name: n for n in sorted(nodes.values(), key=_pos_of)}
        for op, names in self._by_op.items():
            self._by_op[op] = dict.fromkeys(sorted(names, key=self.position))

    def _detach(self, name: str) -> Node:
        self._base_intact = False
        node = self._nodes.pop(name)
        self._by_op[node.op].pop(name, None)
        for slot, ref in enumerate(node._inputs):
            self._unlink(ref, name, slot)
        for src in node._controls:
            users = self._control_consumers.get(src)
            if users is not None:
                users.pop(name, None)
                if not users:
                    del self._control_consumers[src]
        return node

    def _unlink(self, ref: TensorRef, name: str, slot: int) -> None:
        consumers = self._consumers
        users = consumers.get(ref[0])
        if users is None:
            return
        try:
            users.remove((ref[1], name, slot))
        except ValueError:
            return
        if not users:
            del consumers[ref[0]]

    def _link(self, ref: TensorRef, name: str, slot: int) -> None:
        consumers = self._consumers
        users = consumers.get(ref[0])
        if users is None:
            consumers[ref[0]] = [(ref[1], name, slot)]
        else:
            users.append((ref[1], name, slot))

    def set_op(self, name: str, op: str) -> None:
        node = self.node(name)
        self._by_op[node.op].pop(name, None)
        node.proto.op = op
        self._by_op.setdefault(op, {})[name] = None

    # ---------------------------------------------------------------- edge edits
    def set_inputs(
        self, name: str, inputs: Iterable[TensorLike], controls: Iterable[str] | None = None
    ) -> None:
        """Replace the data inputs (and, if given, the control inputs) of node `name`."""
        node = self.node(name)
        new_data = [as_tensor(t) for t in inputs]
        for slot, ref in enumerate(node._inputs):
            self._unlink(ref, name, slot)
        node._inputs = new_data
        for slot, ref in enumerate(new_data):
            self._link(ref, name, slot)
        if controls is not None:
            for src in node._controls:
                users = self._control_consumers.get(src)
                if users is not None:
                    users.pop(name, None)
                    if not users:
                        del self._control_consumers[src]
            node._controls = tuple(dict.fromkeys(controls))
            for src in node._controls:
                self._control_consumers.setdefault(src, {})[name] = None
        self._sync(node)

    def set_input(self, name: str, slot: int, tensor: TensorLike) -> None:
        """Point input `slot` of `name` at `tensor`."""
        node = self.node(name)
        if not 0 <= slot < len(node._inputs):
            raise GraphError(
                f"{name!r} has {len(node._inputs)} data inputs; slot {slot} is out of range"
            )
        ref = as_tensor(tensor)
        self._unlink(node._inputs[slot], name, slot)
        node._inputs[slot] = ref
        self._link(ref, name, slot)
        node.proto.input[slot] = str(ref)

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
        node = self.node(name)
        if source in node._controls:
            return
        node._controls = (*node._controls, source)
        self._control_consumers.setdefault(source, {})[name] = None
        node.proto.input.append(control_name(source))

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
        edges = self._consumers.get(old_ref.node, ())
        for port, user, slot in sorted(edges, key=lambda e: (self.position(e[1]), e[2])):
            if port != old_ref.port or user in skip:
                continue
            self.set_input(user, slot, new_ref)
            moved += 1
        return moved

    def replace_control_uses(self, old: str, new: str, *, exclude: Iterable[str] = ()) -> int:
        """Move control dependencies on node `old` to node `new`."""
        skip = set(exclude)
        moved = 0
        for user in list(self._control_consumers.get(old, ())):
            if user in skip:
                continue
            node = self._nodes[user]
            controls = [new if c == old else c for c in node._controls]
            self.set_inputs(user, node._inputs, controls)
            moved += 1
        return moved

    def _sync(self, node: Node) -> None:
        proto_inputs = node.proto.input
        del proto_inputs[:]
        proto_inputs.extend(str(ref) for ref in node._inputs)
        proto_inputs.extend(control_name(c) for c in node._controls)

    # ---------------------------------------------------------------- whole-graph checks
    def topological_order(self) -> list[str]:
        """Node names, producers before consumers (graph order breaks ties); cycles raise."""
        nodes = self._nodes
        indegree = {}
        for name, node in nodes.items():
            preds = {r.node for r in node._inputs if r.node in nodes}
            preds.update(c for c in node._controls if c in nodes)
            indegree[name] = len(preds)
        ready = [n for n, d in indegree.items() if d == 0]
        ready.reverse()
        order: list[str] = []
        while ready:
            name = ready.pop()
            order.append(name)
            fresh = []
            for user in self.consumer_names(name):
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
