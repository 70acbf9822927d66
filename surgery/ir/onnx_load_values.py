"""ONNX loading's reading and conversions: the model file parsed (every failure a
ModelLoadError naming it), external data read, and ONNX tensors, types and attributes converted
to their TensorFlow forms (`tf_tensor`, `attr_value`, ...), with what decides whether a
conversion gives the original back on saving (`is_plain`)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import message
from google.protobuf.unknown_fields import UnknownFieldSet

from surgery.errors import ModelLoadError
from surgery.ir import onnx_io as io
from surgery.ir.onnx_load_wire import graph_nodes
from surgery.ir.onnx_pb import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto
from surgery.ir.protos import AttrValue
from surgery.ir.protos import TensorProto as TfTensor
from surgery.ir.tensor_values import shape_proto

_PLAIN_TENSOR_FIELDS = {"name", "dims", "data_type", "raw_data", "string_data"}
_SCALAR_KINDS = {AttributeProto.INT: "i", AttributeProto.FLOAT: "f", AttributeProto.STRING: "s"}
_LIST_KINDS = {AttributeProto.INTS: "ints", AttributeProto.FLOATS: "floats"}


# --------------------------------------------------------------------------- reading the file
def read_model(path: Path) -> tuple[ModelProto, list[bytes] | None]:
    """The model in file `path` and its main graph's serialized nodes (`graph_nodes`)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if not size:
                raise ModelLoadError(f"{path}: empty file (0 bytes), not an ONNX model")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                model = _parse(path, size, mapped)
                nodes = graph_nodes(mapped)
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
    if nodes is not None and len(nodes) != len(model.graph.node):
        nodes = None  # not the nodes the parse found: the API reads them
    return model, nodes


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


def external_bytes(model_path: Path, tensor: TensorProto) -> tuple[bytes, Path]:
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
    out = TfTensor()
    return out if fill_tf_tensor(out, tensor) else None


def fill_tf_tensor(out: TfTensor, tensor: TensorProto) -> bool:
    """`tf_tensor` written into `out` (no copy of the values in between); False, leaving `out`
    as it is, for a type TensorFlow lacks."""
    dtype = io.ONNX_TO_TF.get(tensor.data_type)
    if dtype is None:
        return False
    out.dtype = dtype
    out.tensor_shape.CopyFrom(shape_proto(list(tensor.dims)))
    if tensor.data_type == TensorProto.STRING:
        out.string_val.extend(tensor.string_data)
    elif tensor.HasField("raw_data"):
        out.tensor_content = tensor.raw_data
    else:  # typed fields (rare): onnx's converter, and `import onnx` with it
        from onnx import numpy_helper

        array = numpy_helper.to_array(tensor)
        out.tensor_content = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    return True


def is_plain(tensor: TensorProto) -> bool:
    """Whether saving `tf_tensor(tensor)` gives `tensor` back byte for byte."""
    fields = {field.name for field, _ in tensor.ListFields()}
    data = "string_data" if tensor.data_type == TensorProto.STRING else "raw_data"
    return fields <= _PLAIN_TENSOR_FIELDS and data in fields and tensor.data_type in io.ONNX_TO_TF


def dims_shape(value_type: Any) -> Any:
    """TensorShapeProto of a TypeProto (-1 for symbolic or unknown dims; unknown rank if it
    has no shape or is not a tensor)."""
    kind = value_type.WhichOneof("value")
    inner = getattr(value_type, kind) if kind in ("tensor_type", "sparse_tensor_type") else None
    if inner is None or not inner.HasField("shape"):
        return shape_proto(None)
    return shape_proto([d.dim_value if d.HasField("dim_value") else -1 for d in inner.shape.dim])


def elem_type(value_type: Any) -> int:
    kind = value_type.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        return int(getattr(value_type, kind).elem_type)
    return 0


def attr_value(attr: AttributeProto) -> AttrValue | None:
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
        if is_plain(attr.t):
            return AttrValue(tensor=tf_tensor(attr.t))
    return None


def free_names(graph: GraphProto) -> list[str]:
    """Tensor names a subgraph reads from enclosing graphs, in order of first use."""
    defined = {v.name for v in graph.input}
    defined.update(t.name for t in graph.initializer)
    defined.update(t.values.name for t in graph.sparse_initializer)
    for node in graph.node:
        defined.update(node.output)
    used: dict[str, None] = {}
    for node in graph.node:
        used.update(dict.fromkeys(node.input))
        for sub in subgraphs(node):
            used.update(dict.fromkeys(free_names(sub)))
    used.update(dict.fromkeys(v.name for v in graph.output))
    return [name for name in used if name and name not in defined]


def subgraphs(node: NodeProto) -> Iterator[GraphProto]:
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def copy_fields(source: Any, target: Any, skip: tuple[str, ...]) -> None:
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
