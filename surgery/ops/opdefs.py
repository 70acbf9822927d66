"""Operand roles: what each data input slot of an op means (`Conv2D(input, filter)`, ...).

A built-in table answers for the common ops without importing TensorFlow; an op missing from it is
looked up in TensorFlow's op registry when TensorFlow is installed (imported lazily, only then).
Table entries are `"inputs", "outputs"` with `name*N` for an argument repeated N times (N an int
attribute) and `name*[T]` for one whose length is the length of type-list attribute T; a test
checks every entry against TensorFlow's registry.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from surgery.errors import GraphError


@dataclass(frozen=True)
class ArgSpec:
    """One argument of an op: its name and, if variadic, the attribute that sizes it."""

    name: str
    number_attr: str = ""  # int attribute giving the count ("N", "num_split")
    type_list_attr: str = ""  # type-list attribute whose length is the count ("T", "Tin")
    rest: bool = False  # ONNX's variadic: however many tensors the node has left

    @property
    def variadic(self) -> bool:
        """Whether this argument stands for a list of tensors."""
        return bool(self.number_attr or self.type_list_attr or self.rest)


@dataclass(frozen=True)
class OpSignature:
    """The inputs and outputs of an op, and where the definition came from."""

    op: str
    inputs: tuple[ArgSpec, ...]
    outputs: tuple[ArgSpec, ...]
    source: str  # "builtin", "tensorflow" or "onnx"


@dataclass(frozen=True)
class OpSet:
    """Whose ops a graph's op types name: TensorFlow's (the built-in table, then TensorFlow's
    registry when `use_tf`), or ONNX's default domain at `opset` (`onnx.defs`; None: newest)."""

    format: str = "tf"
    opset: int | None = None
    use_tf: bool = True


ONNX_GRAPH_OPS = frozenset({"Const", "Placeholder"})
"""How an ONNX model's initializers and graph inputs appear in the IR (`surgery.ir.onnx_io`): ops of
its op set too, so that rules match `w = Const()` in both formats."""

TF = OpSet()
TF_TABLE = OpSet(use_tf=False)


def opset_of(graph: Any, *, use_tf: bool = True) -> OpSet:
    """The op set of a Graph: ONNX's at the model's opset for a model loaded from ONNX."""
    from surgery.ir.onnx_io import graph_opset, is_onnx_graph

    if is_onnx_graph(graph):
        return OpSet("onnx", graph_opset(graph))
    return TF if use_tf else TF_TABLE


