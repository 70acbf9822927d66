"""Tensor names and ports: where `x`, `x:0`, `x:1` and `^x` are parsed and spelled.

`x` and `x:0` are one tensor (port 0 of node `x`); `x:1` is another one; `^x` is not a tensor at
all but a control edge from node `x`.
"""

from __future__ import annotations

from typing import NamedTuple

from surgery.errors import GraphError

# A plugin node made by a collapse names each side input it dropped (an entering tensor it does
# not take) in the attribute `_side_<role>`: the tensor's name, spelled as `str(TensorRef)`.
SIDE_ATTR_PREFIX = "_side_"
# A plugin field a rewrite clamped to its creator's limit keeps the value the rule asked for in
# `_clamped_<field>` (validate names it when outputs downstream differ).
CLAMPED_ATTR_PREFIX = "_clamped_"


class TensorRef(NamedTuple):
    """Output `port` of node `node`: the unit that edges, patterns and rewrites address."""

    node: str
    port: int = 0

    def __str__(self) -> str:
        return self.node if self.port == 0 else f"{self.node}:{self.port}"


def parse_input(text: str) -> tuple[TensorRef | None, str | None]:
    """Split one NodeDef input string into (data tensor, None) or (None, control source)."""
    if text.startswith("^"):
        return None, text[1:]
    return parse_tensor(text), None


def parse_tensor(text: str) -> TensorRef:
    """`x` -> (x, 0); `x:3` -> (x, 3). Names may contain ':' only as the port separator."""
    if not text or text.startswith("^"):
        raise GraphError(f"{text!r} is not a tensor name (expected 'node' or 'node:port')")
    name, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return TensorRef(name, int(port))
    return TensorRef(text, 0)


TensorLike = str | TensorRef | tuple[str, int]  # what `as_tensor` accepts


def as_tensor(value: TensorLike) -> TensorRef:
    """Accept a TensorRef, a `(node, port)` pair or a tensor name."""
    if isinstance(value, TensorRef):
        return value
    if isinstance(value, tuple):
        return TensorRef(value[0], int(value[1]))
    return parse_tensor(value)


def control_name(node: str) -> str:
    """The NodeDef spelling of a control input."""
    return "^" + node
