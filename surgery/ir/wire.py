"""Protobuf wire format by hand, where a message is streamed in pieces instead of built, or read
without parsing it whole: base-128 varints, the keys of length-delimited fields, skipping
fields, and a serialized NodeDef's attrs (one serialization read here costs less than walking
its attr map through the protobuf API: a call for the map, one per key and per value)."""

from __future__ import annotations

from surgery.errors import GraphError


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_key(field: int) -> bytes:
    """The key (tag) of length-delimited field number `field`."""
    return varint(field << 3 | 2)


GRAPHDEF_NODE_KEY = field_key(1)
"""GraphDef.node (field 1): the key before each serialised NodeDef of a streamed GraphDef."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` of `data` and where it ends."""
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
    raise GraphError(f"a serialized message holds a group field ({key >> 3}), which surgery "
                     "does not read")  # fmt: skip


def _next_attr(node_def: bytes, pos: int) -> tuple[int, int, int, int, int]:
    """The first attr map entry of a serialized NodeDef at or after `pos`: (where the entry
    ends, its key's start and end, its value's start and end); the first item is -1 when
    there is none. Other fields are skipped; a later entry of a key wins, as in parsing."""
    end = len(node_def)
    while pos < end:
        tag, pos = read_varint(node_def, pos)
        if tag != 0x2A:  # NodeDef.attr, a map entry
            pos = skip_field(node_def, tag, pos)
            continue
        size, pos = read_varint(node_def, pos)
        key_start = key_end = value_start = value_end = pos
        at, stop = pos, pos + size
        while at < stop:
            inner, at = read_varint(node_def, at)
            if inner == 0x0A or inner == 0x12:  # the entry's key, its value
                length, at = read_varint(node_def, at)
                if inner == 0x0A:
                    key_start, key_end = at, at + length
                else:
                    value_start, value_end = at, at + length
                at += length
            else:
                at = skip_field(node_def, inner, at)
        return stop, key_start, key_end, value_start, value_end
    return -1, 0, 0, 0, 0


def attr_values(node_def: bytes) -> dict[str, bytes]:
    """A serialized NodeDef's attr map: each key's serialized AttrValue (a later entry of a key
    wins, as in parsing)."""
    found: dict[str, bytes] = {}
    pos, key_start, key_end, value_start, value_end = _next_attr(node_def, 0)
    while pos >= 0:
        found[node_def[key_start:key_end].decode()] = node_def[value_start:value_end]
        pos, key_start, key_end, value_start, value_end = _next_attr(node_def, pos)
    return found


def attr_value(node_def: bytes, key: bytes) -> bytes | None:
    """Attr `key` (UTF-8) of a serialized NodeDef, serialized (an AttrValue; the last entry of
    the key, as in parsing), or None: `attr_values(node_def).get(key)` without the others."""
    found = None
    pos, key_start, key_end, value_start, value_end = _next_attr(node_def, 0)
    while pos >= 0:
        if node_def[key_start:key_end] == key:
            found = node_def[value_start:value_end]
        pos, key_start, key_end, value_start, value_end = _next_attr(node_def, pos)
    return found


def list_strings(value: bytes) -> list[bytes]:
    """`list.s` of a serialized AttrValue ([] where it holds no list)."""
    found: list[bytes] = []
    pos, end = 0, len(value)
    while pos < end:
        key, pos = read_varint(value, pos)
        if key != 0x0A:  # AttrValue.list
            pos = skip_field(value, key, pos)
            continue
        size, pos = read_varint(value, pos)
        at, stop = pos, pos + size
        while at < stop:
            inner, at = read_varint(value, at)
            if inner == 0x12:  # ListValue.s
                length, at = read_varint(value, at)
                found.append(value[at : at + length])
                at += length
            else:
                at = skip_field(value, inner, at)
        pos = stop
    return found


def attr_string(value: bytes) -> bytes:
    """`s` of a serialized AttrValue (b"" where it holds none; the last one where several)."""
    found = b""
    pos, end = 0, len(value)
    while pos < end:
        key, pos = read_varint(value, pos)
        if key != 0x12:  # AttrValue.s
            pos = skip_field(value, key, pos)
            continue
        size, pos = read_varint(value, pos)
        found = value[pos : pos + size]
        pos += size
    return found