# op: (inputs, outputs)
BUILTIN: dict[str, tuple[str, str]] = {
    "Abs": ("x", "y"),
    "Add": ("x, y", "z"),
    "AddN": ("inputs*N", "sum"),
    "AddV2": ("x, y", "z"),
    "All": ("input, reduction_indices", "output"),
    "Any": ("input, reduction_indices", "output"),
    "ArgMax": ("input, dimension", "output"),
    "ArgMin": ("input, dimension", "output"),
    "Assert": ("condition, data*[T]", ""),
    "AvgPool": ("value", "output"),
    "AvgPool3D": ("input", "output"),
    "BatchMatMulV2": ("x, y", "output"),
    "BatchMatMulV3": ("x, y", "output"),
    "BatchToSpaceND": ("input, block_shape, crops", "output"),
    "BiasAdd": ("value, bias", "output"),
    "BroadcastArgs": ("s0, s1", "r0"),
    "BroadcastTo": ("input, shape", "output"),
    "Cast": ("x", "y"),
    "Ceil": ("x", "y"),
    "CheckNumerics": ("tensor", "output"),
    "ClipByValue": ("t, clip_value_min, clip_value_max", "output"),
    "CombinedNonMaxSuppression": (
        "boxes, scores, max_output_size_per_class, max_total_size, iou_threshold, score_threshold",
        "nmsed_boxes, nmsed_scores, nmsed_classes, valid_detections",
    ),
    "ConcatV2": ("values*N, axis", "output"),
    "Const": ("", "output"),
    "Conv2D": ("input, filter", "output"),
    "Conv2DBackpropFilter": ("input, filter_sizes, out_backprop", "output"),
    "Conv2DBackpropInput": ("input_sizes, filter, out_backprop", "output"),
    "Conv3D": ("input, filter", "output"),
    "Conv3DBackpropInputV2": ("input_sizes, filter, out_backprop", "output"),
    "Cos": ("x", "y"),
    "CropAndResize": ("image, boxes, box_ind, crop_size", "crops"),
    "Cumsum": ("x, axis", "out"),
    "DenseToDenseSetOperation": ("set1, set2", "result_indices, result_values, result_shape"),
    "DepthToSpace": ("input", "output"),
    "DepthwiseConv2dNative": ("input, filter", "output"),
    "DepthwiseConv2dNativeBackpropInput": ("input_sizes, filter, out_backprop", "output"),
    "Div": ("x, y", "z"),
    "DivNoNan": ("x, y", "z"),
    "Einsum": ("inputs*N", "output"),
    "Elu": ("features", "activations"),
    "Empty": ("shape", "output"),
    "Enter": ("data", "output"),
    "Equal": ("x, y", "z"),
    "Erf": ("x", "y"),
    "Exit": ("data", "output"),
    "Exp": ("x", "y"),
    "ExpandDims": ("input, dim", "output"),
    "ExtractImagePatches": ("images", "patches"),
    "Fill": ("dims, value", "output"),
    "Floor": ("x", "y"),
    "FloorDiv": ("x, y", "z"),
    "FloorMod": ("x, y", "z"),
    "FusedBatchNorm": (
        "x, scale, offset, mean, variance",
        "y, batch_mean, batch_variance, reserve_space_1, reserve_space_2",
    ),
    "FusedBatchNormV3": (
        "x, scale, offset, mean, variance",
        "y, batch_mean, batch_variance, reserve_space_1, reserve_space_2, reserve_space_3",
    ),
    "GatherNd": ("params, indices", "output"),
    "GatherV2": ("params, indices, axis", "output"),
    "Greater": ("x, y", "z"),
    "GreaterEqual": ("x, y", "z"),
    "Identity": ("input", "output"),
    "IdentityN": ("input*[T]", "output*[T]"),
    "IsFinite": ("x", "y"),
    "L2Loss": ("t", "output"),
    "LRN": ("input", "output"),
    "LeakyRelu": ("features", "activations"),
    "Less": ("x, y", "z"),
    "LessEqual": ("x, y", "z"),
    "Log": ("x", "y"),
    "LogSoftmax": ("logits", "logsoftmax"),
    "LogicalAnd": ("x, y", "z"),
    "LogicalNot": ("x", "y"),
    "LogicalOr": ("x, y", "z"),
    "LoopCond": ("input", "output"),
    "MatMul": ("a, b", "product"),
    "Max": ("input, reduction_indices", "output"),
    "MaxPool": ("input", "output"),
    "MaxPool3D": ("input", "output"),
    "MaxPoolV2": ("input, ksize, strides", "output"),
    "Maximum": ("x, y", "z"),
    "Mean": ("input, reduction_indices", "output"),
    "Merge": ("inputs*N", "output, value_index"),
    "Min": ("input, reduction_indices", "output"),
    "Minimum": ("x, y", "z"),
    "MirrorPad": ("input, paddings", "output"),
    "Mod": ("x, y", "z"),
    "Mul": ("x, y", "z"),
    "Neg": ("x", "y"),
    "NextIteration": ("data", "output"),
    "NoOp": ("", ""),
    "NonMaxSuppressionV2": ("boxes, scores, max_output_size, iou_threshold", "selected_indices"),
    "NonMaxSuppressionV3": (
        "boxes, scores, max_output_size, iou_threshold, score_threshold",
        "selected_indices",
    ),
    "NonMaxSuppressionV5": (
        "boxes, scores, max_output_size, iou_threshold, score_threshold, soft_nms_sigma",
        "selected_indices, selected_scores, valid_outputs",
    ),
    "NonMaxSuppressionWithOverlaps": (
        "overlaps, scores, max_output_size, overlap_threshold, score_threshold",
        "selected_indices",
    ),
    "NotEqual": ("x, y", "z"),
    "OneHot": ("indices, depth, on_value, off_value", "output"),
    "OnesLike": ("x", "y"),
    "Pack": ("values*N", "output"),
    "Pad": ("input, paddings", "output"),
    "PadV2": ("input, paddings, constant_values", "output"),
    "PartitionedCall": ("args*[Tin]", "output*[Tout]"),
    "Placeholder": ("", "output"),
    "PlaceholderWithDefault": ("input", "output"),
    "Pow": ("x, y", "z"),
    "Print": ("input, data*[U]", "output"),
    "PrintV2": ("input", ""),
    "Prod": ("input, reduction_indices", "output"),
    "Range": ("start, limit, delta", "output"),
    "Rank": ("input", "output"),
    "RealDiv": ("x, y", "z"),
    "Reciprocal": ("x", "y"),
    "Relu": ("features", "activations"),
    "Relu6": ("features", "activations"),
    "Reshape": ("tensor, shape", "output"),
    "ResizeBicubic": ("images, size", "resized_images"),
    "ResizeBilinear": ("images, size", "resized_images"),
    "ResizeNearestNeighbor": ("images, size", "resized_images"),
    "ReverseV2": ("tensor, axis", "output"),
    "Round": ("x", "y"),
    "Rsqrt": ("x", "y"),
    "Select": ("condition, t, e", "output"),
    "SelectV2": ("condition, t, e", "output"),
    "Selu": ("features", "activations"),
    "Shape": ("input", "output"),
    "ShapeN": ("input*N", "output*N"),
    "Sigmoid": ("x", "y"),
    "Sign": ("x", "y"),
    "Sin": ("x", "y"),
    "Size": ("input", "output"),
    "Slice": ("input, begin, size", "output"),
    "Softmax": ("logits", "softmax"),
    "Softplus": ("features", "activations"),
    "Softsign": ("features", "activations"),
    "SpaceToBatchND": ("input, block_shape, paddings", "output"),
    "SpaceToDepth": ("input", "output"),
    "SparseToDense": ("sparse_indices, output_shape, sparse_values, default_value", "dense"),
    "Split": ("split_dim, value", "output*num_split"),
    "SplitV": ("value, size_splits, split_dim", "output*num_split"),
    "Sqrt": ("x", "y"),
    "Square": ("x", "y"),
    "SquaredDifference": ("x, y", "z"),
    "Squeeze": ("input", "output"),
    "StatefulPartitionedCall": ("args*[Tin]", "output*[Tout]"),
    "StatelessWhile": ("input*[T]", "output*[T]"),
    "StopGradient": ("input", "output"),
    "StridedSlice": ("input, begin, end, strides", "output"),
    "StringFormat": ("inputs*[T]", "output"),
    "Sub": ("x, y", "z"),
    "Sum": ("input, reduction_indices", "output"),
    "Switch": ("data, pred", "output_false, output_true"),
    "Tanh": ("x", "y"),
    "TensorListFromTensor": ("tensor, element_shape", "output_handle"),
    "TensorListReserve": ("element_shape, num_elements", "handle"),
    "TensorListStack": ("input_handle, element_shape", "tensor"),
    "Tile": ("input, multiples", "output"),
    "TopKV2": ("input, k", "values, indices"),
    "Transpose": ("x, perm", "y"),
    "Unique": ("x", "y, idx"),
    "Unpack": ("value", "output*num"),
    "Where": ("input", "index"),
    "While": ("input*[T]", "output*[T]"),
    "ZerosLike": ("x", "y"),
    "_FusedConv2D": ("input, filter, args*[TArgs], host_args*num_host_args", "output"),
    "_FusedMatMul": ("a, b, args*num_args", "product"),
}


