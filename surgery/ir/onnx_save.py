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
from typing import Any, NamedTuple

import numpy as np

from surgery.ir import onnx_io as io
from surgery.ir.atomic_files import write_atomic
from surgery.ir.graph import Graph, Node, _gc_paused
from surgery.ir.model_io import check_output_path
from surgery.ir.onnx_load import tf_tensor
from surgery.ir.onnx_pb import (
    AttributeProto,
    ModelProto,
    NodeProto,
    TensorProto,
    TensorShapeProto,
    ValueInfoProto,
)
from surgery.ir.ports import TensorRef
from surgery.ir.protos import AttrValue
from surgery.ir.protos import TensorProto as TfTensor
from surgery.ir.tensor_values import shape_of, to_numpy
from surgery.ir.wire import varint

_new_ref = tuple.__new__  # TensorRef(name, port) without NamedTuple's keyword handling
_SOURCES = ("Const", "Placeholder", io.SPARSE_OP)
_NOT_NODES = (*_SOURCES, io.MODEL_OP, io.NONE_OP, io.OUTPUT_OP)
# Initializer bytes past which every tensor of 1 KiB or more goes to external data (one
# protobuf message holds at most 2 GiB).
EXTERNAL_ABOVE = 3 << 29
EXTERNAL_MIN_TENSOR = 1024
ALIGN = 64


def save_model(
    graph: Graph, path: str | os.PathLike, *, inputs: tuple = (),
    encoded: Mapping[str, NodeProto] | None = None,
) -> Path:  # fmt: skip
    """`encoded`: nodes written as given (op type, domain, attributes) rather than from their
    attrs: the plugin nodes, encoded as TensorRT's parser reads them (by a layer above this one:
    `surgery.backends.onnx_plugins`). Their inputs and outputs are still the graph's."""
    out = check_output_path(path, *inputs)
    with _gc_paused(len(graph)):  # millions of short-lived names, refs and pieces
        saver = _Saver(graph, encoded or {})
        model = saver.model()
    tensors = saver.tensors
    external = _externalize(graph, tensors)
    if external:
        data_path = out.with_name(out.name + ".data")
        sources = [n.attr[io.EXTERNAL_ATTR].s.decode() for n in graph.nodes_by_op("Const")
                   if io.EXTERNAL_ATTR in n.attr]  # fmt: skip
        check_output_path(data_path, *inputs, *sources)
        write_atomic(data_path, list(_place(external, data_path.name)))
    pieces = [piece for tensor in tensors for piece in _initializer_wire(tensor)]
    write_atomic(out, _assemble(model, saver.wire, pieces))
    return out


# --------------------------------------------------------------------------- wire bytes
_NODE = _INPUT = b"\x0a"  # GraphProto.node; NodeProto.input
_OUTPUT = b"\x12"  # NodeProto.output
_NAME = b"\x1a"  # NodeProto.name
_OP_TYPE = b"\x22"  # NodeProto.op_type
_ATTRIBUTE = _INITIALIZER = b"\x2a"  # NodeProto.attribute; GraphProto.initializer
_DOMAIN = b"\x3a"  # NodeProto.domain
_TENSOR_NAME = b"\x42"  # TensorProto.name
_RAW_DATA = b"\x4a"  # TensorProto.raw_data
_GRAPH = b"\x3a"  # ModelProto.graph
_LENGTHS = [bytes((size,)) for size in range(128)]


