"""TensorFlow stand-ins for plugin nodes, so TF (and tf2onnx) can import the rewritten graph.

Each plugin node becomes a `PyFunc` (TF imports it without knowing the function) whose `token`
is the node's name; each output used downstream passes through an `EnsureShape` carrying the
plugin's output shape, so TF's shape inference continues past the plugin. Output shapes come from
the plugin's NumPy reference run on zeros (or from `shape_overrides`); a plugin whose input
shapes stay unknown is exported without output shapes. A plugin whose schema says
NCHW and whose feature-map input is NHWC in the TF graph gets `Transpose` to NCHW in front and
back to NHWC behind; tf2onnx's optimizer then cancels those against the transposes it puts around
NHWC convolutions, so the plugin reads the convolution's NCHW output directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surgery.backends.export.plugin_nodes import PluginNode
from surgery.backends.export.weight_standins import Weight, without_weights
from surgery.errors import GraphError, SurgeryError
from surgery.ir import tensor_values
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.ir.protos import GraphDef, NodeDef, types_pb2

Shape = tuple[int | None, ...] | None
TO_NCHW: tuple[int, ...] = (0, 3, 1, 2)
TO_NHWC: tuple[int, ...] = (0, 2, 3, 1)
_LAYOUT_OPS = {
    "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MaxPool", "AvgPool", "BiasAdd",
    "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
}  # fmt: skip
_NHWC_ONLY = {"ResizeNearestNeighbor", "ResizeBilinear", "CropAndResize", "SpaceToDepth"}
_PASS_THROUGH = {
    "Identity", "Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus", "Neg",
    "Abs", "Exp", "Log", "Sqrt", "Rsqrt", "Square", "Cast", "Add", "AddV2", "Sub", "Mul",
    "RealDiv", "Maximum", "Minimum", "ConcatV2", "Pad", "EnsureShape",
}  # fmt: skip


class StandInError(SurgeryError):
    """A plugin node that cannot be stood in for TensorFlow (names the node)."""


@dataclass
class StandIns:
    """The stand-in GraphDef and what tf2onnx needs to turn the stand-ins back into plugins."""

    graph_def: GraphDef
    plugins: dict[str, PluginNode]  # stand-in node name -> plugin
    shapes: dict[str, Shape] = field(default_factory=dict)  # "node:port" -> shape
    transposed: list[str] = field(default_factory=list)  # plugins given NCHW inputs
    unknown_shapes: list[str] = field(default_factory=list)  # plugins exported without shapes
    weights: Mapping[str, Weight] = field(default_factory=dict)  # Consts now Placeholders


def _const_perm(graph: Graph, ref: TensorRef) -> tuple[int, ...] | None:
    """The permutation of a Transpose whose perm is a Const, else None."""
    node = graph.get(ref.node)
    while node is not None and node.op == "Identity" and node.inputs:
        node = graph.get(node.inputs[0].node)
    if node is None or node.op != "Const":
        return None
    from surgery.ir.tensor_values import to_numpy

    return tuple(int(v) for v in np.asarray(to_numpy(node.attr["value"].tensor)).ravel())


def tensor_layout(graph: Graph, ref: TensorRef, plugin_ops: set[str], depth: int = 64) -> str:
    """`NHWC`, `NCHW` or `?` for a 4-D tensor, traced up to the op that fixes its layout."""
    for _ in range(depth):
        node = graph.get(ref.node)
        if node is None:
            return "?"
        if node.op in _LAYOUT_OPS:
            fmt = node.attr["data_format"].s.decode() if "data_format" in node.attr else "NHWC"
            return "NCHW" if fmt == "NCHW" else "NHWC"
        if node.op in _NHWC_ONLY or node.op == "Placeholder":
            return "NHWC"
        if node.op == "Transpose" and len(node.inputs) == 2:
            perm = _const_perm(graph, node.inputs[1])
            return {TO_NCHW: "NCHW", TO_NHWC: "NHWC"}.get(perm or (), "?")
        if (node.op in _PASS_THROUGH or node.op in plugin_ops) and node.inputs:
            ref = node.inputs[0]
            continue
        return "?"
    return "?"


def _output_dtype(graph_def_nodes: Mapping[str, NodeDef], ref: TensorRef, plugins: Any) -> int:
    """TF dtype enum of tensor `ref`, read from its producer's OpDef and attrs (float if unsure)."""
    node = graph_def_nodes.get(ref.node)
    if node is None or ref.node in plugins:
        return types_pb2.DT_FLOAT
    try:
        from tensorflow.python.framework import op_def_registry

        op_def = op_def_registry.get(node.op)
    except ImportError:  # pragma: no cover - TF is required for export
        op_def = None
    if op_def is None:
        return types_pb2.DT_FLOAT
    port = ref.port
    for arg in op_def.output_arg:
        count = 1
        if arg.number_attr:
            count = node.attr[arg.number_attr].i
        elif arg.type_list_attr:
            types = list(node.attr[arg.type_list_attr].list.type)
            if port < len(types):
                return types[port]
            port -= len(types)
            continue
        if port < count:
            if arg.type:
                return arg.type
            return node.attr[arg.type_attr].type or types_pb2.DT_FLOAT
        port -= count
    return types_pb2.DT_FLOAT


