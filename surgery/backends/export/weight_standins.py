"""Weights kept out of tf2onnx: each weight Const is handed over as a Placeholder of its shape.

tf2onnx holds every constant several times over (TensorFlow's imports, grappler, NumPy arrays in
its optimizers, the ModelProto): tens of times the model's size. Yet for most weights it never
needs the value, only the dtype and shape: a convolution's filter, a MatMul operand, a BiasAdd's
bias, a batch norm's statistics, a plugin's input. Those Consts are replaced by Placeholders of
the same name, dtype and shape (TensorFlow's shape inference and tf2onnx's handlers see what they
would have seen); tf2onnx turns each into a graph input, and `surgery.backends.export.initializers`
turns those back into initializers holding the GraphDef's own bytes.

A Const stands in only where every reader (through Identity chains, as frozen graphs read their
weights) is such a slot, so nothing tf2onnx would read is hidden from it. Elementwise arithmetic
takes any operand as data too, but tf2onnx's pattern rewriters look for small constants there
(a LeakyRelu's alpha, a layer norm's epsilon), so only tensors of `ELEMENTWISE_MIN_BYTES` or more
stand in there. One consequence is deliberate: with the weights out of its sight, tf2onnx cannot
fold a batch norm into the convolution before it, so the ONNX model keeps BatchNormalization with
the original statistics (TensorRT fuses it when it builds the engine) and every weight
byte-identical to the GraphDef's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from surgery.errors import SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.node import Node
from surgery.ir.ports import TensorRef, parse_tensor
from surgery.ir.protos import NodeDef, TensorProto, types_pb2

# op -> input slots tf2onnx converts without reading the value (its handlers and rewriters only
# ask for the dtype and shape there; a kernel it would transpose gets a Transpose node instead).
WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "Conv2D": frozenset({1}),
    "Conv3D": frozenset({1}),
    "DepthwiseConv2dNative": frozenset({1}),
    "Conv2DBackpropInput": frozenset({1}),
    "MatMul": frozenset({0, 1}),
    "BatchMatMulV2": frozenset({0, 1}),
    "BiasAdd": frozenset({1}),
    "FusedBatchNorm": frozenset({1, 2, 3, 4}),
    "FusedBatchNormV2": frozenset({1, 2, 3, 4}),
    "FusedBatchNormV3": frozenset({1, 2, 3, 4}),
    "GatherV2": frozenset({0}),
}
ELEMENTWISE = frozenset(
    {"Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "SquaredDifference"}
)
ELEMENTWISE_MIN_BYTES = 4096
# TensorFlow dtype -> (ONNX TensorProto.DataType, bytes per value); tensor_content and ONNX's
# raw_data hold these in the same little-endian layout.
ONNX_DTYPES: dict[int, tuple[int, int]] = {
    types_pb2.DT_FLOAT: (1, 4),
    types_pb2.DT_HALF: (10, 2),
    types_pb2.DT_DOUBLE: (11, 8),
    types_pb2.DT_BFLOAT16: (16, 2),
}


class WeightError(SurgeryError):
    """A weight Const whose tensor contradicts its own shape (named in the message)."""


@dataclass(frozen=True)
class Weight:
    """One Const kept out of tf2onnx: its name (the stand-in Placeholder keeps it), the
    GraphDef's own TensorProto (referenced, never copied), dtype and shape."""

    name: str
    tensor: TensorProto
    dtype: int  # TensorFlow DataType enum, a key of ONNX_DTYPES
    shape: tuple[int, ...]

    @property
    def onnx_dtype(self) -> int:
        return ONNX_DTYPES[self.dtype][0]

    @property
    def itemsize(self) -> int:
        return ONNX_DTYPES[self.dtype][1]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.itemsize

    @property
    def tensor_name(self) -> str:
        """The name tf2onnx gives the stand-in's graph input (and would give the Const)."""
        return f"{self.name}:0"

    def raw(self) -> np.ndarray:
        """The values as unsigned integers of the dtype's width, in the Const's shape: bytes
        to copy or permute, never arithmetic (no float64 detour can change a bit)."""
        bits = np.dtype(f"<u{self.itemsize}")
        content = self.tensor.tensor_content
        if content:
            if len(content) != self.nbytes:
                raise WeightError(
                    f"Const {self.name!r}: tensor_content holds {len(content)} bytes, its shape "
                    f"{list(self.shape)} needs {self.nbytes}"
                )
            return np.frombuffer(content, dtype=bits).reshape(self.shape)
        from surgery.ir.tensor_values import to_numpy

        values = to_numpy(self.tensor)  # typed *_val fields (a splat fills the shape)
        return np.ascontiguousarray(values).view(bits).reshape(self.shape)

    def values(self) -> np.ndarray:
        """The values in their own dtype (a view of `raw`)."""
        from surgery.ir.tensor_values import numpy_dtype

        return self.raw().view(numpy_dtype(self.dtype).newbyteorder("<"))


