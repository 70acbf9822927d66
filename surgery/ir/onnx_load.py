"""ONNX ModelProto -> Graph: the loading half of `surgery.ir.onnx_io` (its docstring has the
mapping). Every failure to read or parse the file is a ModelLoadError naming it.

Built for a million nodes: a call into the protobuf API costs a microsecond or so, so the
nodes' fields are read from the file's bytes (`onnx_load_wire`), and the NodeDefs of operator
nodes and of ordinary initializers are written as wire bytes, not set field by field, and
handed to the Graph unparsed: it parses one when something reads it (most never are; the save
reads their attrs from the bytes).
Names and producers are settled in a first pass over the nodes, which also writes each node's
name and `_onnx_outputs`; the second pass resolves its inputs (handed to the Graph parsed: the
NodeDef's input fields are written from them if it is ever parsed, so the bytes hold none) and
writes its attributes (converted once per distinct serialized AttributeProto). A node whose
bytes hold fields beyond the core ones goes through the protobuf API, which also gives those
fields (`_onnx_node_extra`). Rare nodes (graph inputs, sparse and large or unusual
initializers) are NodeDefs made through the protobuf API, in their place in the order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from surgery.errors import ModelLoadError, SurgeryError
from surgery.ir import onnx_io as io
from surgery.ir.gc_pause import gc_paused
from surgery.ir.graph import Graph
from surgery.ir.onnx_load_values import (
    attr_value,
    copy_fields,
    dims_shape,
    elem_type,
    external_bytes,
    fill_tf_tensor,
    free_names,
    is_plain,
    read_model,
    subgraphs,
)
from surgery.ir.onnx_load_wire import NodeFields, node_fields
from surgery.ir.onnx_pb import AttributeProto, ModelProto, NodeProto, TensorProto
from surgery.ir.ports import TensorRef
from surgery.ir.protos import AttrValue, GraphDef, NodeDef
from surgery.ir.protos import TensorProto as TfTensor
from surgery.ir.tensor_values import shape_proto
from surgery.ir.wire import varint

_new_ref: Final = tuple.__new__  # TensorRef(name, port) without NamedTuple's keyword handling
_GRAPH_LISTS: Final = ("node", "initializer", "sparse_initializer", "input", "output", "value_info")
_NODE_CORE: Final = ("name", "input", "output", "op_type", "attribute", "domain")
_PORT_SUFFIX: Final = re.compile(r":(\d+)$")


def load_model(path: Path) -> Graph:
    """The Graph of the ONNX model in file `path` (`surgery.ir.onnx_io.load_onnx`)."""
    loader = _Loader(*read_model(path), path)
    try:
        with gc_paused(len(loader.onnx.node)):
            graph_def = loader.graph_def()
        names, inputs, wires, ops = loader.order, loader.parsed, loader.made, loader.made_ops
        del loader  # the ModelProto goes before the Graph's nodes are made
        return Graph(graph_def, names=names, inputs=inputs, wires=wires, ops=ops)
    except ModelLoadError:
        raise
    except SurgeryError as exc:  # a tensor TensorFlow cannot describe, and the like
        raise ModelLoadError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- wire bytes
# Keys of the length-delimited fields written: NodeDef's name, op, input, attr; a map entry's
# key and value; AttrValue's list and tensor; ListValue.s; TensorProto's tensor_content.
# (Several share a number, and so a key.)
_NAME: Final = b"\x0a"
_LIST: Final = b"\x0a"
_ENTRY_KEY: Final = b"\x0a"
_OP: Final = b"\x12"
_ENTRY_VALUE: Final = b"\x12"
_STRING: Final = b"\x12"
_INPUT: Final = b"\x1a"
_CONTENT: Final = b"\x22"
_ATTR: Final = b"\x2a"
_TENSOR: Final = b"\x42"
_TYPE: Final = b"\x30"  # AttrValue.type, a varint
_LENGTHS: Final = [bytes((size,)) for size in range(128)]
_BIG_TENSOR: Final = 1 << 16  # initializer bytes from which the API path copies them fewer times


def _ld(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: `key`, the payload's length, the payload."""
    size = len(payload)
    return key + (_LENGTHS[size] if size < 128 else varint(size)) + payload