def _ld(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: `key`, the payload's length, the payload."""
    size = len(payload)
    return key + (_LENGTHS[size] if size < 128 else varint(size)) + payload


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _cut(data: bytes, number: int) -> int:
    """Where the first field numbered `number` or more starts in serialized message `data`
    (its end if none is)."""
    pos = 0
    while pos < len(data):
        key, end = _read_varint(data, pos)
        if key >> 3 >= number:
            return pos
        kind = key & 7
        if kind == 0:
            end = _read_varint(data, end)[1]
        elif kind == 2:
            size, end = _read_varint(data, end)
            end += size
        elif kind in (1, 5):
            end += 8 if kind == 1 else 4
        else:
            raise io.OnnxSaveError(f"the model header holds a group field ({key >> 3})")
        pos = end
    return pos


def _assemble(model: ModelProto, nodes: list[bytes], initializers: list[bytes]) -> list[bytes]:
    """The wire bytes of `model` (whose graph has no nodes and no initializers) with the graph
    fields `nodes` and `initializers` (keys and lengths included) where serializing the whole
    would put them: the nodes first (field 1), the initializers after the graph's name."""
    data = model.SerializeToString(deterministic=True)
    at = _cut(data, 7)
    graph, after = b"", data[at:]
    if after[:1] == _GRAPH:
        size, start = _read_varint(after, 1)
        graph, after = after[start : start + size], after[start + size :]
    middle = _cut(graph, 5)
    size = sum(map(len, nodes)) + len(graph) + sum(map(len, initializers))
    return [data[:at], _GRAPH + varint(size), *nodes, graph[:middle], *initializers,
            graph[middle:], after]  # fmt: skip


# --------------------------------------------------------------------------- tensors
def onnx_tensor(value: TfTensor, name: str = "") -> TensorProto:
    """A TF TensorProto as an ONNX one holding raw (or string) data."""
    data_type = io.TF_TO_ONNX.get(value.dtype)
    dims = shape_of(value.tensor_shape)
    if data_type is None or dims is None or any(d < 0 for d in dims):
        raise io.OnnxSaveError(
            f"tensor {name or '(attribute)'}: type {value.dtype} of shape {dims} has no ONNX "
            "initializer form"
        )
    out = TensorProto(dims=dims, data_type=data_type)
    if name:
        out.name = name
    if data_type == TensorProto.STRING:
        out.string_data.extend(to_numpy(value).reshape(-1).tolist())
        return out
    array = None if value.tensor_content else to_numpy(value)
    if array is None:
        out.raw_data = value.tensor_content
    else:
        out.raw_data = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    return out


class _RawTensor(NamedTuple):
    """An initializer of raw data as wire bytes: its name, its fields before raw_data (dims,
    data_type, name) and raw_data."""

    name: str
    head: bytes
    data: bytes

    def proto(self) -> TensorProto:
        out = TensorProto()
        out.ParseFromString(self.head)
        out.raw_data = self.data
        return out


def _initializer_wire(tensor: TensorProto | _RawTensor) -> list[bytes]:
    """GraphProto.initializer field of `tensor`, in pieces (no copy of raw data)."""
    if isinstance(tensor, TensorProto):
        return [_ld(_INITIALIZER, tensor.SerializeToString(deterministic=True))]
    data = _RAW_DATA + varint(len(tensor.data))
    size = len(tensor.head) + len(data) + len(tensor.data)
    return [_INITIALIZER + varint(size), tensor.head, data, tensor.data]


def _initializer(node: Node, name: str) -> TensorProto:
    """The Const's initializer: the kept original while `value` still matches it."""
    attrs = node.attr
    kept = None
    if io.TENSOR_ATTR in attrs:
        kept = TensorProto()
        kept.ParseFromString(attrs[io.TENSOR_ATTR].s)
        kept.name = name
        if "value" not in attrs or tf_tensor(kept) == attrs["value"].tensor:
            return kept
    if "value" not in attrs:
        raise io.OnnxSaveError(f"Const {node.name!r} has no value attr")
    return onnx_tensor(attrs["value"].tensor, name)


def _externalize(graph: Graph, tensors: list[TensorProto | _RawTensor]) -> list[TensorProto]:
    """The initializers to write as external data, made TensorProtos in `tensors` too: those
    loaded from it, and every one of 1 KiB or more when the model would be too large for one
    protobuf message."""
    marked = {
        n.attr[io.NAME_ATTR].s.decode() if io.NAME_ATTR in n.attr else n.name
        for n in graph.nodes_by_op("Const")
        if io.EXTERNAL_ATTR in n.attr
    }
    sizes = {
        i: len(t.data) if isinstance(t, _RawTensor) else len(t.raw_data)
        for i, t in enumerate(tensors)
        if isinstance(t, _RawTensor) or t.HasField("raw_data")
    }
    big = sum(sizes.values()) > EXTERNAL_ABOVE
    found = [
        i
        for i, size in sizes.items()
        if tensors[i].name in marked or (big and size >= EXTERNAL_MIN_TENSOR)
    ]
    placed = []
    for i in found:
        tensor = tensors[i]
        proto = tensor.proto() if isinstance(tensor, _RawTensor) else tensor
        tensors[i] = proto
        placed.append(proto)
    return placed


def _place(tensors: list[TensorProto], location: str) -> Iterator[bytes]:
    """Point each tensor at its (aligned) place in `location`; yield the file's bytes."""
    offset = 0
    for tensor in tensors:
        pad = -offset % ALIGN
        if pad:
            yield bytes(pad)
        offset += pad
        data = tensor.raw_data
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)),
                           ("length", str(len(data)))):  # fmt: skip
            tensor.external_data.add(key=key, value=value)
        offset += len(data)
        yield data