def select_weights(
    graph: Graph, plugin_nodes: Collection[str], outputs: Iterable[str] = ()
) -> dict[str, Weight]:
    """The Consts to hand tf2onnx as Placeholders, by name: float tensors with a static shape,
    no control inputs, not an output (nor read by an Identity chain that is one), and read only
    in `WEIGHT_SLOTS`, plugin inputs, or (when large) elementwise operands."""
    wanted = {parse_tensor(o).node for o in outputs}
    found: dict[str, Weight] = {}
    for node in graph.nodes_by_op("Const"):
        if node.controls or node.name in wanted or "value" not in node.attr:
            continue
        tensor = node.attr["value"].tensor
        if tensor.dtype not in ONNX_DTYPES or node.attr["dtype"].type != tensor.dtype:
            continue
        if tensor.tensor_shape.unknown_rank:
            continue
        shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
        if any(d < 0 for d in shape) or not all(shape):
            continue  # an empty tensor: tf2onnx reads some (a batch norm's missing statistics)
        weight = Weight(node.name, tensor, tensor.dtype, shape)
        if _only_data_reads(graph, node, plugin_nodes, wanted, weight.nbytes):
            found[node.name] = weight
    return found


def _only_data_reads(
    graph: Graph, const: Node, plugin_nodes: Collection[str], wanted: set[str], nbytes: int
) -> bool:
    """True when every reader of `const`, through Identity chains, takes it as plain data."""
    stack = [const.name]
    read = False
    while stack:
        name = stack.pop()
        for user, slot in graph.consumers(TensorRef(name, 0)):
            if user.op == "Identity":
                if user.name in wanted:
                    return False
                stack.append(user.name)
            elif user.name in plugin_nodes or _weight_slot(user, slot):
                read = True
            elif user.op in ELEMENTWISE and nbytes >= ELEMENTWISE_MIN_BYTES:
                read = True
            else:
                return False
    return read


def _weight_slot(node: Node, slot: int) -> bool:
    """True when tf2onnx converts `node` alike whether input `slot` is a Const or not. An NCHW
    BiasAdd is the exception: tf2onnx reshapes its bias to [C, 1, 1] only when it is a Const
    (a Placeholder bias would broadcast along the width)."""
    if slot not in WEIGHT_SLOTS.get(node.op, ()):
        return False
    if node.op == "BiasAdd" and "data_format" in node.attr:
        return node.attr["data_format"].s != b"NCHW"
    return True


def placeholder(weight: Weight) -> NodeDef:
    """The stand-in: a Placeholder with the Const's name, dtype and (static) shape."""
    node = NodeDef(name=weight.name, op="Placeholder")
    node.attr["dtype"].type = weight.dtype
    shape = node.attr["shape"].shape
    for size in weight.shape:
        shape.dim.add(size=size)
    return node


def without_weights(graph: Graph, weights: Mapping[str, Weight]) -> Graph:
    """A new Graph of `graph`'s nodes with each Const in `weights` replaced by its stand-in
    Placeholder; the header (versions, function library) copied, no weight bytes copied."""
    out = graph._header_copy()  # versions and library, without the nodes
    for node in graph:
        weight = weights.get(node.name)
        if weight is not None:
            out.node.append(placeholder(weight))
        else:
            out.node.add().CopyFrom(node.proto)
    return Graph(out)
