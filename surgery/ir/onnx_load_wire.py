"""ONNX loading's wire reading: the serialized NodeProtos of a model file's main graph, found
in the file's bytes, and a NodeProto's core fields read from its bytes.

At a million nodes, reading a node through the protobuf API (a microsecond or so a call, a
dozen calls a node) was most of a load; read here, in compiled code, a node costs a fraction of
that. Anything unusual is left to the protobuf API: `graph_nodes` gives None for a model whose
layout it does not follow, `node_fields` None for a node with more than the core fields.
"""

from __future__ import annotations

import mmap
from typing import Final

from surgery.ir.wire import read_varint

_MODEL_GRAPH: Final = 0x3A  # ModelProto.graph (field 7, length-delimited)
_GRAPH_NODE: Final = 0x0A  # GraphProto.node (field 1)
# NodeProto's core fields (length-delimited keys); name, op_type and domain may appear once (a
# repeat: the API reads the node)
_INPUT: Final = 0x0A
_OUTPUT: Final = 0x12
_NAME: Final = 0x1A
_OP_TYPE: Final = 0x22
_ATTRIBUTE: Final = 0x2A
_DOMAIN: Final = 0x3A


class NodeFields:
    """A NodeProto's core fields: inputs, outputs, name, op type, each attribute's bytes and
    domain (None: not set)."""

    def __init__(self) -> None:
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.name = ""
        self.op_type = ""
        self.attributes: list[bytes] = []
        self.domain: str | None = None


def _mapped_varint(data: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    """The varint at `pos` of `data` and where it ends (-1: it runs past `end`)."""
    value = shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return 0, -1


def _field_end(data: mmap.mmap, key: int, pos: int, end: int) -> int:
    """Where the field of key `key` whose value starts at `pos` ends (-1: a group field, or it
    runs past `end`)."""
    kind = key & 7
    if kind == 0:
        return _mapped_varint(data, pos, end)[1]
    if kind == 2:
        size, pos = _mapped_varint(data, pos, end)
        return pos + size if pos >= 0 and pos + size <= end else -1
    if kind == 1 or kind == 5:
        stop = pos + (8 if kind == 1 else 4)
        return stop if stop <= end else -1
    return -1


def _fields(data: mmap.mmap, start: int, end: int) -> list[tuple[int, int, int]] | None:
    """(key, value start, value end) of each field of the message in `data[start:end]`; None
    where a field is a group or runs past `end`."""
    found = []
    pos = start
    while pos < end:
        key, pos = _mapped_varint(data, pos, end)
        if pos < 0:
            return None
        value = pos
        if key & 7 == 2:
            _, value = _mapped_varint(data, pos, end)
            if value < 0:
                return None
        pos = _field_end(data, key, pos, end)
        if pos < 0:
            return None
        found.append((key, value, pos))
    return found


def graph_nodes(data: mmap.mmap) -> list[bytes] | None:
    """Each serialized NodeProto of the main graph of the ModelProto in `data`, in order; None
    where the model has several graph fields (parsing merges them) or a field this reading
    does not follow."""
    top = _fields(data, 0, len(data))
    graphs = [f for f in top if f[0] == _MODEL_GRAPH] if top is not None else []
    if len(graphs) != 1:
        return None
    _, pos, end = graphs[0]
    found = []
    while pos < end:  # the graph's fields: nodes sliced, the others skipped
        key, pos = _mapped_varint(data, pos, end)
        if pos < 0:
            return None
        if key == _GRAPH_NODE:
            size, pos = _mapped_varint(data, pos, end)
            if pos < 0 or pos + size > end:
                return None
            found.append(data[pos : pos + size])
            pos += size
        else:
            pos = _field_end(data, key, pos, end)
            if pos < 0:
                return None
    return found


def node_fields(data: bytes) -> NodeFields | None:
    """The core fields of serialized NodeProto `data`; None where the protobuf API must read
    it: a field beyond the core ones, a name, op type or domain given twice, a string that is
    not UTF-8."""
    out = NodeFields()
    seen = 0
    pos, end = 0, len(data)
    try:
        while pos < end:
            key = data[pos]
            size = data[pos + 1]
            pos += 2
            if size >= 0x80:
                size, pos = read_varint(data, pos - 1)
            stop = pos + size
            if stop > end:
                return None
            if key == _INPUT:
                out.inputs.append(data[pos:stop].decode())
            elif key == _OUTPUT:
                out.outputs.append(data[pos:stop].decode())
            elif key == _ATTRIBUTE:
                out.attributes.append(data[pos:stop])
            else:
                bit = 1 if key == _NAME else 2 if key == _OP_TYPE else 4 if key == _DOMAIN else 0
                if not bit or seen & bit:
                    return None
                seen |= bit
                text = data[pos:stop].decode()
                if bit == 1:
                    out.name = text
                elif bit == 2:
                    out.op_type = text
                else:
                    out.domain = text
            pos = stop
    except (UnicodeDecodeError, IndexError):
        return None
    return out
