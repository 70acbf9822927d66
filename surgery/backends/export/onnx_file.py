"""Writing the ONNX file without ever holding the weights in a ModelProto.

tf2onnx's model arrives without the weights (`surgery.backends.export.initializers` lists them).
Inline, the file is streamed: protobuf writes a message's fields in field-number order, so the
model's bytes are its fields before `graph`, the graph's fields up to its own initializers, then one
encoded TensorProto per weight (its header, then the raw bytes straight from the GraphDef), then
the remaining fields. The result is byte for byte what `ModelProto.SerializeToString()` would give
with the initializers in place, at one tensor of memory. With external data (models over 1 GiB,
or on request; protobuf cannot hold one over 2 GiB) the weights, and the large tensors tf2onnx
kept in its external storage, go to `<model>.onnx.data` at 64-byte aligned offsets; the model
file holds their headers and locations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from surgery.backends.export.initializers import Initializer
from surgery.backends.export.tf2onnx_run import ExportError
from surgery.ir.atomic_files import write_atomic
from surgery.ir.wire import field_key, varint

PROTOBUF_LIMIT = (1 << 31) - 1  # bytes in one protobuf message
ALIGN = 64
_GRAPH_FIELD = 7  # ModelProto.graph
_INITIALIZER_FIELD = 5  # GraphProto.initializer
_RAW_DATA_FIELD = 9  # TensorProto.raw_data


def write_model(
    model: Any,
    initializers: list[Initializer],
    path: Path,
    *,
    external: bool,
    storage: Any = None,
) -> Path | None:
    """Write `model` plus `initializers` to `path`; with `external` (forced when tf2onnx kept
    tensors in its external `storage`), weights go to `<path>.data`, which is returned."""
    if external or storage is not None:
        return _write_external(model, initializers, path, storage)
    size = model.ByteSize() + sum(item.nbytes + 64 + len(item.name) for item in initializers)
    if size > PROTOBUF_LIMIT:
        raise ExportError(
            f"the model takes {size / 2**30:.1f} GiB, over protobuf's 2 GiB for one file; "
            "export with --large-model (weights as external data)"
        )
    write_atomic(path, _inline_chunks(model, initializers))
    return None


def _split(message: Any, field: int) -> tuple[bytes, bytes]:
    """`message`'s bytes up to and including field number `field`, and after it."""
    head, tail = type(message)(), type(message)()
    head.CopyFrom(message)
    tail.CopyFrom(message)
    for descriptor, _ in message.ListFields():
        (tail if descriptor.number <= field else head).ClearField(descriptor.name)
    return head.SerializeToString(), tail.SerializeToString()


def _inline_chunks(model: Any, initializers: list[Initializer]) -> Iterator[bytes | memoryview]:
    """The file's bytes in order; each weight's data is made when its turn comes."""
    headers = [item.header().SerializeToString() for item in initializers]
    entries = []  # (entry length, tensor length) per initializer
    for item, header in zip(initializers, headers, strict=True):
        raw_key = field_key(_RAW_DATA_FIELD)
        tensor = len(header) + len(raw_key) + len(varint(item.nbytes)) + item.nbytes
        entries.append((len(field_key(_INITIALIZER_FIELD)) + len(varint(tensor)) + tensor, tensor))
    graph_head, graph_tail = _split(model.graph, _INITIALIZER_FIELD)
    graph_size = len(graph_head) + sum(e for e, _ in entries) + len(graph_tail)
    model_only = type(model)()
    model_only.CopyFrom(model)
    model_only.ClearField("graph")
    model_head, model_tail = _split(model_only, _GRAPH_FIELD)
    yield model_head + field_key(_GRAPH_FIELD) + varint(graph_size) + graph_head
    for item, header, (_, tensor) in zip(initializers, headers, entries, strict=True):
        yield field_key(_INITIALIZER_FIELD) + varint(tensor) + header
        yield field_key(_RAW_DATA_FIELD) + varint(item.nbytes)
        yield item.data()
    yield graph_tail + model_tail


def _write_external(
    model: Any, initializers: list[Initializer], path: Path, storage: Any
) -> Path:
    """Weights (ours, and tf2onnx's external tensors) to `<path>.data`; the model beside it."""
    data_path = path.with_name(path.name + ".data")
    chunks: dict[str, bytes] = storage.name_to_tensor_data if storage is not None else {}
    offset = 0
    plan: list[tuple[int, Any]] = []  # (padding before, bytes or Initializer)

    def place(tensor: Any, length: int) -> None:
        nonlocal offset
        pad = -offset % ALIGN
        offset += pad
        del tensor.external_data[:]
        for key, value in (("location", data_path.name), ("offset", str(offset)),
                           ("length", str(length))):  # fmt: skip
            tensor.external_data.add(key=key, value=value)
        tensor.data_location = tensor.EXTERNAL
        offset += length

    for tensor in _all_tensors(model):
        if tensor.data_location != tensor.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        chunk = chunks.get(entries.get("location", ""))
        if chunk is None:
            raise ExportError(f"external data for tensor {tensor.name!r} is missing")
        pad = -offset % ALIGN
        place(tensor, len(chunk))
        plan.append((pad, chunk))
    for item in initializers:
        tensor = model.graph.initializer.add()
        tensor.CopyFrom(item.header())
        pad = -offset % ALIGN
        place(tensor, item.nbytes)
        plan.append((pad, item))
    write_atomic(data_path, _external_chunks(plan))
    write_atomic(path, model.SerializeToString())
    return data_path


def _external_chunks(plan: list[tuple[int, Any]]) -> Iterator[bytes | memoryview]:
    for pad, what in plan:
        if pad:
            yield bytes(pad)
        yield what.data() if isinstance(what, Initializer) else what


def _all_tensors(model: Any) -> list[Any]:
    """Initializers and tensor attributes of the main graph."""
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors.extend(a.t for a in node.attribute if a.HasField("t"))
    return tensors