def _output_count(graph: Graph, plugin: PluginNode) -> int:
    """How many outputs the stand-in needs: the schema's count, or more if more are read."""
    low, high = plugin.schema.output_count()
    used = graph.used_ports(plugin.name)
    count = max([low, 1] + [p + 1 for p in used])
    if high is not None and count > high:
        raise StandInError(
            f"node {plugin.name!r} ({plugin.schema.name}): output :{count - 1} is read but the "
            f"plugin has {high} output(s)"
        )
    return count


def build_stand_ins(
    graph: Graph,
    plugins: list[PluginNode],
    input_shapes: Mapping[str, Shape],
    shape_overrides: Mapping[str, Shape] | None = None,
    weights: Mapping[str, Weight] | None = None,
) -> StandIns:
    """The stand-in GraphDef: PyFuncs for plugins, NCHW transposes where the schema asks, and
    Placeholders for `weights` (`surgery.backends.export.weight_standins`), whose bytes are not
    copied."""
    weights = weights or {}
    work = without_weights(graph, weights)
    plugin_ops = {p.schema.name for p in plugins}
    by_name = {p.name: p for p in plugins}
    transposed: list[str] = []
    for plugin in plugins:
        if plugin.schema.layout == "NCHW":
            if _wrap_nchw(work, plugin, plugin_ops):
                transposed.append(plugin.name)
    graph_def = work.to_graph_def()
    nodes = {n.name: n for n in graph_def.node}
    counts = {p.name: _output_count(work, p) for p in plugins}
    for plugin in plugins:
        node = nodes[plugin.name]
        tin = [
            _output_dtype(nodes, TensorRef(*_split(t)), by_name)
            for t in node.input
            if not t.startswith("^")
        ]
        for key in list(node.attr):
            del node.attr[key]
        node.op = "PyFunc"
        node.attr["token"].s = plugin.name.encode()
        node.attr["Tin"].list.type.extend(tin)
        node.attr["Tout"].list.type.extend([types_pb2.DT_FLOAT] * counts[plugin.name])
    result = StandIns(graph_def, by_name, transposed=transposed, weights=weights)
    concrete = functools.cache(
        lambda: _concrete_input_shapes(work, plugins, input_shapes, weights)
    )
    _infer_plugin_shapes(result, counts, input_shapes, dict(shape_overrides or {}), concrete)
    return result


def _concrete_input_shapes(
    work: Graph,
    plugins: list[PluginNode],
    input_shapes: Mapping[str, Shape],
    weights: Mapping[str, Weight],
) -> dict[str, list[Shape]]:
    """Each plugin's input shapes from one real run (TF regions + plugin references) on zero
    inputs, the weights' stand-ins fed their values: static inference loses dims behind dynamic
    Reshapes, a run does not. Empty when a graph input's shape is not fully known."""
    from surgery.backends.validate import RegionEvaluator

    feeds = {name: weight.values() for name, weight in weights.items()}
    for node in work.graph_inputs():
        if node.name in weights:
            continue
        if not work.is_read(node.name):
            continue  # a side input a collapse dropped: it cannot change the plugins' inputs
        shape = input_shapes.get(node.name)
        if shape is None and "shape" in node.attr and not node.attr["shape"].shape.unknown_rank:
            shape = tuple(d.size for d in node.attr["shape"].shape.dim)
        if shape is None or any(d is None or d < 0 for d in shape):
            return {}
        dtype = tensor_values.numpy_dtype(node.attr["dtype"].type)
        known = tuple(d for d in shape if d is not None)  # every dim (checked above)
        feeds[node.name] = np.zeros(known, dtype=dtype)
    try:
        values = RegionEvaluator(work, feeds).run()
    except SurgeryError:
        return {}
    return {
        p.name: [tuple(np.shape(values[ref])) if ref in values else None
                 for ref in work.node(p.name).inputs]
        for p in plugins
    }


