"""What an ONNX save makes of a Graph's values, node by node: initializers (from a Const's kept
original or its `value`, raw data as wire pieces), external data, graph inputs' ValueInfoProtos
with edited shapes applied, and ONNX attributes from TF attrs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from surgery.ir import onnx_io as io
from surgery.ir.node import Node
from surgery.ir.onnx_load_values import tf_tensor
from surgery.ir.onnx_pb import (
    AttributeProto,
    ModelProto,
    TensorProto,
    TensorShapeProto,
    ValueInfoProto,
)
from surgery.ir.onnx_save_wire import INITIALIZER, RAW_DATA, ld
from surgery.ir.protos import AttrValue
from surgery.ir.protos import TensorProto as TfTensor
from surgery.ir.tensor_values import shape_of, to_numpy
from surgery.ir.wire import read_varint, skip_field, varint

# Initializer bytes past which every tensor of 1 KiB or more goes to external data (one
# protobuf message holds at most 2 GiB).
EXTERNAL_ABOVE = 3 << 29
EXTERNAL_MIN_TENSOR = 1024
ALIGN = 64


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


class RawTensor(NamedTuple):
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


def initializer_wire(tensor: TensorProto | RawTensor) -> list[bytes]:
    """GraphProto.initializer field of `tensor`, in pieces (no copy of raw data)."""
    if isinstance(tensor, TensorProto):
        return [ld(INITIALIZER, tensor.SerializeToString(deterministic=True))]
    data = RAW_DATA + varint(len(tensor.data))
    size = len(tensor.head) + len(data) + len(tensor.data)
    return [INITIALIZER + varint(size), tensor.head, data, tensor.data]


def initializer(node: Node, name: str) -> TensorProto:
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


def externalize(tensors: list[TensorProto | RawTensor], marked: set[str]) -> list[TensorProto]:
    """The initializers to write as external data, made TensorProtos in `tensors` too: those
    `marked` (by name: loaded from it), and every one of 1 KiB or more when the model would be
    too large for one protobuf message."""
    sizes = {
        i: len(t.data) if isinstance(t, RawTensor) else len(t.raw_data)
        for i, t in enumerate(tensors)
        if isinstance(t, RawTensor) or t.HasField("raw_data")
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
        proto = tensor.proto() if isinstance(tensor, RawTensor) else tensor
        tensors[i] = proto
        placed.append(proto)
    return placed


def place(tensors: list[TensorProto], location: str) -> Iterator[bytes]:
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
def refit(value_type: Any, shape: Any) -> None:
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


def graph_input(node: Node, name: str) -> ValueInfoProto:
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
        refit(info.type, attrs["shape"].shape)
    return info


# --------------------------------------------------------------------------- attributes
def onnx_attribute(key: str, value: AttrValue, node: str) -> AttributeProto:
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


def onnx_attributes(node: Node) -> list[AttributeProto]:
    attrs = node.attr
    found: dict[str, AttributeProto] = {}
    for key in sorted(attrs):
        if key.startswith(io.ATTR_PREFIX):
            kept = AttributeProto()
            kept.ParseFromString(attrs[key].s)
            found[key[len(io.ATTR_PREFIX) :]] = kept
        elif not key.startswith("_"):
            found[key] = onnx_attribute(key, attrs[key], node.name)
    order = []
    if io.ATTR_ORDER_ATTR in attrs:
        order = [k.decode() for k in attrs[io.ATTR_ORDER_ATTR].list.s if k.decode() in found]
    order.extend(k for k in found if k not in order)
    return [found[k] for k in order]


def text_attr(node: Node, key: str) -> str | None:
    return node.attr[key].s.decode() if key in node.attr else None


def import_domains(model: ModelProto, domains: list[str]) -> None:
    """Add opset 1 of each domain a node uses (`domains`: each node's, in order) that the model
    does not import (a plugin node inserted by a rule, say): the checker and runtimes refuse a
    node of an unimported domain."""
    imported = {e.domain or "ai.onnx" for e in model.opset_import}
    for domain in domains:
        if (domain or "ai.onnx") not in imported:
            imported.add(domain or "ai.onnx")  # "" and "ai.onnx" are one domain
            model.opset_import.add(domain=domain, version=1)


def plain_tensor(value: bytes) -> tuple[bytes, bytes] | None:
    """A serialized AttrValue that holds a TF tensor of at most a dtype, a shape and
    tensor_content (each once): (the tensor's dtype and shape fields, its tensor_content);
    None where it holds anything else (protobuf reads such a value)."""
    key, pos = read_varint(value, 0) if value else (0, 0)
    if key != 0x42:  # AttrValue.tensor
        return None
    size, pos = read_varint(value, pos)
    if pos + size != len(value):
        return None
    head, data = [], b""
    seen = 0  # bits of the field numbers met
    while pos < len(value):
        start = pos
        key, pos = read_varint(value, pos)
        if key not in (0x08, 0x12, 0x22):  # dtype, tensor_shape, tensor_content
            return None
        bit = 1 << (key >> 3)
        if seen & bit:
            return None
        seen |= bit
        end = skip_field(value, key, pos)
        if key == 0x22:
            data = value[read_varint(value, pos)[1] : end]
        else:
            head.append(value[start:end])
        pos = end
    return b"".join(head), data


def tensor_head(tensor: TfTensor) -> bytes | None:
    """The dims and data_type fields of the ONNX initializer of a TF tensor of this dtype and
    shape, or None where `onnx_tensor` would not write its tensor_content as raw_data."""
    data_type = io.TF_TO_ONNX.get(tensor.dtype)
    dims = shape_of(tensor.tensor_shape)
    if data_type in (None, TensorProto.STRING) or dims is None or any(d < 0 for d in dims):
        return None
    return TensorProto(dims=dims, data_type=data_type).SerializeToString()
