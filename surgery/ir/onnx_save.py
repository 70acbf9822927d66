"""Graph -> ONNX ModelProto: the saving half of `surgery.ir.onnx_io` (its docstring has the
mapping).

Tensor names are settled before any node is written: graph inputs and initializers keep theirs,
then every node output its recorded name (unless a graph output that reads another tensor now
needs it), then a new node's tensor read by a graph output takes the output's name, and the
remaining tensors are named `<node>` (port 0) or `<node>:<port>`, made unique.

The model is written as wire bytes in pieces, not built as one ModelProto: each operator node
and each initializer of raw data is serialized on its own (most nodes straight from their
attrs, with attribute conversions made once per distinct attr value; the rest through
`_Saver.node` and the protobuf API), and the header with the graph's other lists is serialized
once and the pieces put where a serialization of the whole would have them (fields go out in
number order). An initializer's bytes are written from the Const's tensor as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from surgery.ir import onnx_io as io
from surgery.ir.atomic_files import write_atomic
from surgery.ir.gc_pause import gc_paused
from surgery.ir.graph import Graph
from surgery.ir.model_io import check_output_path
from surgery.ir.node import Node, pos_of
from surgery.ir.onnx_pb import AttributeProto, ModelProto, NodeProto, TensorProto, ValueInfoProto
from surgery.ir.onnx_save_values import (
    RawTensor,
    externalize,
    graph_input,
    import_domains,
    initializer,
    initializer_wire,
    onnx_attribute,
    onnx_attributes,
    place,
    plain_tensor,
    refit,
    tensor_head,
    text_attr,
)
from surgery.ir.onnx_save_wire import (
    ATTRIBUTE,
    DOMAIN,
    INPUT,
    NAME,
    NODE,
    OP_TYPE,
    OUTPUT,
    TENSOR_NAME,
    assemble,
    ld,
    put,
)
from surgery.ir.ports import TensorRef
from surgery.ir.protos import AttrValue
from surgery.ir.protos import TensorProto as TfTensor
from surgery.ir.wire import attr_string, attr_value, attr_values, list_strings, varint

_new_ref: Final = tuple.__new__  # TensorRef(name, port) without NamedTuple's keyword handling
_SOURCES: Final = ("Const", "Placeholder", io.SPARSE_OP)
_NOT_NODES: Final = (*_SOURCES, io.MODEL_OP, io.NONE_OP, io.OUTPUT_OP)
_OUTPUTS: Final = io.OUTPUTS_ATTR.encode()


def save_model(
    graph: Graph, path: str | os.PathLike, *, inputs: tuple = (),
    encoded: Mapping[str, NodeProto] | None = None,
) -> Path:  # fmt: skip
    """`encoded`: nodes written as given (op type, domain, attributes) rather than from their
    attrs: the plugin nodes, encoded as TensorRT's parser reads them (by a layer above this one:
    `surgery.backends.onnx_plugins`). Their inputs and outputs are still the graph's."""
    out = check_output_path(path, *inputs)
    with gc_paused(len(graph)):  # millions of short-lived names, refs and pieces
        saver = _Saver(graph, encoded or {})
        model = saver.model()
    tensors = saver.tensors
    marked = {saver.source_name(n) for n in saver.external}
    external = externalize(tensors, marked)
    if external:
        data_path = out.with_name(out.name + ".data")
        sources = [n.attr[io.EXTERNAL_ATTR].s.decode() for n in saver.external]
        check_output_path(data_path, *inputs, *sources)
        write_atomic(data_path, list(place(external, data_path.name)))
    pieces = [piece for tensor in tensors for piece in initializer_wire(tensor)]
    write_atomic(out, assemble(model, saver.wire, pieces))
    return out


def _attrs(node: Node) -> dict[str, bytes] | None:
    """The attrs of a node still held as its NodeDef's bytes, read from them; None for a node
    whose NodeDef is parsed (read that)."""
    wire = node.unparsed()
    return attr_values(wire) if wire is not None else None


def _serialized(node: Node) -> bytes:
    """The node's NodeDef as bytes (whose input fields may be stale: see `Node.unparsed`)."""
    wire = node.unparsed()
    return wire if wire is not None else node.proto.SerializeToString()


