"""How the pictures show a node: its colour category (op kind, plugin or not), its attributes
as text and its plugin fields; shared by `surgery view`, the HTML reports and the graph diff."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any

from surgery.errors import SurgeryError
from surgery.ir.node import Node
from surgery.ir.onnx_io import shown_attrs

# --------------------------------------------------------------------------- op categories
# category -> (fill colour, legend label); the order is the legend's order.
CATEGORIES: dict[str, tuple[str, str]] = {
    "plugin": ("#f2a7e8", "plugin (TensorRT)"),
    "conv": ("#9ecae1", "convolution"),
    "matmul": ("#a1d99b", "matmul / dense"),
    "activation": ("#fdd0a2", "activation"),
    "norm": ("#dadaeb", "normalisation"),
    "pool": ("#c6dbef", "pooling / resize"),
    "math": ("#fff3b0", "elementwise / reduce"),
    "shape": ("#e5f5e0", "shape / layout"),
    "const": ("#eeeeee", "constant / weight"),
    "io": ("#fcbba1", "input / output"),
    "control": ("#d9d9d9", "control flow"),
    "namespace": ("#ffffff", "collapsed namespace"),
    "other": ("#ffffff", "other"),
}

_OPS: dict[str, str] = {}
for _cat, _ops in {
    "conv": "Conv2D Conv3D DepthwiseConv2dNative Conv2DBackpropInput Conv3DBackpropInputV2 "
    "Conv2DTranspose FusedConv2D _FusedConv2D",
    "matmul": "MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 _FusedMatMul Einsum",
    "activation": "Relu Relu6 LeakyRelu Elu Selu Sigmoid Tanh Softmax LogSoftmax Softplus "
    "Softsign Gelu Swish",
    "norm": "FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 BatchNormWithGlobalNormalization "
    "LRN L2Normalize",
    "pool": "MaxPool AvgPool MaxPool3D AvgPool3D MaxPoolV2 ResizeNearestNeighbor ResizeBilinear "
    "CropAndResize NonMaxSuppressionV2 NonMaxSuppressionV3 NonMaxSuppressionV4 "
    "NonMaxSuppressionV5 TopKV2",
    "math": "Add AddV2 AddN Sub Mul RealDiv Div FloorDiv Maximum Minimum Neg Exp Log Sqrt Rsqrt "
    "Square Pow Abs BiasAdd Mean Sum Max Min Prod ArgMax ArgMin Greater GreaterEqual Less "
    "LessEqual Equal NotEqual LogicalAnd LogicalOr LogicalNot Cast Round Floor Ceil Select "
    "SelectV2 SquaredDifference ClipByValue Where",
    "shape": "Reshape Transpose Squeeze ExpandDims ConcatV2 Concat Split SplitV Slice "
    "StridedSlice Pack Unpack Gather GatherV2 GatherNd Tile Pad PadV2 MirrorPad Shape Size "
    "Rank Fill Range ZerosLike OnesLike BroadcastTo Identity IdentityN StopGradient "
    "DepthToSpace SpaceToDepth",
    "const": "Const VariableV2 VarHandleOp ReadVariableOp",
    "io": "Placeholder PlaceholderWithDefault",
    "control": "NoOp Switch Merge Enter Exit NextIteration LoopCond While StatelessWhile If "
    "StatelessIf ControlTrigger",
}.items():
    for _op in _ops.split():
        _OPS[_op] = _cat


@functools.lru_cache(maxsize=1)
def plugin_catalog() -> dict[str, Any]:
    """Plugin schemas by op name from `surgery.ops.plugin_schema`, or {} while it is unavailable."""
    try:
        from surgery.ops import plugin_schema

        catalog = plugin_schema.load_catalog()
    except (ImportError, AttributeError, OSError, SurgeryError):
        return {}
    if isinstance(catalog, Mapping):
        return dict(catalog)
    return {getattr(item, "name", str(item)): item for item in catalog}


def is_plugin_op(op: str) -> bool:
    """TensorRT plugin ops: in the plugin catalog, named `*_TRT`, or (when TensorFlow is already
    imported, never importing it for a picture) unknown to TensorFlow's op registry. By name
    only: `CropAndResize` is also TensorFlow's op, so ask `is_plugin_node` about a node."""
    if op in plugin_catalog() or op.endswith("_TRT"):
        return True
    if op in _OPS or "tensorflow" not in sys.modules:
        return False
    try:
        from surgery.ops.opdefs import is_known
    except ImportError:
        return False
    return not is_known(op)