# --------------------------------------------------------------------------- value infos
def _refit(value_type: Any, shape: Any) -> None:
    """Give a tensor TypeProto the dims of a TensorShapeProto when they differ, keeping the
    symbolic names of dims that stay unknown."""
    if value_type.WhichOneof("value") != "tensor_type":
        return
    tensor = value_type.tensor_type
    new = shape_of(shape)
    old = list(tensor.shape.dim) if tensor.HasField("shape") else None
    old_dims = None if old is None else tuple(d.dim_value if d.HasField("dim_value") else -1
                                             for d in old)  # fmt: skip
    if new == old_dims:
        return
    if new is None:
        tensor.ClearField("shape")
        return
    dims = TensorShapeProto()
    for index, size in enumerate(new):
        dim = dims.dim.add()
        if size >= 0:
            dim.dim_value = size
        elif old is not None and len(old) == len(new) and not old[index].HasField("dim_value"):
            dim.CopyFrom(old[index])
    tensor.shape.CopyFrom(dims)


def _graph_input(node: Node, name: str) -> ValueInfoProto:
    """A Placeholder's ValueInfoProto: the loaded one with `dtype` and `shape` edits applied."""
    attrs = node.attr
    info = ValueInfoProto()
    if io.INPUT_ATTR in attrs:
        info.ParseFromString(attrs[io.INPUT_ATTR].s)
    else:
        info.type.tensor_type.SetInParent()
    info.name = name
    elem = io.TF_TO_ONNX.get(attrs["dtype"].type) if "dtype" in attrs else None
    if info.type.HasField("tensor_type") and elem is not None:
        if info.type.tensor_type.elem_type != elem:
            info.type.tensor_type.elem_type = elem
    elif io.INPUT_ATTR not in attrs:
        raise io.OnnxSaveError(f"Placeholder {node.name!r} has no dtype ONNX can hold")
    if "shape" in attrs:
        _refit(info.type, attrs["shape"].shape)
    return info


# --------------------------------------------------------------------------- attributes
def _onnx_attribute(key: str, value: AttrValue, node: str) -> AttributeProto:
    kind = value.WhichOneof("value")
    out = AttributeProto(name=key)
    if kind in ("i", "b"):
        out.type, out.i = AttributeProto.INT, int(getattr(value, kind))
    elif kind == "f":
        out.type, out.f = AttributeProto.FLOAT, value.f
    elif kind == "s":
        out.type, out.s = AttributeProto.STRING, value.s
    elif kind == "tensor":
        out.type = AttributeProto.TENSOR
        out.t.CopyFrom(onnx_tensor(value.tensor))
    elif kind == "list" and not (value.list.type or value.list.shape or value.list.func):
        items = value.list
        if items.f:
            out.type = AttributeProto.FLOATS
            out.floats.extend(items.f)
        elif items.s:
            out.type = AttributeProto.STRINGS
            out.strings.extend(items.s)
        elif items.tensor:
            out.type = AttributeProto.TENSORS
            out.tensors.extend(onnx_tensor(t) for t in items.tensor)
        else:  # ints, or an empty list: INTS (the commonest list attribute)
            out.type = AttributeProto.INTS
            out.ints.extend(items.i)
    else:
        raise io.OnnxSaveError(
            f"node {node!r}: attribute {key!r} holds a {kind or 'nothing'}, which no ONNX "
            "attribute type holds"
        )
    return out


def _attributes(node: Node) -> list[AttributeProto]:
    attrs = node.attr
    found: dict[str, AttributeProto] = {}
    for key in sorted(attrs):
        if key.startswith(io.ATTR_PREFIX):
            kept = AttributeProto()
            kept.ParseFromString(attrs[key].s)
            found[key[len(io.ATTR_PREFIX) :]] = kept
        elif not key.startswith("_"):
            found[key] = _onnx_attribute(key, attrs[key], node.name)
    order = []
    if io.ATTR_ORDER_ATTR in attrs:
        order = [k.decode() for k in attrs[io.ATTR_ORDER_ATTR].list.s if k.decode() in found]
    order.extend(k for k in found if k not in order)
    return [found[k] for k in order]


def _text(node: Node, key: str) -> str | None:
    return node.attr[key].s.decode() if key in node.attr else None


