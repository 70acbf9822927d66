"""ONNX ModelProto -> Graph: the loading half of `surgery.onnx_io` (its docstring has the
mapping). Every failure to read or parse the file is a ModelLoadError naming it."""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import message
from google.protobuf.unknown_fields import UnknownFieldSet
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, numpy_helper

from surgery import onnx_io as io
from surgery.errors import ModelLoadError, SurgeryError
from surgery.graph import Graph
from surgery.protos import AttrValue, GraphDef, NodeDef
from surgery.protos import TensorProto as TfTensor
from surgery.tensor_values import shape_proto

_GRAPH_LISTS = ("node", "initializer", "sparse_initializer", "input", "output", "value_info")
_NODE_CORE = ("name", "input", "output", "op_type", "attribute", "domain")
_PLAIN_TENSOR_FIELDS = {"name", "dims", "data_type", "raw_data", "string_data"}
_PORT_SUFFIX = re.compile(r":(\d+)$")
_SCALAR_KINDS = {AttributeProto.INT: "i", AttributeProto.FLOAT: "f", AttributeProto.STRING: "s"}
_LIST_KINDS = {AttributeProto.INTS: "ints", AttributeProto.FLOATS: "floats"}


def load_model(path: Path) -> Graph:
    model = _read_model(path)
    try:
        return Graph(_Loader(model, path).graph_def())
    except ModelLoadError:
        raise
    except SurgeryError as exc:  # a tensor TensorFlow cannot describe, and the like
        raise ModelLoadError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- reading the file
def _read_model(path: Path) -> ModelProto:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if not size:
                raise ModelLoadError(f"{path}: empty file (0 bytes), not an ONNX model")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                model = _parse(path, size, mapped)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelLoadError(f"{path}: is a directory, not an ONNX file") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc.strerror})") from None
    if not model.HasField("graph") or not model.ir_version:
        unknown = len(UnknownFieldSet(model))
        why = f"{unknown} fields unknown to ModelProto" if unknown else "no graph or ir_version"
        raise ModelLoadError(f"{path}: protobuf is not an ONNX model ({why})")
    return model


def _parse(path: Path, size: int, mapped: mmap.mmap) -> ModelProto:
    model = ModelProto()
    view = memoryview(mapped)
    try:
        model.ParseFromString(view)
    except message.DecodeError:
        raise ModelLoadError(
            f"{path}: not an ONNX model (truncated or corrupt protobuf, {size} bytes)"
        ) from None
    finally:
        view.release()
    return model


