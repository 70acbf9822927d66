"""Element types of ONNX tensors the exporter wrote no value_info for, derived from their producers.

Exporters leave most intermediate tensors untyped (the TorchScript exporter types few past a
data-dependent op), yet a rule must tell `scores` (float) from `labels` (int64). The type
follows from the producer: its value_info when present, a Cast's `to`, a Constant's value, an
initializer or graph input, ConstantOfShape's value, ops whose output has their first operand's
type (Gather, Slice, Reshape, arithmetic, ...), comparisons (bool) and index-making ops (int64).
"""

from __future__ import annotations

from typing import Any

from surgery.ir.ports import TensorRef

# ONNX TensorProto.DataType -> the dtype names the rule language uses.
_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
          8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
          16: "bfloat16"}  # fmt: skip
# Ops whose outputs have the element type of their input 0.
_SAME_AS_FIRST = frozenset({
    "Abs", "Add", "Ceil", "Clip", "Concat", "Div", "Exp", "Expand", "Flatten", "Floor", "Gather",
    "GatherElements", "GatherND", "Identity", "LeakyRelu", "Log", "Max", "Min", "Mod", "Mul",
    "Neg", "Pad", "Pow", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
    "Relu", "Reshape", "Resize", "Round", "ScatterElements", "ScatterND", "Sigmoid", "Slice",
    "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile", "TopK", "Transpose",
    "Unsqueeze", "Range", "Sign", "Reciprocal", "Conv", "ConvTranspose", "Gemm", "MatMul",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
    "InstanceNormalization", "LayerNormalization", "Erf", "Sin", "Cos", "Elu", "Selu",
    "HardSigmoid", "Softplus", "Gelu", "LRN", "RoiAlign", "DepthToSpace", "SpaceToDepth",
    "CumSum", "Einsum", "Trilu", "Dropout", "ReduceL2", "ReduceLogSumExp", "LogSoftmax",
})  # fmt: skip
_BOOL = frozenset({"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And",
                   "Or", "Xor", "IsNaN", "IsInf"})  # fmt: skip
_INT64 = frozenset({"Shape", "Size", "NonZero", "ArgMax", "ArgMin", "NonMaxSuppression"})


def _declared(node: Any, port: int) -> str | None:
    """The type the node's own value_info (or a Cast/Constant attribute) gives port `port`."""
    from surgery.ir.onnx_io import VALUE_INFO_ATTR

    infos = node.attr.get(VALUE_INFO_ATTR)
    if infos is not None and port < len(infos.list.s) and infos.list.s[port]:
        from onnx import ValueInfoProto

        info = ValueInfoProto.FromString(infos.list.s[port])
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            return _NAMES.get(info.type.tensor_type.elem_type)
    if node.op == "Cast" and "to" in node.attr:
        return _NAMES.get(int(node.attr["to"].i))
    if node.op == "Constant":
        from surgery.ir.onnx_io import constant_value

        value = constant_value(node)
        return None if value is None else str(value.dtype)
    return None


def onnx_dtype(graph: Any, ref: TensorRef) -> str | None:
    """The element type of tensor `ref` of an ONNX model's graph, or None when it is not known
    (an op outside the tables above on the way up)."""
    for _ in range(100_000):  # a chain of producers, walked up; a graph is acyclic
        node = graph.get(ref.node)
        if node is None:
            return None
        kept = node.attr.get("dtype")  # an initializer (Const) or graph input (Placeholder)
        if kept is not None and kept.WhichOneof("value") == "type":
            from surgery.ir.tensor_values import dtype_name

            return dtype_name(kept.type)
        found = _declared(node, ref.port)
        if found is not None:
            return found
        op = node.op
        if op in _BOOL:
            return "bool"
        if op in _INT64 or (op == "TopK" and ref.port == 1):  # TopK's indices
            return "int64"
        if op == "ConstantOfShape":  # its `value` (float32 zero when left out)
            value = node.attr.get("value")
            if value is None or not value.HasField("tensor"):
                return "float32"
            from surgery.ir.tensor_values import dtype_name

            return dtype_name(value.tensor.dtype)
        if op == "Where" and len(node.inputs) == 3:
            ref = node.inputs[1]
        elif op in _SAME_AS_FIRST and node.inputs:
            ref = node.inputs[0]
        else:
            return None
    return None
