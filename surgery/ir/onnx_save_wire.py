"""ONNX saving's wire bytes: the keys of the ModelProto, GraphProto, NodeProto and TensorProto
fields written by hand, length-delimited fields, reading varints and skipping fields, reading a
serialized NodeDef's attrs (one serialization read here costs less than walking its attr map
through the protobuf API), and putting the pieces of a model together (`assemble`)."""

from __future__ import annotations

from typing import Final

from surgery.ir import onnx_io as io
from surgery.ir.onnx_pb import ModelProto
from surgery.ir.wire import varint

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


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def skip_field(data: bytes, key: int, pos: int) -> int:
    """Where the field of key `key` whose value starts at `pos` in `data` ends."""
    kind = key & 7
    if kind == 0:
        return read_varint(data, pos)[1]
    if kind == 2:
        size, pos = read_varint(data, pos)
        return pos + size
    if kind in (1, 5):
        return pos + (8 if kind == 1 else 4)
    raise io.OnnxSaveError(f"a serialized message holds a group field ({key >> 3})")


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


def attr_values(node_def: bytes) -> dict[str, bytes]:
    """A serialized NodeDef's attr map: each key's serialized AttrValue (a later entry of a key
    wins, as in parsing). One serialization of the NodeDef read here costs less than reading
    the map through the protobuf API (a call for the map, one per key and per value)."""
    found: dict[str, bytes] = {}
    pos, end = 0, len(node_def)
    while pos < end:
        key, pos = read_varint(node_def, pos)
        if key != 0x2A:  # NodeDef.attr, a map entry
            pos = skip_field(node_def, key, pos)
            continue
        size, pos = read_varint(node_def, pos)
        name, value = "", b""
        at, stop = pos, pos + size
        while at < stop:
            inner, at = read_varint(node_def, at)
            if inner == 0x0A or inner == 0x12:  # the entry's key, its value
                length, at = read_varint(node_def, at)
                if inner == 0x0A:
                    name = node_def[at : at + length].decode()
                else:
                    value = node_def[at : at + length]
                at += length
            else:
                at = skip_field(node_def, inner, at)
        found[name] = value
        pos = stop
    return found


def list_strings(attr_value: bytes) -> list[bytes]:
    """`list.s` of a serialized AttrValue ([] where it holds no list)."""
    found: list[bytes] = []
    pos, end = 0, len(attr_value)
    while pos < end:
        key, pos = read_varint(attr_value, pos)
        if key != 0x0A:  # AttrValue.list
            pos = skip_field(attr_value, key, pos)
            continue
        size, pos = read_varint(attr_value, pos)
        at, stop = pos, pos + size
        while at < stop:
            inner, at = read_varint(attr_value, at)
            if inner == 0x12:  # ListValue.s
                length, at = read_varint(attr_value, at)
                found.append(attr_value[at : at + length])
                at += length
            else:
                at = skip_field(attr_value, inner, at)
        pos = stop
    return found


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