def op_category(op: str) -> str:
    """The colour category of an op type (`plugin` before anything else); `node_category` for a
    node."""
    if is_plugin_op(op):
        return "plugin"
    return _OPS.get(op, "other")


def is_plugin_node(node: Node) -> bool:
    """Whether `node` is a plugin node: a catalog op is one unless the node is TensorFlow's op of
    that name (`surgery.ops.plugin_identity`: `CropAndResize` with attrs `T`, `method` is TF's);
    other ops as `is_plugin_op`. TensorFlow is consulted only when already imported."""
    catalog = plugin_catalog()
    if node.op in catalog:
        from surgery.ops.plugin_identity import is_plugin_node as in_catalog

        return in_catalog(node, catalog, use_tf="tensorflow" in sys.modules)
    return is_plugin_op(node.op)


def node_category(node: Node) -> str:
    """The colour category of a node: `plugin` for a plugin node, else its op's category
    (TensorFlow's `CropAndResize` is `pool`, the plugin of that name `plugin`)."""
    if is_plugin_node(node):
        return "plugin"
    return _OPS.get(node.op, "other")


# --------------------------------------------------------------------------- attribute text
def _dtype_name(enum: int) -> str:
    from surgery.ir.protos import types_pb2

    try:
        return types_pb2.DataType.Name(enum).removeprefix("DT_").lower()
    except ValueError:
        return f"dtype{enum}"


def _shape_text(shape: Any) -> str:
    if shape.unknown_rank:
        return "?"
    return "[" + ", ".join("?" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


def format_attr(value: Any, limit: int = 160) -> str:
    """A short, human-readable rendering of one AttrValue (tensors summarised, not dumped)."""
    kind = value.WhichOneof("value")
    if kind == "tensor":
        tensor = value.tensor
        dims = [d.size for d in tensor.tensor_shape.dim]
        count = 1
        for d in dims:
            count *= max(d, 0)
        text = f"{_dtype_name(tensor.dtype)} {_shape_text(tensor.tensor_shape)}"
        if count <= 8:
            text += " = " + _python_text(value)
        return text[:limit]
    if kind == "type":
        return _dtype_name(value.type)
    if kind == "shape":
        return _shape_text(value.shape)
    if kind == "s":
        return repr(value.s.decode("utf-8", "replace"))[:limit]
    if kind == "f":
        return f"{value.f:.7g}"
    if kind in ("i", "b"):
        return str(getattr(value, kind))
    return _python_text(value)[:limit]


def _plain_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.7g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain_text(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    if hasattr(value, "tolist"):
        return _plain_text(value.tolist())
    return repr(value)


def _python_text(value: Any) -> str:
    try:
        from surgery.ir.attrs import attr_value

        return _plain_text(attr_value(value))
    except (ImportError, ValueError, TypeError, SurgeryError):
        from google.protobuf import text_format

        return text_format.MessageToString(value, as_one_line=True)


def node_info(node: Node) -> dict[str, Any]:
    """What the hover panel shows for a node: op, attrs, inputs by slot, plugin fields."""
    attrs = {key: format_attr(node.attr[key]) for key in shown_attrs(node)}
    info: dict[str, Any] = {
        "name": node.name,
        "op": node.op,
        "cat": node_category(node),
        "attrs": attrs,
        "inputs": [str(ref) for ref in node.inputs],
        "controls": list(node.controls),
    }
    if node.device:
        info["device"] = node.device
    if info["cat"] == "plugin":
        info["fields"] = plugin_fields(node)
    return info


def plugin_fields(node: Node) -> list[list[str]]:
    """[field, declared type, value] rows for a plugin node (type '' when no schema is known)."""
    schema = plugin_catalog().get(node.op)
    declared: dict[str, str] = {}
    for spec in getattr(schema, "fields", None) or ():
        describe = getattr(spec, "describe", None)
        declared[spec.name] = describe() if callable(describe) else str(getattr(spec, "type", ""))
    rows = [[key, declared.get(key, ""), format_attr(node.attr[key])] for key in shown_attrs(node)]
    rows += [[name, kind, "(missing)"] for name, kind in declared.items() if name not in node.attr]
    return rows


def namespace_of(name: str) -> str:
    """`a/b/c` -> `a/b`; top-level names have the namespace ''."""
    return name.rpartition("/")[0]