def _field_size(size: int) -> int:
    """The wire size of a length-delimited field (one-byte key) of `size` payload bytes."""
    return 1 + size + (1 if size < 128 else len(varint(size)))


def _key(name: str) -> bytes:
    """A map entry's key field: attr `name`."""
    return _ld(_ENTRY_KEY, name.encode())


def _entry(key: bytes, value: bytes) -> bytes:
    """A NodeDef `attr` entry: the serialized AttrValue `value` under key field `key`."""
    return _ld(_ATTR, key + _ld(_ENTRY_VALUE, value))


def _strings(values: Iterable[bytes]) -> bytes:
    """A serialized AttrValue holding the list of strings `values` (an empty one too)."""
    return _ld(_LIST, b"".join([_ld(_STRING, v) for v in values]))


_OUTPUTS_KEY: Final = _key(io.OUTPUTS_ATTR)
_NAME_KEY: Final = _key(io.NAME_ATTR)
_DOMAIN_KEY: Final = _key(io.DOMAIN_ATTR)
_ORDER_KEY: Final = _key(io.ATTR_ORDER_ATTR)
_EXTRA_KEY: Final = _key(io.NODE_EXTRA_ATTR)
_VALUE_INFO_KEY: Final = _key(io.VALUE_INFO_ATTR)
_SHAPES_KEY: Final = _key(io.SHAPES_ATTR)
_CONST_OP: Final = _ld(_OP, b"Const")
_DTYPE_KEY: Final = _key("dtype")
_VALUE_KEY: Final = _key("value")
_OUTPUT_OP: Final = _ld(_OP, io.OUTPUT_OP.encode())
_OUTPUT_KEY: Final = _key(io.OUTPUT_ATTR)
_NONE_OP: Final = _ld(_OP, io.NONE_OP.encode())
_MODEL_OP: Final = _ld(_OP, io.MODEL_OP.encode())
_MODEL_KEY: Final = _key("model")
_ORDER_INFO_KEY: Final = _key("value_info_order")


def _input_field(ref: TensorRef) -> bytes:
    """The NodeDef input field that reads `ref` (`node` or `node:port`)."""
    node, port = ref
    return _ld(_INPUT, (node if port == 0 else f"{node}:{port}").encode())


def _safe_name(wanted: str) -> str:
    """`wanted` as a NodeDef name: no leading `/` or `^`, no trailing `:<digits>`."""
    if wanted[:1] in ("/", "^") or ":" in wanted:
        return _PORT_SUFFIX.sub(r"_\1", wanted.lstrip("/").lstrip("^"))
    return wanted