def _parse_args(text: str) -> tuple[ArgSpec, ...]:
    """`"values*N, axis"` -> (ArgSpec('values', 'N'), ArgSpec('axis'))."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, star, size = item.partition("*")
        if not star:
            specs.append(ArgSpec(name))
        elif size.startswith("["):
            specs.append(ArgSpec(name, type_list_attr=size.strip("[]")))
        else:
            specs.append(ArgSpec(name, number_attr=size))
    return tuple(specs)


def _from_tf_arg(arg: Any) -> ArgSpec:
    """An ArgSpec from a TensorFlow OpDef.ArgDef."""
    return ArgSpec(arg.name, arg.number_attr, arg.type_list_attr)


def tensorflow_available() -> bool:
    """Whether TensorFlow is installed (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


@functools.cache
def tf_signature(op: str) -> OpSignature | None:
    """The op's signature from TensorFlow's registry; None if TF is missing or lacks the op."""
    if not tensorflow_available():
        return None
    try:
        from tensorflow.python.framework import op_def_registry
    except ImportError:
        return None
    op_def = op_def_registry.get(op)
    if op_def is None:
        return None
    return OpSignature(
        op,
        tuple(_from_tf_arg(a) for a in op_def.input_arg),
        tuple(_from_tf_arg(a) for a in op_def.output_arg),
        "tensorflow",
    )


@functools.cache
def builtin_signature(op: str) -> OpSignature | None:
    """The op's signature from the built-in table, or None."""
    entry = BUILTIN.get(op)
    if entry is None:
        return None
    return OpSignature(op, _parse_args(entry[0]), _parse_args(entry[1]), "builtin")


@functools.cache
def onnx_signature(op: str, opset: int | None = None) -> OpSignature | None:
    """The op's signature in ONNX's default domain at `opset` (`onnx.defs`), or None."""
    from onnx import defs

    try:
        schema = defs.get_schema(op, opset, "") if opset is not None else defs.get_schema(op, "")
    except defs.SchemaError:
        return None
    variadic = defs.OpSchema.FormalParameterOption.Variadic

    def specs(params: Any) -> tuple[ArgSpec, ...]:
        return tuple(ArgSpec(p.name, rest=p.option == variadic) for p in params)

    return OpSignature(op, specs(schema.inputs), specs(schema.outputs), "onnx")


@functools.cache
def onnx_attribute_default(op: str, name: str, opset: int | None = None) -> Any:
    """The default value of attribute `name` of ONNX op `op` at `opset` (`onnx.defs`), as
    `onnx.helper.get_attribute_value` gives it; None when the op, the attribute or a default is
    unknown. A node that leaves an attribute out has this value (RoiAlign's `mode` is "avg")."""
    from onnx import defs, helper

    try:
        schema = defs.get_schema(op, opset, "") if opset is not None else defs.get_schema(op, "")
    except defs.SchemaError:
        return None
    attribute = schema.attributes.get(name)
    if attribute is None or not attribute.default_value.name:
        return None
    value = helper.get_attribute_value(attribute.default_value)
    return value.decode() if isinstance(value, bytes) else value


@functools.cache
def onnx_op_names() -> frozenset[str]:
    """Every operator of ONNX's default domain that the installed onnx knows."""
    from onnx import defs

    names = {s.name for s in defs.get_all_schemas() if s.domain in ("", "ai.onnx")}
    return frozenset(names | ONNX_GRAPH_OPS)


def signature(op: str, *, use_tf: bool = True, ops: OpSet | None = None) -> OpSignature | None:
    """Under an ONNX `ops`, onnx.defs at its opset; else the built-in table first, then (if
    `use_tf`) TensorFlow's registry; None if none of them knows `op`."""
    if ops is not None:
        if ops.format == "onnx":
            if op in ONNX_GRAPH_OPS:  # initializers and graph inputs in the IR
                return builtin_signature(op)
            return onnx_signature(op, ops.opset)
        use_tf = ops.use_tf
    found = builtin_signature(op)
    if found is None and use_tf:
        found = tf_signature(op)
    return found


def is_known(op: str, *, use_tf: bool = True, ops: OpSet | None = None) -> bool:
    """Whether the op set defines `op` (plugin ops are unknown)."""
    return signature(op, use_tf=use_tf, ops=ops) is not None


def _require(op: str, use_tf: bool, ops: OpSet | None = None) -> OpSignature:
    """The signature of `op`, or a GraphError saying where we looked."""
    found = signature(op, use_tf=use_tf, ops=ops)
    if found is None and ops is not None and ops.format == "onnx":
        at = f" at opset {ops.opset}" if ops.opset is not None else ""
        raise GraphError(f"unknown op {op!r}: not an ONNX operator{at} (onnx.defs)")
    if found is None:
        use_tf = use_tf if ops is None else ops.use_tf
        where = "the built-in op table"
        if use_tf:
            where += (
                " or TensorFlow's op registry"
                if tensorflow_available()
                else " (TensorFlow is not installed, so its registry was not consulted)"
            )
        raise GraphError(f"unknown op {op!r}: not in {where}")
    return found


def arg_specs(op: str, *, use_tf: bool = True, ops: OpSet | None = None) -> list[ArgSpec]:
    """The op's input arguments as defined (a variadic one is a single ArgSpec)."""
    return list(_require(op, use_tf, ops).inputs)


def output_specs(op: str, *, use_tf: bool = True, ops: OpSet | None = None) -> list[ArgSpec]:
    """The op's output arguments as defined (a variadic one is a single ArgSpec)."""
    return list(_require(op, use_tf, ops).outputs)


def _attr_count(attrs: Mapping[str, Any] | None, spec: ArgSpec) -> int | None:
    """How many tensors a variadic argument stands for, from an attr map (protos or plain)."""
    if attrs is None or spec.rest:
        return None
    key = spec.number_attr or spec.type_list_attr
    if key not in attrs:
        return None
    value = attrs[key]
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple):
        return len(value)
    if spec.number_attr:  # an AttrValue proto
        return int(value.i)
    return len(value.list.type)


