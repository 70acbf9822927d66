"""`--input` and shape inference on ONNX models: onnx's own shape inference, no TensorFlow.

`--input NAME=D0,D1,...` pins a graph input's dims (NAME: the model's input name, `input:0`, or
its Placeholder's, `input_0`); then onnx.shape_inference runs on the model as it now is, and the
shapes it finds become the producing nodes' `_output_shapes`, which rules read as `x.shape` (and
the save writes back as value_info where the model had it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from surgery.errors import UsageError
from surgery.ir.graph import Graph


def input_names(graph: Graph) -> dict[str, str]:
    """Graph input name in the ONNX model -> its Placeholder in the Graph IR."""
    from surgery.ir.onnx_io import onnx_name

    return {onnx_name(n): n.name for n in graph.nodes_by_op("Placeholder")}


def ir_flag(text: str, names: Mapping[str, str], error: type[Exception] = UsageError) -> str:
    """An `--input` flag with the ONNX input name it gives replaced by the Placeholder's."""
    name, sep, dims = text.partition("=")
    name = name.strip()
    if name in names:
        return f"{names[name]}{sep}{dims}"
    if name in names.values() or not sep:
        return text
    raise error(
        f"--input {text!r}: the model has no input {name!r} (inputs: {', '.join(names) or 'none'})"
    )


def pin_and_infer(graph: Graph, flags: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Pin the inputs `flags` name, then record the shapes onnx infers; the pinned inputs, by
    their names in the model."""
    from surgery.passes.input_shapes import parse_input_flags, pin_inputs

    names = input_names(graph)
    pinned = pin_inputs(graph, parse_input_flags(ir_flag(text, names) for text in flags))
    record_inferred_shapes(graph)
    onnx_names = {node: name for name, node in names.items()}
    return {onnx_names[node]: dims for node, dims in pinned.items()}


def record_inferred_shapes(graph: Graph) -> int:
    """Give every node output onnx's shape inference knows its shape in `_output_shapes`;
    how many tensors got one."""
    import onnx
    from onnx import shape_inference

    from surgery.ir.onnx_io import OUTPUTS_ATTR, SHAPES_ATTR, save_onnx

    with tempfile.TemporaryDirectory(prefix="surgery-shapes-") as tmp:
        model, inferred = Path(tmp) / "m.onnx", Path(tmp) / "inferred.onnx"
        save_onnx(graph, model)
        try:
            shape_inference.infer_shapes_path(str(model), str(inferred), data_prop=True)
        except Exception as exc:  # onnx's InferenceError and the like: its message says why
            raise UsageError(f"onnx shape inference failed on the model: {exc}") from None
        found = onnx.load(str(inferred), load_external_data=False).graph.value_info
    producer = {}
    for node in graph:
        if OUTPUTS_ATTR in node.attr:
            for port, name in enumerate(node.attr[OUTPUTS_ATTR].list.s):
                producer[name.decode()] = (node, port)
    recorded = 0
    for info in found:
        where = producer.get(info.name)
        if where is None or not info.type.tensor_type.HasField("shape"):
            continue
        node, port = where
        shapes = node.attr[SHAPES_ATTR].list.shape
        while len(shapes) < len(node.attr[OUTPUTS_ATTR].list.s):
            shapes.add().unknown_rank = True
        shapes[port].CopyFrom(_tf_shape(info.type.tensor_type.shape))
        recorded += 1
    return recorded


def _tf_shape(shape: Any) -> Any:
    """A TF TensorShapeProto of an ONNX shape (-1 for a symbolic or unknown dim)."""
    from surgery.ir.protos import tensor_shape_pb2

    out = tensor_shape_pb2.TensorShapeProto()
    for dim in shape.dim:
        out.dim.add().size = dim.dim_value if dim.HasField("dim_value") else -1
    return out