# --------------------------------------------------------------------------- the loader
class _Loader:
    """One model's conversion: names first, then producers, then the NodeDefs in order."""

    def __init__(self, model: ModelProto, wires: list[bytes] | None, path: Path):
        """The conversion of `model`, read from `path` (`wires`: its nodes' bytes, if read)."""
        self.model, self.path, self.onnx = model, path, model.graph
        self.wires = wires  # each node's bytes (None: the protobuf API reads the nodes)
        self.names: set[str] = set()
        # tensor -> (producer, port) as Graph parses the NodeDef input that reads it
        self.producer: dict[str, TensorRef] = {}
        # every NodeDef's name and, where it has no control inputs, its data inputs parsed (None:
        # Graph parses them itself), its wire bytes (None: the next NodeDef of `out`, made
        # through the protobuf API) and op, in the order the NodeDefs are made: `Graph(...)`
        self.order: list[str] = []
        self.parsed: list[list[TensorRef] | None] = []
        self.made: list[bytes | None] = []
        self.made_ops: list[str] = []
        self.out = GraphDef()
        self.none_node: str | None = None
        # an AttributeProto's bytes -> (its name, its attr entry, whether it holds a graph)
        self.converted: dict[bytes, tuple[str, bytes, bool]] = {}
        initializers = {t.name for t in self.onnx.initializer}
        self.input_index = {v.name: i for i, v in enumerate(self.onnx.input)}
        self.inputs = [v for v in self.onnx.input if v.name not in initializers]
        self.value_info = {v.name: v for v in self.onnx.value_info}
        self.output_info = {v.name: v for v in self.onnx.output}
        self.typed = set(self.value_info) | set(self.output_info)

    def unique(self, wanted: str, fallback: str) -> str:
        """A node name not taken yet: `wanted` made safe as a NodeDef name."""
        return self.claim(_safe_name(wanted) or fallback)

    def claim(self, base: str) -> str:
        """`base`, or `base_<n>` for the first n that makes a name not taken yet."""
        names = self.names
        size = len(names)
        names.add(base)  # one lookup where the name is free: claimed when the set grows
        if len(names) != size:
            return base
        name, count = base, 0
        while name in names:
            count += 1
            name = f"{base}_{count}"
        names.add(name)
        return name

    def produce(self, tensor: str, node: str, port: int) -> None:
        """Record that output `port` of node `node` is ONNX tensor `tensor`."""
        if not tensor:
            return
        producer = self.producer
        count = len(producer)  # one lookup: a tuple's identity does not survive compiling
        found = producer.setdefault(tensor, _new_ref(TensorRef, (node, port)))
        if len(producer) == count:
            raise ModelLoadError(
                f"{self.path}: tensor {tensor!r} is produced twice (by {found[0]!r} and "
                f"{node!r}); not a valid ONNX graph"
            )

    # ---------------------------------------------------------------- output
    def emit(self, body: bytes, name: str, op: str, inputs: list[TensorRef] | None) -> None:
        """One serialized NodeDef, named `name`, of op `op` and data inputs `inputs` (None: not
        given, or it has control inputs too)."""
        self.order.append(name)
        self.parsed.append(inputs)
        self.made.append(body)
        self.made_ops.append(op)

    def add(self, onnx_name: str, name: str, op: str) -> NodeDef:
        """A NodeDef made through the protobuf API, after the ones made so far."""
        self.order.append(name)
        self.parsed.append(None)
        self.made.append(None)
        self.made_ops.append(op)
        proto = self.out.node.add(name=name, op=op)
        if name != onnx_name:
            proto.attr[io.NAME_ATTR].s = onnx_name.encode()
        return proto

    def graph_def(self) -> GraphDef:
        inputs, initializers, sparse_names = self.plan_sources()
        names, heads = self.plan_nodes()
        for value, name in zip(self.inputs, inputs, strict=True):
            self.placeholder(value, name)
        self.consts(initializers)
        for sparse, name in zip(self.onnx.sparse_initializer, sparse_names, strict=True):
            proto = self.add(sparse.values.name, name, io.SPARSE_OP)
            proto.attr[io.SPARSE_ATTR].s = sparse.SerializeToString(deterministic=True)
        self.nodes(names, heads)
        for value in self.onnx.output:
            self.sink(value)
        self.header()
        return self.out

    def plan_sources(self) -> tuple[list[str], list[str], list[str]]:
        """Claim the names of graph inputs, initializers and sparse initializers."""
        found: tuple[list[str], list[str], list[str]] = ([], [], [])
        groups = (
            (self.inputs, "input"), (self.onnx.initializer, "initializer"),
            ([s.values for s in self.onnx.sparse_initializer], "sparse"),
        )  # fmt: skip
        for names, (values, fallback) in zip(found, groups, strict=True):
            for value in values:
                names.append(self.unique(value.name, fallback))
                self.produce(value.name, names[-1], 0)
        return found

    def plan_nodes(self) -> tuple[list[str], list[bytes]]:
        """Claim every node's name and record every tensor's producer before any input is
        read. For each node: its name and the start of its NodeDef (name field,
        `_onnx_outputs`, and `_onnx_name` and value_info entries where it has them)."""
        names, heads = [], []
        claim, produce, typed = self.claim, self.produce, self.typed
        for index in range(len(self.onnx.node)):
            fields = self.fields(index)[0]
            tensors = fields.outputs
            onnx_name = fields.name
            wanted = onnx_name or next((t for t in tensors if t), "")
            name = claim(_safe_name(wanted) or f"{fields.op_type}_{index}")
            for port, tensor in enumerate(tensors):
                produce(tensor, name, port)
            outputs = b"".join([_ld(_STRING, t.encode()) for t in tensors])
            head = _ld(_NAME, name.encode()) + _entry(_OUTPUTS_KEY, _ld(_LIST, outputs))
            if name != onnx_name:
                head += _entry(_NAME_KEY, _ld(_STRING, onnx_name.encode()))
            if typed and not typed.isdisjoint(tensors):
                head += self.shapes(fields.op_type, tensors)
            names.append(name)
            heads.append(head)
        return names, heads

    def fields(self, index: int) -> tuple[NodeFields, NodeProto | None]:
        """Node `index`'s core fields, read from its bytes where they hold no others; else
        through the protobuf API, with the NodeProto (whose other fields `extra` keeps)."""
        if self.wires is not None:
            found = node_fields(self.wires[index])
            if found is not None:
                return found, None
        node = self.onnx.node[index]
        fields = NodeFields()
        fields.inputs, fields.outputs = node.input[:], node.output[:]
        fields.name, fields.op_type = node.name, node.op_type
        fields.attributes = [attr.SerializeToString() for attr in node.attribute]
        fields.domain = node.domain if node.HasField("domain") else None
        return fields, node

    def ref(self, tensor: str, reader: str) -> TensorRef:
        """The (node, port) that ONNX tensor `tensor` is (`""`: port 0 of the `_OnnxNone`
        node)."""
        if not tensor:
            if self.none_node is None:
                self.none_node = self.unique("_onnx_none", "_onnx_none")
            return _new_ref(TensorRef, (self.none_node, 0))
        found = self.producer.get(tensor)
        if found is None:
            raise ModelLoadError(
                f"{self.path}: {reader} reads tensor {tensor!r}, which no node, graph input or "
                "initializer produces"
            )
        return found

    def placeholder(self, value: Any, name: str) -> None:
        proto = self.add(value.name, name, "Placeholder")
        proto.attr["dtype"].type = io.ONNX_TO_TF.get(elem_type(value.type), 0)
        proto.attr["shape"].shape.CopyFrom(dims_shape(value.type))
        proto.attr[io.INPUT_ATTR].s = value.SerializeToString(deterministic=True)
        if value.name in self.value_info:
            proto.MergeFromString(self.shapes("Placeholder", [value.name]))

    def consts(self, names: list[str]) -> None:
        """The initializers' Const nodes: a tensor of raw data alone, with a type TensorFlow
        has, neither large nor a graph input nor described in value_info, as wire bytes (its
        dtype and shape written once per pair); any other through `const`."""
        headers: dict[tuple[int, tuple[int, ...]], tuple[bytes, bytes, int]] = {}
        slow = self.input_index.keys() | self.value_info.keys()
        emit = self.emit
        for tensor, name in zip(self.onnx.initializer, names, strict=True):
            raw = tensor.raw_data
            onnx_name = tensor.name
            if not raw or len(raw) > _BIG_TENSOR or onnx_name in slow:
                self.const(tensor, name)
                continue
            key = (tensor.data_type, tuple(tensor.dims))
            known = headers.get(key)
            if known is None:
                known = headers[key] = self.const_header(*key)
            dtype, shape, size = known
            name_bytes = onnx_name.encode()
            if tensor.ByteSize() != size + _field_size(len(raw)) + (
                _field_size(len(name_bytes)) if name_bytes else 0
            ):  # another field is set: not plain
                self.const(tensor, name)
                continue
            value = _ld(_TENSOR, shape + _ld(_CONTENT, raw))
            body = _ld(_NAME, name.encode()) + _CONST_OP + dtype + _entry(_VALUE_KEY, value)
            if name != onnx_name:
                body += _entry(_NAME_KEY, _ld(_STRING, name_bytes))
            emit(body, name, "Const", [])

    def const_header(self, data_type: int, dims: tuple[int, ...]) -> tuple[bytes, bytes, int]:
        """For initializers of this type and shape: the `dtype` attr entry, the TF tensor's
        dtype and shape fields, and the ONNX tensor's wire size without its name and data
        (size -1, which no tensor has, where the type has no plain raw form)."""
        dtype = io.ONNX_TO_TF.get(data_type)
        if dtype is None or data_type == TensorProto.STRING:
            return b"", b"", -1
        probe = TensorProto(dims=dims, data_type=data_type)
        tensor = TfTensor(dtype=dtype)
        tensor.tensor_shape.CopyFrom(shape_proto(list(dims)))
        entry = _entry(_DTYPE_KEY, _TYPE + varint(dtype))
        return entry, tensor.SerializeToString(deterministic=True), probe.ByteSize()

    def const(self, tensor: TensorProto, name: str) -> None:
        proto = self.add(tensor.name, name, "Const")
        if tensor.data_location == TensorProto.EXTERNAL:
            tensor = self.inline(tensor, proto)
        if fill_tf_tensor(proto.attr["value"].tensor, tensor):
            proto.attr["dtype"].type = proto.attr["value"].tensor.dtype
            plain = is_plain(tensor)
        else:
            del proto.attr["value"]
            proto.attr["dtype"].type = 0
            proto.attr[io.SHAPES_ATTR].list.shape.add().CopyFrom(shape_proto(list(tensor.dims)))
            plain = False
        if not plain:
            kept = TensorProto()
            kept.CopyFrom(tensor)
            kept.ClearField("name")
            proto.attr[io.TENSOR_ATTR].s = kept.SerializeToString(deterministic=True)
        if tensor.name in self.input_index:
            original = self.onnx.input[self.input_index[tensor.name]]
            proto.attr[io.INPUT_ATTR].s = original.SerializeToString(deterministic=True)
            proto.attr[io.INPUT_INDEX_ATTR].i = self.input_index[tensor.name]
        if tensor.name in self.value_info:
            proto.MergeFromString(self.shapes("Const", [tensor.name]))

    def inline(self, tensor: TensorProto, proto: NodeDef) -> TensorProto:
        """A copy of an external tensor with its bytes read in; `proto` notes the source."""
        data, data_path = external_bytes(self.path, tensor)
        loaded = TensorProto()
        loaded.CopyFrom(tensor)
        loaded.ClearField("external_data")
        loaded.ClearField("data_location")
        loaded.raw_data = data
        proto.attr[io.EXTERNAL_ATTR].s = str(data_path.resolve()).encode()
        return loaded

    def nodes(self, names: list[str], heads: list[bytes]) -> None:
        """The operator nodes' NodeDefs, from what `plan_nodes` made."""
        producer, emit, attributes = self.producer, self.emit, self.attributes
        ops: dict[str, tuple[str, bytes]] = {}
        for index, name in enumerate(names):
            head = heads[index]
            heads[index] = b""  # freed as it is used
            fields, node = self.fields(index)
            tensors = fields.inputs
            refs: list[TensorRef] = []
            inputs: list[TensorRef] | None = refs
            for tensor in tensors:
                found = producer.get(tensor)
                if found is None:  # an empty optional input (or a missing tensor: raises)
                    refs = [self.ref(t, repr(name)) for t in tensors]
                    inputs = None  # Graph parses them from the NodeDef
                    break
                refs.append(found)
            found_op = ops.get(fields.op_type)
            if found_op is None:  # one str object per op type, and its op field
                found_op = ops[fields.op_type] = (fields.op_type, _ld(_OP, fields.op_type.encode()))
            op_type, op = found_op
            body = head + op
            controls = b""
            if fields.attributes:
                entries, graphs = attributes(fields.attributes)
                body += entries
                if graphs:
                    controls = self.controls(node or self.onnx.node[index], name)
                    if controls:  # control inputs too: Graph parses the node's inputs
                        inputs = None
            if inputs is None:  # else the Graph is given them parsed, and the NodeDef's input
                # fields are written from them when it is parsed
                body += b"".join([_input_field(ref) for ref in refs]) + controls
            if fields.domain is not None:
                body += _entry(_DOMAIN_KEY, _ld(_STRING, fields.domain.encode()))
            if node is not None:
                body += self.extra(node)
            emit(body, name, op_type, inputs)

    def controls(self, node: NodeProto, name: str) -> bytes:
        """Control inputs on the producers of what `node`'s subgraphs read from this graph."""
        free = dict.fromkeys(n for sub in subgraphs(node) for n in free_names(sub))
        controls = dict.fromkeys(self.ref(t, repr(name))[0] for t in free)
        return b"".join([_ld(_INPUT, f"^{c}".encode()) for c in controls if c != name])

    def attributes(self, attributes: list[bytes]) -> tuple[bytes, bool]:
        """A node's attributes, each serialized: their attr entries, whether one holds a
        graph."""
        converted = self.converted
        entries, names, graphs = [], [], False
        for wire in attributes:
            found = converted.get(wire)
            if found is None:
                found = self.convert(wire)
            name, entry, graph = found
            entries.append(entry)
            names.append(name)
            graphs = graphs or graph
        if len(names) > 1 and names != sorted(names):
            entries.append(_entry(_ORDER_KEY, _strings([n.encode() for n in names])))
        return b"".join(entries), graphs

    def convert(self, wire: bytes) -> tuple[str, bytes, bool]:
        """The attr entry of serialized AttributeProto `wire` (kept whole, as the protobuf API
        serializes it, when it is not plain), remembered when small."""
        attr = AttributeProto()
        attr.ParseFromString(wire)
        value = attr_value(attr)
        if value is None:
            entry = _entry(_key(io.ATTR_PREFIX + attr.name), _ld(_STRING, attr.SerializeToString()))
        else:
            entry = _entry(_key(attr.name), value.SerializeToString(deterministic=True))
        found = (attr.name, entry, attr.HasField("g") or len(attr.graphs) > 0)
        if len(wire) <= 256:
            self.converted[wire] = found
        return found

    def extra(self, node: NodeProto) -> bytes:
        """The `_onnx_node_extra` entry of a node with fields beyond the core ones."""
        extra = NodeProto()
        extra.CopyFrom(node)
        for field in _NODE_CORE:
            extra.ClearField(field)
        if not extra.ByteSize():
            return b""
        return _entry(_EXTRA_KEY, _ld(_STRING, extra.SerializeToString(deterministic=True)))

    def shapes(self, op: str, tensors: list[str]) -> bytes:
        """The attr entries of value_info of `tensors` (a node's outputs) -> `_onnx_value_info`
        and, with the graph outputs' types, `_output_shapes`."""
        infos = [self.value_info.get(t) if t else None for t in tensors]
        typed = [info or (self.output_info.get(t) if t else None) for t, info in zip(
            tensors, infos, strict=True)]  # fmt: skip
        out = b""
        if any(infos):
            kept = [v.SerializeToString(deterministic=True) if v else b"" for v in infos]
            out += _entry(_VALUE_INFO_KEY, _strings(kept))
        if op in ("Placeholder", "Const") or not any(typed):
            return out
        shapes = AttrValue()
        for value in typed:
            shapes.list.shape.add().CopyFrom(dims_shape(value.type) if value else shape_proto(None))
        return out + _entry(_SHAPES_KEY, shapes.SerializeToString(deterministic=True))

    def sink(self, value: Any) -> None:
        """The `_OnnxOutput` node of graph output `value` (a ValueInfoProto)."""
        name = self.unique(f"_onnx_output/{value.name.lstrip('/')}", "_onnx_output")
        info = _ld(_STRING, value.SerializeToString(deterministic=True))
        self.emit(_ld(_NAME, name.encode()) + _OUTPUT_OP + _input_field(self.ref(value.name, name))
                  + _entry(_OUTPUT_KEY, info), name, io.OUTPUT_OP, None)  # fmt: skip

    def header(self) -> None:
        """The `_OnnxNone` node where one is read, then the `_OnnxModel` header node."""
        header = ModelProto()
        copy_fields(self.model, header, ("graph",))
        copy_fields(self.onnx, header.graph, _GRAPH_LISTS)
        produced = self.producer
        header.graph.value_info.extend(v for v in self.onnx.value_info if v.name not in produced)
        if self.none_node is not None:
            self.emit(_ld(_NAME, self.none_node.encode()) + _NONE_OP, self.none_node, io.NONE_OP,
                      [])  # fmt: skip
        name = self.unique("_onnx_model", "_onnx_model")
        model = _ld(_STRING, header.SerializeToString(deterministic=True))
        order = _strings([v.name.encode() for v in self.onnx.value_info])
        self.emit(_ld(_NAME, name.encode()) + _MODEL_OP + _entry(_MODEL_KEY, model)
                  + _entry(_ORDER_INFO_KEY, order), name, io.MODEL_OP, [])  # fmt: skip
