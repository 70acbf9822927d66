"""ONNX saving's wire bytes: the keys of the ModelProto, GraphProto, NodeProto and TensorProto
fields written by hand, length-delimited fields, and putting the pieces of a model together
(`assemble`). Reading wire bytes (varints, fields, a NodeDef's attrs) is `surgery.ir.wire`'s."""

from __future__ import annotations

from typing import Final

from surgery.ir.onnx_pb import ModelProto
from surgery.ir.wire import read_varint, skip_field, varint

NODE: Final = b"\x0a"  # GraphProto.node
INPUT: Final = b"\x0a"  # NodeProto.input
OUTPUT: Final = b"\x12"  # NodeProto.output
NAME: Final = b"\x1a"  # NodeProto.name
OP_TYPE: Final = b"\x22"  # NodeProto.op_type
ATTRIBUTE: Final = b"\x2a"  # NodeProto.attribute
INITIALIZER: Final = b"\x2a"  # GraphProto.initializer
DOMAIN: Final = b"\x3a"  # NodeProto.domain
TENSOR_NAME: Final = b"\x42"  # TensorProto.name
RAW_DATA: Final = b"\x4a"  # TensorProto.raw_data
GRAPH: Final = b"\x3a"  # ModelProto.graph
_LENGTHS: Final = [bytes((size,)) for size in range(128)]


def ld(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: `key`, the payload's length, the payload."""
    size = len(payload)
    return key + (_LENGTHS[size] if size < 128 else varint(size)) + payload


def put(out: bytearray, key: bytes, payload: bytes) -> None:
    """Append the length-delimited field `ld(key, payload)` to `out` (no bytes made for it)."""
    size = len(payload)
    out += key
    out += _LENGTHS[size] if size < 128 else varint(size)
    out += payload


def cut(data: bytes, number: int) -> int:
    """Where the first field numbered `number` or more starts in serialized message `data`
    (its end if none is)."""
    pos = 0
    while pos < len(data):
        key, end = read_varint(data, pos)
        if key >> 3 >= number:
            return pos
        pos = skip_field(data, key, end)
    return pos


def assemble(model: ModelProto, nodes: list[bytes], initializers: list[bytes]) -> list[bytes]:
    """The wire bytes of `model` (whose graph has no nodes and no initializers) with the graph
    fields `nodes` and `initializers` (keys and lengths included) where serializing the whole
    would put them: the nodes first (field 1), the initializers after the graph's name."""
    data = model.SerializeToString(deterministic=True)
    at = cut(data, 7)
    graph, after = b"", data[at:]
    if after[:1] == GRAPH:
        size, start = read_varint(after, 1)
        graph, after = after[start : start + size], after[start + size :]
    middle = cut(graph, 5)
    size = sum(map(len, nodes)) + len(graph) + sum(map(len, initializers))
    return [data[:at], GRAPH + varint(size), *nodes, graph[:middle], *initializers,
            graph[middle:], after]  # fmt: skip