def _import_domains(model: ModelProto, domains: list[str]) -> None:
    """Add opset 1 of each domain a node uses (`domains`: each node's, in order) that the model
    does not import (a plugin node inserted by a rule, say): the checker and runtimes refuse a
    node of an unimported domain."""
    imported = {e.domain or "ai.onnx" for e in model.opset_import}
    for domain in domains:
        if (domain or "ai.onnx") not in imported:
            imported.add(domain or "ai.onnx")  # "" and "ai.onnx" are one domain
            model.opset_import.add(domain=domain, version=1)


def _tensor_head(tensor: TfTensor) -> bytes | None:
    """The dims and data_type fields of the ONNX initializer of a TF tensor of this dtype and
    shape, or None where `onnx_tensor` would not write its tensor_content as raw_data."""
    data_type = io.TF_TO_ONNX.get(tensor.dtype)
    dims = shape_of(tensor.tensor_shape)
    if data_type in (None, TensorProto.STRING) or dims is None or any(d < 0 for d in dims):
        return None
    return TensorProto(dims=dims, data_type=data_type).SerializeToString()


# --------------------------------------------------------------------------- the saver
class _Saver:
    """One save: settle the tensor names, then build the ModelProto's lists."""

    def __init__(self, graph: Graph, encoded: Mapping[str, NodeProto]):
        self.graph = graph
        self.encoded = encoded
        self.header = io.model_header(graph)
        nodes = list(graph)
        self.sources = [n for n in nodes if n.op in _SOURCES]
        self.ops = [n for n in nodes if n.op not in _NOT_NODES]
        self.sinks = [n for n in nodes if n.op == io.OUTPUT_OP]
        self.names: dict[TensorRef, str] = {}
        self.used: set[str] = set()
        self.stored: dict[str, list[bytes]] = {}  # op node -> its recorded output names
        self.outputs = {n.name: self.output_info(n) for n in self.sinks}
        self.settle_names()
        self.wire: list[bytes] = []  # the GraphProto.node fields
        self.domains: list[str] = []  # the nodes' domains, in order
        self.tensors: list[TensorProto | _RawTensor] = []  # the initializers
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
        wanted: dict[str, TensorRef] = {}  # output name -> the tensor its sink reads
        for sink in self.sinks:
            wanted.setdefault(self.outputs[sink.name].name, sink.inputs[0])
        for node in self.sources:
            name = _text(node, io.NAME_ATTR) or node.name
            ref = TensorRef(node.name, 0)
            if wanted.get(name, ref) != ref:
                raise io.OnnxSaveError(
                    f"graph output {name!r} has the name of a graph input or initializer "
                    "but reads another tensor; rename the output"
                )
            self.names[ref] = name
            self.used.add(name)
        names, used, kept = self.names, self.used, self.stored
        for node in self.ops:
            recorded = node.proto.attr.get(io.OUTPUTS_ATTR)  # one map lookup, not two
            if recorded is None:
                continue
            stored = kept[node.name] = recorded.list.s[:]
            for port, raw in enumerate(stored):
                name, ref = raw.decode(), _new_ref(TensorRef, (node.name, port))
                if name and name not in used and (not wanted or wanted.get(name, ref) == ref):
                    names[ref] = name
                    used.add(name)
        for name, ref in wanted.items():
            producer = self.graph.get(ref.node)
            if ref not in self.names and producer is not None and producer.op not in _NOT_NODES:
                self.names[ref] = name
            self.used.add(name)

    def tensor(self, ref: TensorRef, reader: str) -> str:
        """The ONNX name of tensor `ref` (`""` for an empty optional input)."""
        found = self.names.get(ref)
        if found is not None:
            return found
        producer = self.graph.get(ref.node)
        if producer is None or producer.op in (io.MODEL_OP, io.OUTPUT_OP):
            raise io.OnnxSaveError(f"{reader!r} reads {ref}, which no node produces")
        if producer.op == io.NONE_OP:
            return ""
        if producer.op in _SOURCES:
            raise io.OnnxSaveError(f"{reader!r} reads {ref}: {ref.node!r} has one output")
        base = str(ref)
        name, count = base, 0
        while name in self.used:
            count += 1
            name = f"{base}_{count}"
        self.used.add(name)
        self.names[ref] = name
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
            tensor = self.tensor(sink.inputs[0], sink.name)
            if tensor != info.name:
                identity = NodeProto(name=sink.name, op_type="Identity", input=[tensor],
                                     output=[info.name])  # fmt: skip
                self.wire.append(_ld(_NODE, identity.SerializeToString()))
                self.domains.append("")
            graph.output.append(info)
        graph.value_info.extend(self.value_infos(orphans))
        _import_domains(model, self.domains)
        return model

    def initializers(self) -> list[TensorProto | _RawTensor]:
        """The Consts' initializers; those of raw data as `_RawTensor`s (their dims and type
        written once per dtype and shape)."""
        heads: dict[tuple[int, bytes], bytes | None] = {}
        found: list[TensorProto | _RawTensor] = []
        for node in self.sources:
            if node.op != "Const":
                continue
            name = self.names[_new_ref(TensorRef, (node.name, 0))]
            attrs = node.proto.attr
            if io.TENSOR_ATTR not in attrs and "value" in attrs:
                tensor = attrs["value"].tensor
                data = tensor.tensor_content
                if data:
                    key = (tensor.dtype, tensor.tensor_shape.SerializeToString())
                    head = heads[key] if key in heads else heads.setdefault(
                        key, _tensor_head(tensor))  # fmt: skip
                    if head is not None:
                        if name:
                            head += _ld(_TENSOR_NAME, name.encode())
                        found.append(_RawTensor(name, head, data))
                        continue
            found.append(_initializer(node, name))
        return found

    def ordered(self) -> list[Node]:
        """The nodes in graph order, but producers moved before their consumers: depth first
        from each node in graph order, its producers (inputs, then control inputs) first. A
        node whose producers are all placed already (every node of a graph in order) is
        placed at once, without the walk."""
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

    @staticmethod
    def placeable(node: Node, ops: dict[str, Node], done: dict[str, bool]) -> bool:
        """Whether every operator node `node` reads (data or control) is placed already (the
        walk of `ordered` would place `node` at once)."""
        for ref in node._inputs:
            if ref[0] in ops and ref[0] not in done:
                return False
        for name in node._controls:
            if name in ops and name not in done:
                return False
        return True

    def node_wire(self, node: Node) -> bytes:
        """The GraphProto.node field of `node`: what `node` makes, serialized; written as wire
        bytes here unless the node has `_onnx_node_extra` (then through `node`). An encoded
        node's op type, attributes and domain are its NodeProto's, serialized once per
        NodeProto (plugin nodes of equal fields share one)."""
        attrs = node.proto.attr
        keys = sorted(attrs)  # a few keys: looked up in this list, not the map, from here on
        name = node.name
        given = self.encoded.get(name) if self.encoded else None
        if io.NODE_EXTRA_ATTR in keys:
            proto = self.node(node)
            self.domains.append(proto.domain)
            return _ld(_NODE, proto.SerializeToString(deterministic=True))
        names, tensor = self.names, self.tensor
        fields = []
        for ref in node._inputs:
            found = names.get(ref)
            fields.append(_ld(_INPUT, (found if found is not None else tensor(ref, name)).encode()))
        stored = self.stored.get(name)
        used = self.graph.used_ports(name)
        count = max(len(stored) if stored is not None else 1, used[-1] + 1 if used else 0)
        for port in range(count):
            ref = _new_ref(TensorRef, (name, port))
            known = ref in names or port in used or stored is None or bool(stored[port])
            fields.append(_ld(_OUTPUT, tensor(ref, name).encode() if known else b""))
        if given is not None:
            onnx_name = attrs[io.NAME_ATTR].s.decode() if io.NAME_ATTR in keys else name
            if onnx_name:
                fields.append(_ld(_NAME, onnx_name.encode()))
            tail = self.encoded_tails.get(id(given))
            if tail is None:
                tail = self.encoded_tails[id(given)] = self.encoded_tail(given)
            fields.append(tail)
            self.domains.append(given.domain)
            return _ld(_NODE, b"".join(fields))
        onnx_name, domain, attributes = name, None, {}
        for key in keys:
            if key[0] != "_":
                attributes[key] = self.attribute(key, attrs[key], name)
            elif key.startswith(io.ATTR_PREFIX):
                attributes[key[len(io.ATTR_PREFIX) :]] = self.kept_attribute(attrs[key].s)
            elif key == io.NAME_ATTR:
                onnx_name = attrs[key].s.decode()
            elif key == io.DOMAIN_ATTR:
                domain = attrs[key].s.decode()
        if onnx_name:
            fields.append(_ld(_NAME, onnx_name.encode()))
        op_type = self.op_types.get(node.op)
        if op_type is None:
            op_type = self.op_types[node.op] = _ld(_OP_TYPE, node.op.encode())
        fields.append(op_type)
        if attributes:
            order = list(attributes)
            if io.ATTR_ORDER_ATTR in keys:
                order = [k.decode() for k in attrs[io.ATTR_ORDER_ATTR].list.s
                         if k.decode() in attributes]  # fmt: skip
                order.extend(k for k in attributes if k not in order)
            fields.extend(_ld(_ATTRIBUTE, attributes[k]) for k in order)
        if domain is not None:
            fields.append(_ld(_DOMAIN, domain.encode()))
        self.domains.append(domain or "")
        return _ld(_NODE, b"".join(fields))

    @staticmethod
    def encoded_tail(given: NodeProto) -> bytes:
        """An encoded node's fields after its name: op type, attributes and domain, as
        `node` writes them (the op type and domain always present)."""
        tail = [_ld(_OP_TYPE, given.op_type.encode())]
        tail.extend(_ld(_ATTRIBUTE, a.SerializeToString(deterministic=True))
                    for a in given.attribute)  # fmt: skip
        tail.append(_ld(_DOMAIN, given.domain.encode()))
        return b"".join(tail)

    def attribute(self, key: str, value: AttrValue, node: str) -> bytes:
        """The serialized AttributeProto of attr `key`, made once per distinct value."""
        raw = value.SerializeToString()
        found = self.converted.get((key, raw))
        if found is None:
            found = _onnx_attribute(key, value, node).SerializeToString(deterministic=True)
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
        name = _text(node, io.NAME_ATTR)
        name = node.name if name is None else name
        if name:
            out.name = name
        domain = _text(node, io.DOMAIN_ATTR)
        if domain is not None:
            out.domain = domain
        out.input.extend(self.tensor(r, node.name) for r in node.inputs)
        stored = node.attr[io.OUTPUTS_ATTR].list.s if io.OUTPUTS_ATTR in node.attr else None
        used = self.graph.used_ports(node.name)
        count = max(len(stored) if stored is not None else 1, used[-1] + 1 if used else 0)
        for port in range(count):
            ref = TensorRef(node.name, port)
            known = ref in self.names or port in used or stored is None or bool(stored[port])
            out.output.append(self.tensor(ref, node.name) if known else "")
        given = self.encoded.get(node.name)
        if given is not None:
            out.op_type, out.domain = given.op_type, given.domain
            out.attribute.extend(given.attribute)
        else:
            out.attribute.extend(_attributes(node))
        if io.NODE_EXTRA_ATTR in node.attr:
            out.MergeFromString(node.attr[io.NODE_EXTRA_ATTR].s)
        return out

    def graph_inputs(self) -> list[ValueInfoProto]:
        """Placeholders in graph order, with initializers that were inputs at their index."""
        found = [
            _graph_input(n, self.names[TensorRef(n.name, 0)])
            for n in self.sources
            if n.op == "Placeholder"
        ]
        extra = sorted(
            (n.attr[io.INPUT_INDEX_ATTR].i, n)
            for n in self.sources
            if n.op == "Const" and io.INPUT_INDEX_ATTR in n.attr
        )
        for index, node in extra:
            info = ValueInfoProto()
            info.ParseFromString(node.attr[io.INPUT_ATTR].s)
            info.name = self.names[TensorRef(node.name, 0)]
            found.insert(index, info)
        return found

    def value_infos(self, orphans: list[ValueInfoProto]) -> list[ValueInfoProto]:
        """The recorded value_info (shapes edited in `_output_shapes` applied), in the loaded
        order, then those of tensors that came later."""
        found = {v.name: v for v in orphans}
        for node in self.sources + self.ops:
            if io.VALUE_INFO_ATTR not in node.attr:
                continue
            shapes = node.attr[io.SHAPES_ATTR].list.shape if io.SHAPES_ATTR in node.attr else []
            for port, raw in enumerate(node.attr[io.VALUE_INFO_ATTR].list.s):
                if not raw:
                    continue
                info = ValueInfoProto()
                info.ParseFromString(raw)
                info.name = self.tensor(TensorRef(node.name, port), node.name)
                if port < len(shapes) and node.op not in _SOURCES:
                    _refit(info.type, shapes[port])
                found[info.name] = info
        header = self.graph.nodes_by_op(io.MODEL_OP)[0]
        order = [n.decode() for n in header.attr["value_info_order"].list.s]
        ordered = [found.pop(n) for n in order if n in found]
        return ordered + list(found.values())