def _split(text: str) -> tuple[str, int]:
    """`a:1` -> ("a", 1); `a` -> ("a", 0)."""
    name, _, port = text.rpartition(":")
    if name and port.isdigit():
        return name, int(port)
    return text, 0


def _wrap_nchw(work: Graph, plugin: PluginNode, plugin_ops: set[str]) -> bool:
    """Put NHWC->NCHW transposes before the plugin's NHWC feature maps and back after it."""
    from surgery.ir.attrs import make_attr
    from surgery.ir.tensor_values import from_numpy

    node = work.node(plugin.name)
    changed = False
    for slot, ref in enumerate(node.inputs):
        if tensor_layout(work, ref, plugin_ops) != "NHWC":
            continue
        perm = _const(work, f"{plugin.name}/nchw_perm", TO_NCHW, from_numpy, make_attr)
        name = f"{plugin.name}/to_nchw_{slot}"
        work.add_node(name, "Transpose", [ref, perm], attrs=_transpose_attrs(make_attr))
        work.set_input(plugin.name, slot, name)
        changed = True
    if not changed:
        return False
    for port in work.used_ports(plugin.name):
        back = f"{plugin.name}/to_nhwc_{port}"
        users = [(n.name, s) for n, s in work.consumers(TensorRef(plugin.name, port))]
        perm = _const(work, f"{plugin.name}/nhwc_perm", TO_NHWC, from_numpy, make_attr)
        work.add_node(back, "Transpose", [TensorRef(plugin.name, port), perm],
                      attrs=_transpose_attrs(make_attr))  # fmt: skip
        for user, slot in users:
            work.set_input(user, slot, back)
    return True


def _const(work: Graph, name: str, perm: tuple[int, ...], from_numpy: Any, make_attr: Any) -> str:
    """An int32 Const node holding `perm` (created once)."""
    if name not in work:
        value = from_numpy(np.asarray(perm, dtype=np.int32))
        work.add_node(name, "Const", attrs={
            "dtype": make_attr("int32", "type"), "value": make_attr(value, "tensor"),
        })  # fmt: skip
    return name


def _transpose_attrs(make_attr: Any) -> dict[str, Any]:
    """Attrs of a float32 Transpose with an int32 perm."""
    return {"T": make_attr("float32", "type"), "Tperm": make_attr("int32", "type")}


def _import(graph_def: GraphDef) -> Any:
    """A tf.Graph with `graph_def` imported (StandInError if TF refuses it)."""
    from surgery.passes.tf_reference import import_graph

    try:
        return import_graph(graph_def, "export to ONNX")
    except GraphError as exc:
        raise StandInError(str(exc)) from None


def _dims(tensor: Any) -> Shape:
    """A tf tensor's static shape as a tuple (None: unknown rank)."""
    shape = tensor.shape
    return None if shape.rank is None else tuple(shape.as_list())


def _reference_shapes(plugin: PluginNode, in_shapes: list[Shape], count: int) -> list[Shape]:
    """Output shapes from the plugin's reference on zeros; unknown input dims are probed twice
    (as 1 and as 2) and output dims that differ between the probes are unknown."""
    first = _probe(plugin, in_shapes, count, 1)
    if not any(None in s for s in in_shapes if s is not None):
        return first
    second = _probe(plugin, in_shapes, count, 2)
    merged: list[Shape] = []
    for a, b in zip(first, second, strict=True):
        if a is None or b is None or len(a) != len(b):
            merged.append(None)
        else:
            merged.append(tuple(x if x == y else None for x, y in zip(a, b, strict=True)))
    return merged


