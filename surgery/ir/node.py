"""A graph node: one NodeDef with its parsed inputs and the consumer index the owning `Graph`
keeps on it, and the parsing of NodeDef input strings into ports (`name:port`, `^control`).

Edges are read here and changed only through `surgery.ir.graph.Graph`, which keeps both ends,
the indexes and the protos in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from surgery.errors import GraphError
from surgery.ir.ports import TensorRef, control_name
from surgery.ir.protos import GraphDef, NodeDef

_new_ref = tuple.__new__
_OPS: dict[str, str] = {}  # one string object per op type, shared by its nodes
NO_RANK = float("nan")  # a Node's rank before the engine ranks it (compares false to all)


def interned_op(op: str) -> str:
    """The one string object of op type `op` that every node of that type shares."""
    return _OPS.setdefault(op, op)


def split_inputs(
    texts: Iterable[str], nodes: dict[str, Node] | None = None
) -> tuple[list[TensorRef], tuple[str, ...]]:
    """NodeDef input strings -> (data tensors in slot order, control sources). With `nodes`,
    a name of an existing node is that node's own name object (one string per node, not one
    per edge; lookups by it then compare by identity)."""
    data: list[TensorRef] = []
    controls: list[str] = []
    for text in texts:
        port = 0
        control = text[:1] == "^"
        if control:
            name = text[1:]
        elif ":" not in text:  # the common case: port 0 by name
            name = text
        else:
            cut = text.rfind(":")
            if cut > 0 and text[cut + 1 :].isdigit():
                name, port = text[:cut], int(text[cut + 1 :])
            else:
                name = text
        if nodes is not None:
            producer = nodes.get(name)
            if producer is not None:
                name = producer.name
        if control:
            controls.append(name)
        else:
            data.append(_new_ref(TensorRef, (name, port)))
    return data, tuple(controls) if controls else ()  # (): one shared empty tuple


Edge = tuple[int, "Node", int]  # (output port, consumer, input slot)


def pos_of(node: Node) -> int:
    """Sort key: the node's position in graph order."""
    return node.pos


def edge_order(edge: Edge) -> tuple[int, int]:
    """Sort key: an edge's consumer in graph order, then its input slot."""
    return edge[1].pos, edge[2]


def port_edge_order(edge: Edge) -> tuple[int, int, int]:
    """Sort key: an edge's output port, then its consumer in graph order and input slot."""
    return edge[0], edge[1].pos, edge[2]


class Node:
    """One NodeDef. Read edges here; change them through the owning `Graph`.

    Input strings are parsed into ports on first use, so that loading a large graph only to
    save it again costs no parsing. The node's name, op, graph position, readers (the consumer
    index) and the engine's topological rank live on the node itself, not in name-keyed tables:
    at a million nodes every such lookup is a cache miss. A node may also be held as its
    NodeDef's bytes until something reads its NodeDef (`HeldNode`).
    """

    __slots__ = ("_proto", "name", "op", "pos", "rank", "_ins", "_ctl", "_users", "_cusers")

    def __init__(
        self, proto: NodeDef | None, name: str,
        ins: list[TensorRef] | None = None, ctl: tuple[str, ...] | None = None, op: str = "",
    ):  # fmt: skip
        """A node of NodeDef `proto` (None only for a `HeldNode`, whose op is `op`)."""
        self._proto = proto
        self.name = name  # proto.name, read once (each read of it makes a new str)
        if proto is not None:
            op = proto.op
        self.op: str = interned_op(op)  # proto.op, kept in step by Graph.set_op
        self.pos: int = -1  # graph-order key, set by the owning Graph
        self.rank: float = NO_RANK  # topological rank, kept by the engine's `Ranks`
        self._ins: list[TensorRef] | None = ins
        self._ctl: tuple[str, ...] | None = ctl  # a tuple: edits replace it, never mutate it
        self._users: list[Edge] | None = None  # data edges reading this node (Graph-kept)
        self._cusers: dict[Node, None] | None = None  # nodes with a control edge from this one

    @property
    def proto(self) -> NodeDef:
        """The NodeDef (a `HeldNode` parses its bytes on first read)."""
        proto = self._proto
        if proto is None:
            proto = self._parse_held()
        return proto

    def _parse_held(self) -> NodeDef:
        """The NodeDef of a node held as bytes, parsed (see `HeldNode`)."""
        raise GraphError(f"node {self.name!r} has no NodeDef")

    def unparsed(self) -> bytes | None:
        """The NodeDef bytes a `HeldNode` still holds unparsed (None for any other node)."""
        return None

    def _parse(self) -> None:
        if self._ins is None:
            self._ins, self._ctl = split_inputs(self.proto.input)

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


class HeldNode(Node):
    """A node a loader gave the wire bytes of its NodeDef, with its op and inputs, and the
    GraphDef whose arena will hold it: `proto` parses them when first read, and until then
    edits of its inputs change only `inputs` and `controls` (the NodeDef's input fields are
    written from them when it is parsed). So a million-node model that is loaded, edited here
    and there and saved never has most of its NodeDefs parsed: the saver reads their attrs from
    the bytes (`unparsed`)."""

    __slots__ = ("_wire", "_pool")

    def __init__(
        self, wire: bytes, pool: GraphDef, name: str, op: str,
        ins: list[TensorRef] | None, ctl: tuple[str, ...] | None,
    ):  # fmt: skip
        """Node `name` of op `op`, held as NodeDef bytes `wire` until parsed into `pool`."""
        super().__init__(None, name, ins, ctl, op)
        self._wire: bytes | None = wire  # the serialized NodeDef while it is not parsed
        self._pool: GraphDef | None = pool  # where it is parsed into

    def _parse_held(self) -> NodeDef:
        """Parse the bytes into the pool; the input fields are written from `_ins` and `_ctl`
        where those are known (edits may have changed them since)."""
        pool, wire = self._pool, self._wire
        if pool is None or wire is None:
            raise GraphError(f"node {self.name!r} has neither a NodeDef nor its bytes")
        proto = pool.node.add()
        proto.MergeFromString(wire)
        if self._ins is not None and self._ctl is not None:
            del proto.input[:]
            proto.input.extend([str(ref) for ref in self._ins])
            proto.input.extend([control_name(c) for c in self._ctl])
        self._proto, self._wire, self._pool = proto, None, None
        return proto

    def unparsed(self) -> bytes | None:
        """The NodeDef's bytes while they are not parsed (None once they are): its name, op
        and attrs as they are, its input fields stale or left out (`inputs` and `controls`
        are the node's edges)."""
        return self._wire
