"""Protobuf wire format written by hand, where a message is streamed in pieces instead of built:
base-128 varints and the keys of length-delimited fields."""

from __future__ import annotations


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