def _text(value: bytes) -> str:
    """The string of a serialized AttrValue."""
    return attr_string(value).decode()


def _node_field(body: bytearray) -> bytes:
    """The GraphProto.node field of a serialized NodeProto."""
    return NODE + varint(len(body)) + body


# --------------------------------------------------------------------------- the saver
class _Saver:
    """One save: settle the tensor names, then build the ModelProto's lists.

    Tensor names are kept as UTF-8 bytes (as they are written) in lists indexed by the
    producer's `Node.pos`, one list of port names a node, not in a dict keyed by
    (node, port): at a million nodes each lookup in such a dict is a few cache misses, where a
    node's list sits beside the node's neighbours'."""

    def __init__(self, graph: Graph, encoded: Mapping[str, NodeProto]):
        """A save of `graph`, its `encoded` nodes written as given; the names settled."""
        self.graph = graph
        self.header = io.model_header(graph)
        graph._index()  # each node's readers (`Node._users`) say which output ports are read
        self.sources: list[Node] = []
        self.ops: list[Node] = []
        self.sinks: list[Node] = []
        bound = 0
        for node in graph._nodes.values():
            op = node.op
            if op in _SOURCES:
                self.sources.append(node)
            elif op == io.OUTPUT_OP:
                self.sinks.append(node)
            elif op not in _NOT_NODES:
                self.ops.append(node)
            bound = max(bound, node.pos + 1)
        # by Node.pos: each output port's ONNX name (None: not named yet), the node's recorded
        # `_onnx_outputs` (None: it has none), its encoded NodeProto (None: written from attrs)
        self.named: list[list[bytes | None] | None] = [None] * bound
        self.stored: list[list[bytes] | None] = [None] * bound
        self.given: list[NodeProto | None] = [None] * bound
        # by Node.pos, from `scan_readers`: how many output ports nodes read (0: none), and
        # whether the node reads a node graph order puts at or after it
        self.ports = [0] * bound
        self.late = bytearray(bound)
        for name, proto in encoded.items():
            found = graph.get(name)
            if found is not None:
                self.given[found.pos] = proto
        self.used: set[bytes] = set()
        # sources with `_onnx_value_info`, Consts that are graph inputs too, Consts of external
        # data, in graph order (settle_names finds them)
        self.described: list[Node] = []
        self.input_consts: list[Node] = []
        self.external: list[Node] = []
        self.outputs = {n.name: self.output_info(n) for n in self.sinks}
        self.settle_names()
        self.scan_readers()
        self.wire: list[bytes] = []  # the GraphProto.node fields
        self.domains: list[str] = []  # the nodes' domains, in order
        self.tensors: list[TensorProto | RawTensor] = []  # the initializers
        self.infos: list[Node] = []  # operator nodes with `_onnx_value_info`, as written
        self.converted: dict[tuple[str, bytes], bytes] = {}  # (key, AttrValue) -> attribute
        self.op_types: dict[str, bytes] = {}  # op -> NodeProto.op_type field
        self.encoded_tails: dict[int, bytes] = {}  # id(encoded NodeProto) -> `encoded_tail`

    def output_info(self, sink: Node) -> ValueInfoProto:
        if len(sink.inputs) != 1 or io.OUTPUT_ATTR not in sink.attr:
            raise io.OnnxSaveError(f"graph output node {sink.name!r} needs one input and its "
                                   f"{io.OUTPUT_ATTR} attr")  # fmt: skip
        info = ValueInfoProto()
        info.ParseFromString(sink.attr[io.OUTPUT_ATTR].s)
        return info

    def settle_names(self) -> None:
        """Graph inputs and initializers keep their names, then each node output its recorded
        one (unless taken, or a graph output that reads another tensor needs it), then a new
        node's tensor read by a graph output takes the output's name."""
        wanted: dict[bytes, TensorRef] = {}  # output name -> the tensor its sink reads
        for sink in self.sinks:
            wanted.setdefault(self.outputs[sink.name].name.encode(), sink.inputs[0])
        named, stored_by_pos, used = self.named, self.stored, self.used
        for node in self.sources:
            values = _attrs(node)  # its attrs read once, from its bytes where it is held so
            attrs: Any = values if values is not None else node.proto.attr
            name = node.name.encode()
            if io.NAME_ATTR in attrs:
                text = attr_string(attrs[io.NAME_ATTR]) if values is not None else (
                    attrs[io.NAME_ATTR].s)  # fmt: skip
                name = text or name
            if io.VALUE_INFO_ATTR in attrs:
                self.described.append(node)
            if node.op == "Const" and io.INPUT_INDEX_ATTR in attrs:
                self.input_consts.append(node)
            if node.op == "Const" and io.EXTERNAL_ATTR in attrs:
                self.external.append(node)
            if wanted and name in wanted and wanted[name] != (node.name, 0):
                raise io.OnnxSaveError(
                    f"graph output {name.decode()!r} has the name of a graph input or "
                    "initializer but reads another tensor; rename the output"
                )
            named[node.pos] = [name]
            used.add(name)
        for node in self.ops:
            recorded = attr_value(_serialized(node), _OUTPUTS)
            if recorded is None:
                continue
            node_name, pos = node.name, node.pos
            stored = stored_by_pos[pos] = list_strings(recorded)
            names: list[bytes | None] = list(stored)
            for port, raw in enumerate(stored):
                if raw and not (wanted and raw in wanted and wanted[raw] != (node_name, port)):
                    count = len(used)
                    used.add(raw)  # one lookup: claimed when the set grows
                    if len(used) != count:
                        continue
                names[port] = None
            named[pos] = names
        for name, ref in wanted.items():
            producer = self.graph.get(ref.node)
            if producer is not None and producer.op not in _NOT_NODES:
                self.claim(producer, ref.port, name, keep=True)
            used.add(name)

    def claim(self, node: Node, port: int, name: bytes, keep: bool = False) -> None:
        """Name output `port` of `node` `name` (with `keep`, only if it has no name yet)."""
        names = self.named[node.pos]
        if names is None:
            names = self.named[node.pos] = []
        if port >= len(names):
            names.extend([None] * (port + 1 - len(names)))
        if not keep or names[port] is None:
            names[port] = name

    def name_of(self, ref: TensorRef) -> bytes | None:
        """The name tensor `ref` has been given, or None."""
        producer = self.graph.get(ref[0])
        if producer is None:
            return None
        names = self.named[producer.pos]
        port = ref[1]
        return names[port] if names is not None and port < len(names) else None

    def tensor(self, ref: TensorRef, reader: str) -> bytes:
        """The ONNX name of tensor `ref` (`b""` for an empty optional input), named
        `<node>` or `<node>:<port>` (made unique) when it has none yet."""
        found = self.name_of(ref)
        if found is not None:
            return found
        producer = self.graph.get(ref.node)
        if producer is None or producer.op in (io.MODEL_OP, io.OUTPUT_OP):
            raise io.OnnxSaveError(f"{reader!r} reads {ref}, which no node produces")
        if producer.op == io.NONE_OP:
            return b""
        if producer.op in _SOURCES:
            raise io.OnnxSaveError(f"{reader!r} reads {ref}: {ref.node!r} has one output")
        base = str(ref)
        name, count = base.encode(), 0
        while name in self.used:
            count += 1
            name = f"{base}_{count}".encode()
        self.used.add(name)
        self.claim(producer, ref.port, name)
        return name

    def model(self) -> ModelProto:
        """The header with the graph's inputs, outputs, value_info and sparse initializers; the
        nodes go to `wire` (as wire bytes), the initializers to `tensors`."""
        model = self.header
        graph = model.graph
        orphans = list(graph.value_info)
        graph.ClearField("value_info")
        self.wire = [self.node_wire(n) for n in self.ordered()]
        self.tensors = self.initializers()
        for node in self.sources:
            if node.op == io.SPARSE_OP:
                graph.sparse_initializer.add().ParseFromString(node.attr[io.SPARSE_ATTR].s)
        graph.input.extend(self.graph_inputs())
        for sink in self.sinks:
            info = self.outputs[sink.name]
            tensor = self.tensor(sink.inputs[0], sink.name).decode()
            if tensor != info.name:
                identity = NodeProto(name=sink.name, op_type="Identity", input=[tensor],
                                     output=[info.name])  # fmt: skip
                self.wire.append(ld(NODE, identity.SerializeToString()))
                self.domains.append("")
            graph.output.append(info)
        graph.value_info.extend(self.value_infos(orphans))
        import_domains(model, self.domains)
        return model

    def source_name(self, node: Node) -> str:
        """The ONNX name of a graph input's or initializer's tensor."""
        names = self.named[node.pos]
        if names is None or names[0] is None:
            raise io.OnnxSaveError(f"{node.op} {node.name!r} has no tensor name")
        return names[0].decode()

    def initializers(self) -> list[TensorProto | RawTensor]:
        """The Consts' initializers; those of raw data as `RawTensor`s (their dims and type
        written once per dtype and shape)."""
        heads: dict[tuple[int, bytes], bytes | None] = {}
        found: list[TensorProto | RawTensor] = []
        for node in self.sources:
            if node.op != "Const":
                continue
            name = self.source_name(node)
            raw = self.raw_tensor(node)
            if raw is not None:
                key, data, tensor = raw
                head = heads[key] if key in heads else heads.setdefault(key, tensor_head(
                    tensor if isinstance(tensor, TfTensor) else TfTensor.FromString(tensor)
                ))  # fmt: skip
                if head is not None:
                    if name:
                        head += ld(TENSOR_NAME, name.encode())
                    found.append(RawTensor(name, head, data))
                    continue
            found.append(initializer(node, name))
        return found

    @staticmethod
    def raw_tensor(node: Node) -> tuple[tuple[int, bytes], bytes, TfTensor | bytes] | None:
        """A Const's `value` of raw bytes where it has no `_onnx_tensor`: (a key of its dtype
        and shape, the bytes, the tensor or its dtype and shape serialized); else None. Read
        from the bytes of a Const held so (keyed by its dtype and shape fields, dtype -1),
        from its NodeDef otherwise."""
        values = _attrs(node)
        if values is not None:
            if io.TENSOR_ATTR in values or "value" not in values:
                return None
            fields = plain_tensor(values["value"])
            if fields is not None:
                head, data = fields
                return ((-1, head), data, head) if data else None
        attrs = node.proto.attr
        if io.TENSOR_ATTR in attrs or "value" not in attrs:
            return None
        tensor = attrs["value"].tensor
        data = tensor.tensor_content
        if not data:
            return None
        return (tensor.dtype, tensor.tensor_shape.SerializeToString()), data, tensor

    def scan_readers(self) -> None:
        """From each operator node's readers (the consumer index: no name looked up): how many
        output ports are read (`ports`), and which operator nodes read an operator node that
        graph order puts at or after them (`late`: they need the walk of `ordered`)."""
        ports, late = self.ports, self.late
        for node in self.ops:
            pos = node.pos
            edges = node._users
            if edges is not None:
                most = 0
                for edge in edges:
                    if edge[0] >= most:
                        most = edge[0] + 1
                    user = edge[1]
                    if user.pos <= pos and user.op not in _NOT_NODES:
                        late[user.pos] = 1
                ports[pos] = most
            controls = node._cusers
            if controls is not None:
                for user in controls:
                    if user.pos <= pos and user.op not in _NOT_NODES:
                        late[user.pos] = 1

    def ordered(self) -> list[Node]:
        """The nodes in graph order, but producers moved before their consumers: depth first
        from each node in graph order, its producers (inputs, then control inputs) first. A
        node that reads only nodes before it in graph order (every node of a graph in order)
        is placed at once, its producers placed already; the walk finds the others' producers
        by name, and keeps the nodes' state by position."""
        late = self.late
        state = bytearray(len(self.named))  # by Node.pos: 0 not met, 1 on the stack, 2 placed
        out: list[Node] = []
        for start in self.ops:
            if state[start.pos]:
                continue
            if not late[start.pos]:
                state[start.pos] = 2
                out.append(start)
                continue
            state[start.pos] = 1
            stack = [(start, self.before(start))]
            while stack:
                node, pending = stack[-1]
                for producer in pending:
                    if state[producer.pos] == 1:
                        raise io.OnnxSaveError(
                            f"the graph has a cycle through {producer.name!r}"
                        )
                    if not state[producer.pos]:
                        state[producer.pos] = 1
                        stack.append((producer, self.before(producer)))
                        break
                else:
                    stack.pop()
                    state[node.pos] = 2
                    out.append(node)
        return out

    def before(self, node: Node) -> Iterator[Node]:
        """The operator nodes `node` reads, data then control, in input order (repeats
        included)."""
        nodes = self.graph._nodes
        for name in [r.node for r in node.inputs] + list(node.controls):
            producer = nodes.get(name)
            if producer is not None and producer.op not in _NOT_NODES:
                yield producer

    def output_count(self, node: Node) -> int:
        """How many outputs `node` writes: its recorded ones (1 without a record), or up to the
        highest port a node reads."""
        stored = self.stored[node.pos]
        return max(len(stored) if stored is not None else 1, self.ports[node.pos])

    def output_name(self, node: Node, port: int) -> bytes:
        """The name output `port` of `node` is written under: `b""` for an omitted optional
        output that no node reads."""
        names = self.named[node.pos]
        found = names[port] if names is not None and port < len(names) else None
        if found is not None:
            return found
        stored = self.stored[node.pos]
        edges = node._users
        read = edges is not None and any(e[0] == port for e in edges)
        if read or stored is None or bool(stored[port]):
            return self.tensor(_new_ref(TensorRef, (node.name, port)), node.name)
        return b""

    def node_wire(self, node: Node) -> bytes:
        """The GraphProto.node field of `node`: what `node` makes, serialized; written as wire
        bytes here unless the node has `_onnx_node_extra` (then through `node`). An encoded
        node's op type, attributes and domain are its NodeProto's, serialized once per
        NodeProto (plugin nodes of equal fields share one)."""
        values = attr_values(_serialized(node))
        if io.VALUE_INFO_ATTR in values:
            self.infos.append(node)
        if io.NODE_EXTRA_ATTR in values:
            proto = self.node(node)
            self.domains.append(proto.domain)
            return ld(NODE, proto.SerializeToString(deterministic=True))
        name, pos = node.name, node.pos
        nodes, named = self.graph._nodes, self.named
        out = bytearray()
        for ref in node._inputs:
            producer = nodes.get(ref[0])
            found = None
            if producer is not None:
                names = named[producer.pos]
                if names is not None and ref[1] < len(names):
                    found = names[ref[1]]
            put(out, INPUT, found if found is not None else self.tensor(ref, name))
        for port in range(self.output_count(node)):
            names = named[pos]
            found = names[port] if names is not None and port < len(names) else None
            put(out, OUTPUT, found if found is not None else self.output_name(node, port))
        given = self.given[pos]
        if given is not None:
            onnx_name = _text(values[io.NAME_ATTR]) if io.NAME_ATTR in values else name
            if onnx_name:
                put(out, NAME, onnx_name.encode())
            tail = self.encoded_tails.get(id(given))
            if tail is None:
                tail = self.encoded_tails[id(given)] = self.encoded_tail(given)
            out += tail
            self.domains.append(given.domain)
            return _node_field(out)
        onnx_name, domain, attributes = name, None, {}
        for key in sorted(values):
            if key[0] != "_":
                attributes[key] = self.attribute(key, values[key], node)
            elif key.startswith(io.ATTR_PREFIX):
                kept = attr_string(values[key])
                attributes[key[len(io.ATTR_PREFIX) :]] = self.kept_attribute(kept)
            elif key == io.NAME_ATTR:
                onnx_name = _text(values[key])
            elif key == io.DOMAIN_ATTR:
                domain = _text(values[key])
        if onnx_name:
            put(out, NAME, onnx_name.encode())
        op_type = self.op_types.get(node.op)
        if op_type is None:
            op_type = self.op_types[node.op] = ld(OP_TYPE, node.op.encode())
        out += op_type
        if attributes:
            order = list(attributes)
            if io.ATTR_ORDER_ATTR in values:
                order = [k.decode() for k in list_strings(values[io.ATTR_ORDER_ATTR])
                         if k.decode() in attributes]  # fmt: skip
                order.extend(k for k in attributes if k not in order)
            for key in order:
                put(out, ATTRIBUTE, attributes[key])
        if domain is not None:
            put(out, DOMAIN, domain.encode())
        self.domains.append(domain or "")
        return _node_field(out)

    @staticmethod
    def encoded_tail(given: NodeProto) -> bytes:
        """An encoded node's fields after its name: op type, attributes and domain, as
        `node` writes them (the op type and domain always present)."""
        tail = [ld(OP_TYPE, given.op_type.encode())]
        tail.extend(ld(ATTRIBUTE, a.SerializeToString(deterministic=True))
                    for a in given.attribute)  # fmt: skip
        tail.append(ld(DOMAIN, given.domain.encode()))
        return b"".join(tail)

    def attribute(self, key: str, raw: bytes, node: Node) -> bytes:
        """The serialized AttributeProto of attr `key` of `node`, whose AttrValue serializes to
        `raw`: converted from the AttrValue once per distinct `raw`."""
        found = self.converted.get((key, raw))
        if found is None:
            value = AttrValue.FromString(raw)
            found = onnx_attribute(key, value, node.name).SerializeToString(deterministic=True)
            if len(raw) <= 256:
                self.converted[key, raw] = found
        return found

    def kept_attribute(self, raw: bytes) -> bytes:
        """A kept `_onnx_attr:` AttributeProto as the model serializes it."""
        kept = AttributeProto()
        kept.ParseFromString(raw)
        return kept.SerializeToString(deterministic=True)

    def node(self, node: Node) -> NodeProto:
        """What `node` makes, through the protobuf API: the general path `node_wire` equals
        (taken for nodes with `_onnx_node_extra`)."""
        out = NodeProto(op_type=node.op)
        name = text_attr(node, io.NAME_ATTR)
        name = node.name if name is None else name
        if name:
            out.name = name
        domain = text_attr(node, io.DOMAIN_ATTR)
        if domain is not None:
            out.domain = domain
        out.input.extend(self.tensor(r, node.name).decode() for r in node.inputs)
        out.output.extend(self.output_name(node, port).decode()
                          for port in range(self.output_count(node)))  # fmt: skip
        given = self.given[node.pos]
        if given is not None:
            out.op_type, out.domain = given.op_type, given.domain
            out.attribute.extend(given.attribute)
        else:
            out.attribute.extend(onnx_attributes(node))
        if io.NODE_EXTRA_ATTR in node.attr:
            out.MergeFromString(node.attr[io.NODE_EXTRA_ATTR].s)
        return out

    def graph_inputs(self) -> list[ValueInfoProto]:
        """Placeholders in graph order, with initializers that were inputs at their index."""
        found = [graph_input(n, self.source_name(n)) for n in self.sources
                 if n.op == "Placeholder"]  # fmt: skip
        extra = sorted((n.attr[io.INPUT_INDEX_ATTR].i, n) for n in self.input_consts)
        for index, node in extra:
            info = ValueInfoProto()
            info.ParseFromString(node.attr[io.INPUT_ATTR].s)
            info.name = self.source_name(node)
            found.insert(index, info)
        return found

    def value_infos(self, orphans: list[ValueInfoProto]) -> list[ValueInfoProto]:
        """The recorded value_info (shapes edited in `_output_shapes` applied), in the loaded
        order, then those of tensors that came later."""
        found = {v.name: v for v in orphans}
        for node in self.described + sorted(self.infos, key=pos_of):
            values = _attrs(node)
            if values is None:
                attrs = node.proto.attr
                shapes = attrs[io.SHAPES_ATTR].list.shape if io.SHAPES_ATTR in attrs else []
                recorded = list(attrs[io.VALUE_INFO_ATTR].list.s)
            else:
                shapes = AttrValue.FromString(values[io.SHAPES_ATTR]).list.shape if (
                    io.SHAPES_ATTR in values) else []  # fmt: skip
                recorded = list_strings(values[io.VALUE_INFO_ATTR])
            for port, raw in enumerate(recorded):
                if not raw:
                    continue
                info = ValueInfoProto()
                info.ParseFromString(raw)
                info.name = self.tensor(TensorRef(node.name, port), node.name).decode()
                if port < len(shapes) and node.op not in _SOURCES:
                    refit(info.type, shapes[port])
                found[info.name] = info
        header = self.graph.nodes_by_op(io.MODEL_OP)[0]
        order = [n.decode() for n in header.attr["value_info_order"].list.s]
        ordered = [found.pop(n) for n in order if n in found]
        return ordered + list(found.values())
