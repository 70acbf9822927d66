"""The properties of a tensor that the graph records: its value (a Const's), dtype, shape and
namespace, read by `where` expressions and the rule functions."""

from __future__ import annotations

from typing import Any

import numpy as np

from surgery.ir.onnx_io import OUTPUTS_ATTR
from surgery.ir.ports import TensorRef


def namespace_of(name: str) -> str:
    """`a/b/c` -> `a/b`; top-level names have the empty namespace."""
    return name.rpartition("/")[0]


def const_value(graph: Any, ref: TensorRef) -> np.ndarray | None:
    """The value of a Const node's output, or of an ONNX Constant's `value` (no looking through
    Identity)."""
    node = graph.get(ref.node)
    if node is not None and node.op == "Constant":
        from surgery.ir.onnx_io import constant_value

        return constant_value(node)
    if node is None or node.op != "Const" or "value" not in node.attr:
        return None
    from surgery.ir.tensor_values import to_numpy

    return to_numpy(node.attr["value"].tensor)


def tensor_dtype(graph: Any, ref: TensorRef) -> str | None:
    """The dtype name of a tensor when the node says it: `_output_shapes`-free attrs only."""
    node = graph.get(ref.node)
    if node is None:
        return None
    from surgery.ir.tensor_values import dtype_name

    attrs = node.attr
    if "_output_types" in attrs and len(attrs["_output_types"].list.type) > ref.port:
        return dtype_name(attrs["_output_types"].list.type[ref.port])
    if node.op == "Const" and "value" in attrs and ref.port == 0:
        return dtype_name(attrs["value"].tensor.dtype)
    for key in ("dtype", "T", "out_type", "DstT"):
        if key in attrs and attrs[key].WhichOneof("value") == "type":
            return dtype_name(attrs[key].type)
    if OUTPUTS_ATTR in attrs:  # an ONNX node: typed by its value_info or its producers
        from surgery.ir.onnx_dtypes import onnx_dtype

        return onnx_dtype(graph, ref)
    return None


def tensor_shape(graph: Any, ref: TensorRef) -> tuple[int, ...] | None:
    """Dims (-1 unknown) from `_output_shapes`, a `shape` attr or a Const value; else None."""
    node = graph.get(ref.node)
    if node is None:
        return None
    from surgery.ir.tensor_values import shape_of

    attrs = node.attr
    if "_output_shapes" in attrs and len(attrs["_output_shapes"].list.shape) > ref.port:
        return shape_of(attrs["_output_shapes"].list.shape[ref.port])
    if ref.port == 0 and node.op == "Const" and "value" in attrs:
        return shape_of(attrs["value"].tensor.tensor_shape)
    if ref.port == 0 and "shape" in attrs and attrs["shape"].WhichOneof("value") == "shape":
        return shape_of(attrs["shape"].shape)
    return None