def _expand(
    specs: tuple[ArgSpec, ...], attrs: Mapping[str, Any] | None, total: int | None
) -> list[str]:
    """Role names with variadic arguments expanded as `name[i]`; `name[*]` where unsized."""
    counts = [_attr_count(attrs, s) if s.variadic else 1 for s in specs]
    unsized = [i for i, c in enumerate(counts) if c is None]
    if len(unsized) == 1 and total is not None:
        rest = sum(c for c in counts if c is not None)
        counts[unsized[0]] = max(0, total - rest)
    roles: list[str] = []
    for spec, count in zip(specs, counts, strict=True):
        if not spec.variadic:
            roles.append(spec.name)
        elif count is None:
            roles.append(f"{spec.name}[*]")
        else:
            roles.extend(f"{spec.name}[{i}]" for i in range(count))
    return roles


def input_roles(
    op: str,
    attrs: Mapping[str, Any] | None = None,
    num_inputs: int | None = None,
    *,
    use_tf: bool = True,
    ops: OpSet | None = None,
) -> list[str]:
    """The role of each data input slot of `op`, e.g. ConcatV2 -> values[0], values[1], axis.

    Variadic arguments are sized by their attribute in `attrs` (a NodeDef's attr map or plain
    ints/lists), else by `num_inputs` (the node's data input count) when only one is unsized;
    one that cannot be sized stays a single `name[*]` entry. ONNX's optional trailing inputs
    a node leaves out have no slot (`Conv(X, W)`: X, W).
    """
    sig = _require(op, use_tf, ops)
    roles = _expand(sig.inputs, attrs, num_inputs)
    if sig.source == "onnx" and num_inputs is not None:
        return roles[:num_inputs]
    return roles


def output_roles(
    op: str, attrs: Mapping[str, Any] | None = None, *, use_tf: bool = True,
    ops: OpSet | None = None,
) -> list[str]:  # fmt: skip
    """The meaning of each output port of `op`, e.g. TopKV2 -> values, indices."""
    return _expand(_require(op, use_tf, ops).outputs, attrs, None)


def role_slot(
    op: str,
    role: str,
    attrs: Mapping[str, Any] | None = None,
    num_inputs: int | None = None,
    *,
    use_tf: bool = True,
    ops: OpSet | None = None,
) -> int:
    """The input slot of `role` in `op` (`filter` of Conv2DBackpropInput -> 1)."""
    roles = input_roles(op, attrs, num_inputs, use_tf=use_tf, ops=ops)
    if role in roles:
        return roles.index(role)
    shown = ", ".join(roles) or "no inputs"
    raise GraphError(f"op {op!r} has no input role {role!r} (its roles: {shown})")


def node_input_roles(node: Any, *, use_tf: bool = True) -> list[str]:
    """The roles of a `surgery.ir.node.Node`'s data inputs, sized from its attrs and input
    count."""
    return input_roles(node.op, node.attr, len(node.inputs), use_tf=use_tf)
