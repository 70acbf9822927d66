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
from typing import Final

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
    attr_values,
    ld,
    list_strings,
)
from surgery.ir.ports import TensorRef

_new_ref: Final = tuple.__new__  # TensorRef(name, port) without NamedTuple's keyword handling
_SOURCES: Final = ("Const", "Placeholder", io.SPARSE_OP)
_NOT_NODES: Final = (*_SOURCES, io.MODEL_OP, io.NONE_OP, io.OUTPUT_OP)


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
    external = externalize(graph, tensors)
    if external:
        data_path = out.with_name(out.name + ".data")
        sources = [n.attr[io.EXTERNAL_ATTR].s.decode() for n in graph.nodes_by_op("Const")
                   if io.EXTERNAL_ATTR in n.attr]  # fmt: skip
        check_output_path(data_path, *inputs, *sources)
        write_atomic(data_path, list(place(external, data_path.name)))
    pieces = [piece for tensor in tensors for piece in initializer_wire(tensor)]
    write_atomic(out, assemble(model, saver.wire, pieces))
    return out


# --------------------------------------------------------------------------- the saver
class _Saver:
    """One save: settle the tensor names, then build the ModelProto's lists.

    Tensor names are kept as UTF-8 bytes (as they are written) in lists indexed by the
    producer's `Node.pos`, one list of port names a node, not in a dict keyed by
    (node, port): at a million nodes each lookup in such a dict is a few cache misses, where a
    node's list sits beside the node's neighbours'."""

    def __init__(self, graph: Graph, encoded: Mapping[str, NodeProto]):
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
        for name, proto in encoded.items():
            found = graph.get(name)
            if found is not None:
                self.given[found.pos] = proto
        self.used: set[bytes] = set()
        self.outputs = {n.name: self.output_info(n) for n in self.sinks}
        self.settle_names()
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
            name = (text_attr(node, io.NAME_ATTR) or node.name).encode()
            ref = TensorRef(node.name, 0)
            if wanted.get(name, ref) != ref:
                raise io.OnnxSaveError(
                    f"graph output {name.decode()!r} has the name of a graph input or "
                    "initializer but reads another tensor; rename the output"
                )
            named[node.pos] = [name]
            used.add(name)
        for node in self.ops:
            recorded = attr_values(node.proto.SerializeToString()).get(io.OUTPUTS_ATTR)
            if recorded is None:
                continue
            node_name, pos = node.name, node.pos
            stored = stored_by_pos[pos] = list_strings(recorded)
            names: list[bytes | None] = list(stored)
            for port, raw in enumerate(stored):
                key = (node_name, port)
                if raw and not (wanted and wanted.get(raw, key) != key):
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
            attrs = node.proto.attr
            if io.TENSOR_ATTR not in attrs and "value" in attrs:
                tensor = attrs["value"].tensor
                data = tensor.tensor_content
                if data:
                    key = (tensor.dtype, tensor.tensor_shape.SerializeToString())
                    head = heads[key] if key in heads else heads.setdefault(
                        key, tensor_head(tensor))  # fmt: skip
                    if head is not None:
                        if name:
                            head += ld(TENSOR_NAME, name.encode())
                        found.append(RawTensor(name, head, data))
                        continue
            found.append(initializer(node, name))
        return found

    def ordered(self) -> list[Node]:
        """The nodes in graph order, but producers moved before their consumers: depth first
        from each node in graph order, its producers (inputs, then control inputs) first. A
        graph whose order already places every node after its producers (every graph that was
        not edited out of order) keeps it, without the walk."""
        if self.in_order():
            return self.ops
        ops = {n.name: n for n in self.ops}
        done: dict[str, bool] = {}  # False: on the stack, True: placed
        out: list[Node] = []

        def before(node: Node) -> Iterator[str]:
            for name in [r.node for r in node.inputs] + list(node.controls):
                if name in ops:
                    yield name

        for start in self.ops:
            if start.name in done:
                continue
            if self.placeable(start, ops, done):
                done[start.name] = True
                out.append(start)
                continue
            done[start.name] = False
            stack = [(start, before(start))]
            while stack:
                node, pending = stack[-1]
                for name in pending:
                    if not done.get(name, True) and name in done:
                        raise io.OnnxSaveError(f"the graph has a cycle through {name!r}")
                    if name not in done:
                        done[name] = False
                        stack.append((ops[name], before(ops[name])))
                        break
                else:
                    stack.pop()
                    done[node.name] = True
                    out.append(node)
        return out

    def in_order(self) -> bool:
        """Whether every operator node comes after each operator node it reads (data or
        control) in graph order (graph order is `Node.pos` order): read from the producers'
        readers, so no name is looked up."""
        for node in self.ops:
            pos = node.pos
            edges = node._users
            if edges is not None:
                for edge in edges:
                    user = edge[1]
                    if user.pos <= pos and user.op not in _NOT_NODES:
                        return False
            controls = node._cusers
            if controls is not None:
                for user in controls:
                    if user.pos <= pos and user.op not in _NOT_NODES:
                        return False
        return True

    @staticmethod
    def placeable(node: Node, ops: dict[str, Node], done: dict[str, bool]) -> bool:
        """Whether every operator node `node` reads (data or control) is placed already (the
        walk of `ordered` would place `node` at once)."""
        for ref in node._inputs:  # `done` first: most producers are placed operator nodes
            if ref[0] not in done and ref[0] in ops:
                return False
        for name in node._controls:
            if name not in done and name in ops:
                return False
        return True

    def output_count(self, node: Node) -> int:
        """How many outputs `node` writes: its recorded ones (1 without a record), or up to the
        highest port a node reads."""
        stored = self.stored[node.pos]
        count = len(stored) if stored is not None else 1
        edges = node._users
        if edges is not None:
            for edge in edges:
                if edge[0] >= count:
                    count = edge[0] + 1
        return count

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
        proto = node.proto
        values = attr_values(proto.SerializeToString())
        keys = sorted(values)  # a few keys: looked up in this list, not the map, from here on
        name = node.name
        if io.VALUE_INFO_ATTR in keys:
            self.infos.append(node)
        if io.NODE_EXTRA_ATTR in keys:
            proto = self.node(node)
            self.domains.append(proto.domain)
            return ld(NODE, proto.SerializeToString(deterministic=True))
        get, named = self.graph.get, self.named
        fields = []
        for ref in node._inputs:
            producer = get(ref[0])
            found = None
            if producer is not None:
                names = named[producer.pos]
                if names is not None and ref[1] < len(names):
                    found = names[ref[1]]
            fields.append(ld(INPUT, found if found is not None else self.tensor(ref, name)))
        for port in range(self.output_count(node)):
            fields.append(ld(OUTPUT, self.output_name(node, port)))
        given = self.given[node.pos]
        if given is not None:
            onnx_name = proto.attr[io.NAME_ATTR].s.decode() if io.NAME_ATTR in keys else name
            if onnx_name:
                fields.append(ld(NAME, onnx_name.encode()))
            tail = self.encoded_tails.get(id(given))
            if tail is None:
                tail = self.encoded_tails[id(given)] = self.encoded_tail(given)
            fields.append(tail)
            self.domains.append(given.domain)
            return ld(NODE, b"".join(fields))
        onnx_name, domain, attributes = name, None, {}
        for key in keys:
            if key[0] != "_":
                attributes[key] = self.attribute(key, values[key], node)
            elif key.startswith(io.ATTR_PREFIX):
                attributes[key[len(io.ATTR_PREFIX) :]] = self.kept_attribute(proto.attr[key].s)
            elif key == io.NAME_ATTR:
                onnx_name = proto.attr[key].s.decode()
            elif key == io.DOMAIN_ATTR:
                domain = proto.attr[key].s.decode()
        if onnx_name:
            fields.append(ld(NAME, onnx_name.encode()))
        op_type = self.op_types.get(node.op)
        if op_type is None:
            op_type = self.op_types[node.op] = ld(OP_TYPE, node.op.encode())
        fields.append(op_type)
        if attributes:
            order = list(attributes)
            if io.ATTR_ORDER_ATTR in keys:
                order = [k.decode() for k in proto.attr[io.ATTR_ORDER_ATTR].list.s
                         if k.decode() in attributes]  # fmt: skip
                order.extend(k for k in attributes if k not in order)
            fields.extend(ld(ATTRIBUTE, attributes[k]) for k in order)
        if domain is not None:
            fields.append(ld(DOMAIN, domain.encode()))
        self.domains.append(domain or "")
        return ld(NODE, b"".join(fields))

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
            value = node.proto.attr[key]
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
        extra = sorted(
            (n.attr[io.INPUT_INDEX_ATTR].i, n)
            for n in self.sources
            if n.op == "Const" and io.INPUT_INDEX_ATTR in n.attr
        )
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
        described = [n for n in self.sources if io.VALUE_INFO_ATTR in n.attr]
        for node in described + sorted(self.infos, key=pos_of):
            shapes = node.attr[io.SHAPES_ATTR].list.shape if io.SHAPES_ATTR in node.attr else []
            for port, raw in enumerate(node.attr[io.VALUE_INFO_ATTR].list.s):
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