def _external_bytes(model_path: Path, tensor: TensorProto) -> tuple[bytes, Path]:
    """The bytes of a tensor kept in an external data file, and that file."""
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    relative = Path(location)
    if not location or relative.is_absolute() or ".." in relative.parts:
        raise ModelLoadError(
            f"{model_path}: tensor {tensor.name!r} has an invalid external data location "
            f"{location!r} (it must be a path inside the model's folder)"
        )
    data_path = model_path.parent / relative
    offset = int(entries.get("offset") or 0)
    length = int(entries["length"]) if entries.get("length") else -1
    try:
        with open(data_path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
    except FileNotFoundError:
        raise ModelLoadError(
            f"{model_path}: external data file {data_path} (tensor {tensor.name!r}) is missing"
        ) from None
    except OSError as exc:
        raise ModelLoadError(f"{model_path}: cannot read {data_path} ({exc.strerror})") from None
    if length >= 0 and len(data) != length:
        raise ModelLoadError(
            f"{model_path}: external data file {data_path} ends before tensor {tensor.name!r} "
            f"(offset {offset}, length {length})"
        )
    return data, data_path


# --------------------------------------------------------------------------- conversions
def tf_tensor(tensor: TensorProto) -> TfTensor | None:
    """An ONNX tensor's values as a TF TensorProto (raw bytes, no per-value work); None for a
    type TensorFlow lacks."""
    dtype = io.ONNX_TO_TF.get(tensor.data_type)
    if dtype is None:
        return None
    out = TfTensor(dtype=dtype)
    out.tensor_shape.CopyFrom(shape_proto(list(tensor.dims)))
    if tensor.data_type == TensorProto.STRING:
        out.string_val.extend(tensor.string_data)
    elif tensor.HasField("raw_data"):
        out.tensor_content = tensor.raw_data
    else:
        array = numpy_helper.to_array(tensor)
        out.tensor_content = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    return out


def _is_plain(tensor: TensorProto) -> bool:
    """Whether saving `tf_tensor(tensor)` gives `tensor` back byte for byte."""
    fields = {field.name for field, _ in tensor.ListFields()}
    data = "string_data" if tensor.data_type == TensorProto.STRING else "raw_data"
    return fields <= _PLAIN_TENSOR_FIELDS and data in fields and tensor.data_type in io.ONNX_TO_TF


def _dims_shape(value_type: Any) -> Any:
    """TensorShapeProto of a TypeProto (-1 for symbolic or unknown dims; unknown rank if it
    has no shape or is not a tensor)."""
    kind = value_type.WhichOneof("value")
    inner = getattr(value_type, kind) if kind in ("tensor_type", "sparse_tensor_type") else None
    if inner is None or not inner.HasField("shape"):
        return shape_proto(None)
    return shape_proto([d.dim_value if d.HasField("dim_value") else -1 for d in inner.shape.dim])


def _elem_type(value_type: Any) -> int:
    kind = value_type.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        return int(getattr(value_type, kind).elem_type)
    return 0


def _attr_value(attr: AttributeProto) -> AttrValue | None:
    """A plain attribute as an AttrValue, or None when it must be kept whole."""
    fields = {field.name for field, _ in attr.ListFields()} - {"name", "type"}
    if attr.name.startswith("_") or len(fields) != 1:
        return None
    field = fields.pop()
    if _SCALAR_KINDS.get(attr.type) == field:
        return AttrValue(**{field: getattr(attr, field)})
    if _LIST_KINDS.get(attr.type) == field:
        values = list(getattr(attr, field))
        return AttrValue(list={"i" if field == "ints" else "f": values})
    if attr.type == AttributeProto.STRINGS and field == "strings":
        return AttrValue(list=AttrValue.ListValue(s=list(attr.strings)))
    if attr.type == AttributeProto.TENSOR and field == "t" and not attr.t.name:
        if _is_plain(attr.t):
            return AttrValue(tensor=tf_tensor(attr.t))
    return None


def _free_names(graph: GraphProto) -> list[str]:
    """Tensor names a subgraph reads from enclosing graphs, in order of first use."""
    defined = {v.name for v in graph.input}
    defined.update(t.name for t in graph.initializer)
    defined.update(t.values.name for t in graph.sparse_initializer)
    for node in graph.node:
        defined.update(node.output)
    used: dict[str, None] = {}
    for node in graph.node:
        used.update(dict.fromkeys(node.input))
        for sub in _subgraphs(node):
            used.update(dict.fromkeys(_free_names(sub)))
    used.update(dict.fromkeys(v.name for v in graph.output))
    return [name for name in used if name and name not in defined]


def _subgraphs(node: NodeProto) -> Iterator[GraphProto]:
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def _copy_fields(source: Any, target: Any, skip: tuple[str, ...]) -> None:
    """Copy the set fields of `source` but `skip` into `target` (no copy of what is skipped)."""
    for field, value in source.ListFields():
        if field.name in skip:
            continue
        if field.is_repeated:
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _list_attr(values: Iterable[str | bytes]) -> AttrValue:
    out = AttrValue()
    out.list.SetInParent()
    out.list.s.extend(v.encode() if isinstance(v, str) else v for v in values)
    return out


# --------------------------------------------------------------------------- the loader
class _Loader:
    """One model's conversion: names first, then producers, then the NodeDefs in order."""

    def __init__(self, model: ModelProto, path: Path):
        self.model, self.path, self.onnx = model, path, model.graph
        self.names: set[str] = set()
        self.producer: dict[str, tuple[str, int]] = {}  # tensor -> (node name, port)
        self.out = GraphDef()
        self.none_node: str | None = None
        initializers = {t.name for t in self.onnx.initializer}
        self.input_index = {v.name: i for i, v in enumerate(self.onnx.input)}
        self.inputs = [v for v in self.onnx.input if v.name not in initializers]
        self.value_info = {v.name: v for v in self.onnx.value_info}
        self.output_info = {v.name: v for v in self.onnx.output}

    def unique(self, wanted: str, fallback: str) -> str:
        """A node name not taken yet: `wanted` made safe as a NodeDef name."""
        base = _PORT_SUFFIX.sub(r"_\1", wanted.lstrip("/").lstrip("^")) or fallback
        name, count = base, 0
        while name in self.names:
            count += 1
            name = f"{base}_{count}"
        self.names.add(name)
        return name

    def produce(self, tensor: str, node: str, port: int) -> None:
        if not tensor:
            return
        if tensor in self.producer:
            raise ModelLoadError(
                f"{self.path}: tensor {tensor!r} is produced twice (by "
                f"{self.producer[tensor][0]!r} and {node!r}); not a valid ONNX graph"
            )
        self.producer[tensor] = (node, port)

    def add(self, onnx_name: str, name: str, op: str) -> NodeDef:
        proto = self.out.node.add(name=name, op=op)
        if name != onnx_name:
            proto.attr[io.NAME_ATTR].s = onnx_name.encode()
        return proto

    def graph_def(self) -> GraphDef:
        node_names = self.plan_names()
        for value in self.inputs:
            self.placeholder(value)
        for tensor in self.onnx.initializer:
            self.const(tensor)
        for sparse in self.onnx.sparse_initializer:
            proto = self.add(sparse.values.name, self.producer[sparse.values.name][0], io.SPARSE_OP)
            proto.attr[io.SPARSE_ATTR].s = sparse.SerializeToString(deterministic=True)
        for node, name in zip(self.onnx.node, node_names, strict=True):
            self.node(node, name)
        for value in self.onnx.output:
            self.sink(value)
        self.header()
        return self.out

    def plan_names(self) -> list[str]:
        """Claim every node name and record every tensor's producer before any input is read."""
        for value in self.inputs:
            self.produce(value.name, self.unique(value.name, "input"), 0)
        for tensor in self.onnx.initializer:
            self.produce(tensor.name, self.unique(tensor.name, "initializer"), 0)
        for sparse in self.onnx.sparse_initializer:
            self.produce(sparse.values.name, self.unique(sparse.values.name, "sparse"), 0)
        names = []
        for index, node in enumerate(self.onnx.node):
            wanted = node.name or next((t for t in node.output if t), "")
            name = self.unique(wanted, f"{node.op_type}_{index}")
            for port, tensor in enumerate(node.output):
                self.produce(tensor, name, port)
            names.append(name)
        return names

    def ref(self, tensor: str, reader: str) -> str:
        """NodeDef input string of ONNX tensor `tensor` (`""`: the `_OnnxNone` node)."""
        if not tensor:
            if self.none_node is None:
                self.none_node = self.unique("_onnx_none", "_onnx_none")
            return self.none_node
        found = self.producer.get(tensor)
        if found is None:
            raise ModelLoadError(
                f"{self.path}: {reader} reads tensor {tensor!r}, which no node, graph input or "
                "initializer produces"
            )
        name, port = found
        return name if port == 0 else f"{name}:{port}"

    def placeholder(self, value: Any) -> None:
        proto = self.add(value.name, self.producer[value.name][0], "Placeholder")
        proto.attr["dtype"].type = io.ONNX_TO_TF.get(_elem_type(value.type), 0)
        proto.attr["shape"].shape.CopyFrom(_dims_shape(value.type))
        proto.attr[io.INPUT_ATTR].s = value.SerializeToString(deterministic=True)
        self.shapes(proto, [value.name])

    def const(self, tensor: TensorProto) -> None:
        proto = self.add(tensor.name, self.producer[tensor.name][0], "Const")
        if tensor.data_location == TensorProto.EXTERNAL:
            tensor = self.inline(tensor, proto)
        value = tf_tensor(tensor)
        proto.attr["dtype"].type = value.dtype if value is not None else 0
        if value is not None:
            proto.attr["value"].tensor.CopyFrom(value)
        if value is None or not _is_plain(tensor):
            kept = TensorProto()
            kept.CopyFrom(tensor)
            kept.ClearField("name")
            proto.attr[io.TENSOR_ATTR].s = kept.SerializeToString(deterministic=True)
        if value is None:
            proto.attr[io.SHAPES_ATTR].list.shape.add().CopyFrom(shape_proto(list(tensor.dims)))
        if tensor.name in self.input_index:
            original = self.onnx.input[self.input_index[tensor.name]]
            proto.attr[io.INPUT_ATTR].s = original.SerializeToString(deterministic=True)
            proto.attr[io.INPUT_INDEX_ATTR].i = self.input_index[tensor.name]
        self.shapes(proto, [tensor.name])

    def inline(self, tensor: TensorProto, proto: NodeDef) -> TensorProto:
        """A copy of an external tensor with its bytes read in; `proto` notes the source."""
        data, data_path = _external_bytes(self.path, tensor)
        loaded = TensorProto()
        loaded.CopyFrom(tensor)
        loaded.ClearField("external_data")
        loaded.ClearField("data_location")
        loaded.raw_data = data
        proto.attr[io.EXTERNAL_ATTR].s = str(data_path.resolve()).encode()
        return loaded

    def node(self, node: NodeProto, name: str) -> None:
        proto = self.add(node.name, name, node.op_type)
        proto.input.extend(self.ref(t, repr(name)) for t in node.input)
        free = dict.fromkeys(n for sub in _subgraphs(node) for n in _free_names(sub))
        for tensor in free:
            self.ref(tensor, repr(name))  # raises for a name nothing produces
        controls = dict.fromkeys(self.producer[t][0] for t in free)
        proto.input.extend(f"^{c}" for c in controls if c != name)
        if node.HasField("domain"):
            proto.attr[io.DOMAIN_ATTR].s = node.domain.encode()
        proto.attr[io.OUTPUTS_ATTR].CopyFrom(_list_attr(node.output))
        self.attributes(proto, node.attribute)
        extra = NodeProto()
        extra.CopyFrom(node)
        for field in _NODE_CORE:
            extra.ClearField(field)
        if extra.ByteSize():
            proto.attr[io.NODE_EXTRA_ATTR].s = extra.SerializeToString(deterministic=True)
        self.shapes(proto, list(node.output))

    def attributes(self, proto: NodeDef, attributes: Iterable[AttributeProto]) -> None:
        order = []
        for attr in attributes:
            value = _attr_value(attr)
            if value is None:
                kept = proto.attr[io.ATTR_PREFIX + attr.name]
                kept.s = attr.SerializeToString(deterministic=True)
            else:
                proto.attr[attr.name].CopyFrom(value)
            order.append(attr.name)
        if order != sorted(order):
            proto.attr[io.ATTR_ORDER_ATTR].CopyFrom(_list_attr(order))

    def shapes(self, proto: NodeDef, tensors: list[str]) -> None:
        """value_info of `tensors` (a node's outputs) -> `_onnx_value_info` and, with the graph
        outputs' types, `_output_shapes`."""
        infos = [self.value_info.get(t) if t else None for t in tensors]
        typed = [info or (self.output_info.get(t) if t else None) for t, info in zip(
            tensors, infos, strict=True)]  # fmt: skip
        if any(infos):
            kept = [v.SerializeToString(deterministic=True) if v else b"" for v in infos]
            proto.attr[io.VALUE_INFO_ATTR].CopyFrom(_list_attr(kept))
        if proto.op in ("Placeholder", "Const") or not any(typed):
            return
        shapes = proto.attr[io.SHAPES_ATTR].list.shape
        for value in typed:
            shapes.add().CopyFrom(_dims_shape(value.type) if value else shape_proto(None))

    def sink(self, value: Any) -> None:
        name = self.unique(f"_onnx_output/{value.name.lstrip('/')}", "_onnx_output")
        proto = self.out.node.add(name=name, op=io.OUTPUT_OP, input=[self.ref(value.name, name)])
        proto.attr[io.OUTPUT_ATTR].s = value.SerializeToString(deterministic=True)

    def header(self) -> None:
        header = ModelProto()
        _copy_fields(self.model, header, ("graph",))
        _copy_fields(self.onnx, header.graph, _GRAPH_LISTS)
        produced = set(self.producer)
        header.graph.value_info.extend(v for v in self.onnx.value_info if v.name not in produced)
        if self.none_node is not None:
            self.out.node.add(name=self.none_node, op=io.NONE_OP)
        name = self.unique("_onnx_model", "_onnx_model")
        proto = self.out.node.add(name=name, op=io.MODEL_OP)
        proto.attr["model"].s = header.SerializeToString(deterministic=True)
        order = [v.name for v in self.onnx.value_info]
        proto.attr["value_info_order"].CopyFrom(_list_attr(order))
