"""Static shapes: TensorFlow's shape inference over the graph, and Reshapes made concrete.

A Keras `Flatten` freezes to `Reshape(x, [-1, N])` and `Reshape((bins, -1))` to a Reshape whose
shape is computed from `Shape(x)`; TensorRT's old parsers (UFF) and many plugins need those as
constants. `static_reshapes` replaces each Reshape's shape operand by a Const of the inferred
output shape and removes the shape computation that fed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from surgery.errors import GraphError, SurgeryError
from surgery.ir.attrs import const_attrs
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.ir.protos import GraphDef
from surgery.ir.tensor_values import from_numpy, shape_proto, to_numpy

Shape = tuple[int | None, ...] | None  # None: rank unknown; None inside: that dim unknown


class ShapeError(SurgeryError):
    """A shape that cannot be inferred or made static; the message names the node."""


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`name=1,3,64,64` -> ("name", (1, 3, 64, 64))."""
    name, sep, dims = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, tuple(int(d) for d in dims.split(",") if d.strip())
    except ValueError:
        raise ShapeError(
            f"--input {text!r}: expected NAME=D0,D1,... (e.g. input_1=1,64,64,3)"
        ) from None


def _with_input_shapes(graph: Graph, input_shapes: Mapping[str, tuple[int, ...]]) -> GraphDef:
    """A copy of `graph` as a GraphDef with the given placeholders pinned (and checked) by
    `surgery.passes.input_shapes.pin_graph_def`, the one implementation of `--input`."""
    from surgery.passes.input_shapes import pin_graph_def

    graph_def = graph.to_graph_def()
    pin_graph_def(graph_def, input_shapes)
    return graph_def


def import_with_shapes(
    graph: Graph, input_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> Any:
    """`graph` imported into a tf.Graph (placeholders overridable): every tensor there carries
    TensorFlow's inferred static shape and dtype, and every op its OpDef."""
    from surgery.passes.tf_reference import import_graph

    graph_def = _with_input_shapes(graph, input_shapes or {})
    return import_graph(graph_def, "infer shapes with TensorFlow's shape functions")


def infer_shapes(
    graph: Graph, input_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[TensorRef, Shape]:
    """Shape of every tensor as TensorFlow infers it on import (placeholders overridable)."""
    tf_graph = import_with_shapes(graph, input_shapes)
    shapes: dict[TensorRef, Shape] = {}
    for op in tf_graph.get_operations():
        for port, out in enumerate(op.outputs):
            dims = out.shape
            shapes[TensorRef(op.name, port)] = (
                None if dims.rank is None else tuple(d for d in dims.as_list())
            )
    return shapes


def annotate_shapes(
    graph: Graph, input_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> int:
    """Record inferred shapes as `_output_shapes` attrs (what `add_shapes=True` export gives),
    so that rules can read `x.shape` on frozen TF2 graphs; returns the number of nodes annotated.
    """
    inferred = infer_shapes(graph, input_shapes)
    annotated = 0
    for node in graph:
        port_shapes: list[Shape] = []
        while TensorRef(node.name, len(port_shapes)) in inferred:
            port_shapes.append(inferred[TensorRef(node.name, len(port_shapes))])
        if not port_shapes:
            continue
        attr = node.attr["_output_shapes"]
        attr.list.Clear()
        for dims in port_shapes:
            target = attr.list.shape.add()
            if dims is None:
                target.unknown_rank = True
            else:
                target.CopyFrom(shape_proto([-1 if d is None else d for d in dims]))
        annotated += 1
    return annotated


def format_shape(shape: Shape) -> str:
    if shape is None:
        return "<unknown rank>"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def remove_if_dead(graph: Graph, name: str) -> list[str]:
    """Remove `name` and, recursively, its producers once nothing reads them any more (never a
    placeholder); returns the names removed."""
    removed = []
    stack = [name]
    while stack:
        current = stack.pop()
        node = graph.get(current)
        if node is None or node.op in ("Placeholder", "PlaceholderWithDefault"):
            continue
        if graph.consumer_names(current):
            continue
        producers = [p.name for p in graph.producers(current)]
        graph.remove_nodes([current])
        removed.append(current)
        stack.extend(producers)
    return removed


def static_reshapes(
    graph: Graph, shapes: Mapping[TensorRef, Shape]
) -> list[tuple[str, tuple[int, ...]]]:
    """Give every Reshape a Const shape; at most one dim may stay unknown (-1). Edits in place."""
    changed = []
    for node in graph.nodes_by_op("Reshape"):
        out = shapes.get(TensorRef(node.name, 0))
        if out is None:
            raise ShapeError(f"{node.name}: output rank unknown, cannot make the Reshape static")
        unknown = [i for i, d in enumerate(out) if d is None]
        if len(unknown) > 1:
            raise ShapeError(
                f"{node.name}: output shape {format_shape(out)} has {len(unknown)} unknown dims "
                "(a Reshape may keep one -1); give the input shapes with --input NAME=D0,D1,..."
            )
        dims = tuple(-1 if d is None else d for d in out)
        old = node.inputs[1]
        producer = graph.get(old.node)
        if producer is not None and producer.op == "Const":
            if tuple(to_numpy(producer.attr["value"].tensor).tolist()) == dims:
                continue
        const_name = f"{node.name}/static_shape"
        if const_name in graph:
            raise GraphError(f"{const_name}: a node of that name already exists")
        value = from_numpy(np.array(dims, dtype=np.int32))
        graph.add_node(const_name, "Const", attrs=const_attrs(value))
        graph.set_input(node.name, 1, const_name)
        if "Tshape" in node.attr:
            node.attr["Tshape"].type = value.dtype
        remove_if_dead(graph, old.node)
        changed.append((node.name, dims))
    return changed