def _probe(plugin: PluginNode, in_shapes: list[Shape], count: int, fill: int) -> list[Shape]:
    """Output shapes of the reference run with unknown input dims set to `fill`."""
    from plugins import registry

    if not registry.has_reference(plugin.schema.name):
        raise StandInError(
            f"node {plugin.name!r} ({plugin.schema.name}): no plugin reference to infer its "
            "output shapes; pass them (--shape NODE:PORT=D0,D1,...)"
        )
    arrays: list[np.ndarray] = []
    for s in in_shapes:
        if s is None:  # the caller passes inputs of known rank only
            raise StandInError(f"node {plugin.name!r}: an input of unknown rank cannot be probed")
        arrays.append(np.zeros([fill if d is None else d for d in s], dtype=np.float32))
    try:
        outputs = registry.reference(plugin.schema.name)(arrays, dict(plugin.fields))
    except SurgeryError as exc:
        raise StandInError(
            f"node {plugin.name!r}: its reference could not run on shapes {in_shapes} to infer "
            f"output shapes ({exc}); pass --shape NODE:PORT=D0,D1,..."
        ) from None
    shapes: list[Shape] = []
    for out in list(outputs)[:count]:
        shapes.append(tuple(np.shape(out)))
    return shapes + [None] * (count - len(shapes))


def _infer_plugin_shapes(
    result: StandIns,
    counts: dict[str, int],
    inputs: Mapping[str, Shape],
    overrides: dict,
    concrete: Callable[[], dict[str, list[Shape]]],
) -> None:
    """Fill `result.shapes` plugin by plugin (imports repeat while plugins feed plugins)."""
    from surgery.ir.attrs import make_attr

    graph_def = result.graph_def
    for name, shape in inputs.items():
        node = next((n for n in graph_def.node if n.name == name), None)
        if node is not None and shape is not None:
            node.attr["shape"].CopyFrom(make_attr(list(shape), "shape"))
    pending = list(result.plugins)
    run = False  # the concrete run costs a forward pass: only once static shapes stall
    while pending:
        tf_graph = _import(_with_shape_checks(graph_def, result))
        progress = []
        for name in pending:
            op = tf_graph.get_operation_by_name(name)
            in_shapes = [_dims(t) for t in op.inputs]
            partial = any(s is None or None in s for s in in_shapes)
            if run and partial:
                known = concrete().get(name)
                if known and all(s is not None for s in known):
                    in_shapes, partial = known, False
            keys = [f"{name}:{p}" for p in range(counts[name])]
            if all(k in overrides for k in keys):
                shapes = [overrides[k] for k in keys]
            elif any(s is None for s in in_shapes) or (partial and not run):
                continue  # without the run, a partly known input may still become known
            else:
                shapes = _reference_shapes(result.plugins[name], in_shapes, counts[name])
                shapes = [overrides.get(k, s) for k, s in zip(keys, shapes, strict=True)]
            result.shapes.update(zip(keys, shapes, strict=True))
            progress.append(name)
        if not progress and not run:
            run = True
            continue
        if not progress:
            # Inputs of unknown shape (e.g. behind a dynamic Reshape): the outputs stay unknown;
            # tf2onnx converts most consumers without shapes and reports the ones it cannot.
            result.unknown_shapes = list(pending)
            break
        pending = [n for n in pending if n not in progress]
    result.graph_def = _with_shape_checks(graph_def, result)


def _with_shape_checks(graph_def: GraphDef, result: StandIns) -> GraphDef:
    """A copy of `graph_def` where each known plugin output passes through an EnsureShape."""
    from surgery.ir.attrs import make_attr

    out = GraphDef()
    out.CopyFrom(graph_def)
    rename: dict[str, str] = {}
    for key, shape in result.shapes.items():
        if shape is None:
            continue
        name, port = _split(key)
        check = out.node.add(name=f"{name}/ensure_shape_{port}", op="EnsureShape")
        check.input.append(key if port else name)
        check.attr["T"].type = types_pb2.DT_FLOAT
        check.attr["shape"].CopyFrom(make_attr([-1 if d is None else d for d in shape], "shape"))
        rename[key] = check.name
        if port == 0:
            rename[name] = check.name
    checks = set(rename.values())
    for node in out.node:
        if node.name in checks:
            continue
        for i, text in enumerate(node.input):
            if text in rename:
                node.input[i] = rename[text]
    return out
