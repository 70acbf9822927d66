"""Numeric reference: run a GraphDef in TensorFlow, and make seeded random feeds for its inputs.

This is what later validation compares rewritten graphs and TensorRT engines against. TensorFlow
is imported lazily (`TensorFlowMissing` if it is not installed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

import numpy as np

from surgery.errors import GraphError, SurgeryError
from surgery.freeze import TensorSpecInfo, import_tensorflow
from surgery.graph import Graph
from surgery.ports import parse_tensor
from surgery.protos import GraphDef, types_pb2

GraphLike: TypeAlias = GraphDef | Graph | bytes | str | os.PathLike


def _graph_def(source: GraphLike) -> GraphDef:
    """A GraphDef from a GraphDef, a surgery Graph, serialized bytes or a `.pb`/`.pbtxt` path."""
    if isinstance(source, Graph):
        return source.to_graph_def()
    if isinstance(source, bytes | bytearray):
        return GraphDef.FromString(bytes(source))
    if isinstance(source, str | os.PathLike):
        from surgery.model_io import read_graph_def

        return read_graph_def(source)
    if hasattr(source, "SerializeToString") and hasattr(source, "node"):
        return source if isinstance(source, GraphDef) else GraphDef.FromString(
            source.SerializeToString()
        )
    raise SurgeryError(f"cannot run {type(source).__name__}: expected a GraphDef, Graph or path")


def tensor_name(name: str) -> str:
    """`x` -> `x:0`, `x:1` -> `x:1`: the spelling TensorFlow sessions want."""
    ref = parse_tensor(name)
    return f"{ref.node}:{ref.port}"


def import_graph(graph_def: GraphDef, purpose: str = "run the numeric reference") -> Any:
    """A tf.Graph holding `graph_def`; GraphError with TF's first line if TF refuses it."""
    _check_consts(graph_def)
    tf = import_tensorflow(purpose)
    tf_graph_def = tf.compat.v1.GraphDef.FromString(graph_def.SerializeToString())
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(tf_graph_def, name="")
        except Exception as exc:  # unknown ops, bad attrs: one line for the user
            raise GraphError(f"TensorFlow cannot import the graph: {exc}".splitlines()[0]) from None
    return graph


def _check_consts(graph_def: GraphDef) -> None:
    """GraphError for a Const whose tensor's dtype contradicts its `dtype` attr: TensorFlow's
    shape inference aborts the whole process on some of them (a string tensor as a slice's
    strides), so they are refused before TensorFlow sees the graph."""
    for node in graph_def.node:
        if node.op != "Const" or "value" not in node.attr or "dtype" not in node.attr:
            continue
        declared, held = node.attr["dtype"].type, node.attr["value"].tensor.dtype
        if declared != held:
            from surgery.tensor_values import dtype_name

            raise GraphError(
                f"Const {node.name!r}: its dtype attr is {_name(dtype_name, declared)} but its "
                f"value holds {_name(dtype_name, held)}"
            )


def _name(dtype_name: Any, enum: int) -> str:
    """A dtype's name, or its number when it has none."""
    try:
        return str(dtype_name(enum))
    except Exception:  # an unknown enum value: a corrupted file
        return f"type {enum}"


def run_graph_def(
    graph_def_or_bytes: GraphLike,
    feeds: Mapping[str, np.ndarray],
    fetches: Iterable[str],
) -> dict[str, np.ndarray]:
    """Run `fetches` with `feeds` in a TF1 session; results keyed by the fetch names as given."""
    tf = import_tensorflow("run the numeric reference")
    graph_def = _graph_def(graph_def_or_bytes)
    fetch_list = list(fetches)
    names = {node.name for node in graph_def.node}
    for name in [*feeds, *fetch_list]:
        if parse_tensor(name).node not in names:
            raise GraphError(f"tensor {name!r}: no node {parse_tensor(name).node!r} in the graph")
    graph = import_graph(graph_def)
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=0, inter_op_parallelism_threads=0
    )
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        feed_dict = {tensor_name(k): np.asarray(v) for k, v in feeds.items()}
        values = session.run([tensor_name(f) for f in fetch_list], feed_dict=feed_dict)
    return {name: np.asarray(value) for name, value in zip(fetch_list, values, strict=True)}


def input_specs(source: Any) -> list[TensorSpecInfo]:
    """Input specs of a fixture (name or FixtureInfo) or of a graph's Placeholder nodes."""
    from surgery.models import FIXTURES, fixture_info

    if isinstance(source, str) and source in FIXTURES:
        return list(fixture_info(source).inputs)
    if hasattr(source, "inputs") and hasattr(source, "outputs") and hasattr(source, "path"):
        return list(source.inputs)
    graph = source if isinstance(source, Graph) else Graph(_graph_def(source))
    specs = []
    for node in graph.graph_inputs():
        if node.op != "Placeholder":
            continue  # PlaceholderWithDefault has a value already
        dtype = types_pb2.DataType.Name(node.attr["dtype"].type).removeprefix("DT_").lower()
        dtype = {"float": "float32", "double": "float64", "half": "float16"}.get(dtype, dtype)
        shape_attr = node.attr["shape"].shape if "shape" in node.attr else None
        if shape_attr is None or shape_attr.unknown_rank:
            shape = None
        else:
            shape = tuple(None if d.size < 0 else int(d.size) for d in shape_attr.dim)
        specs.append(TensorSpecInfo(node.name, shape, dtype))
    return specs


def random_array(spec: TensorSpecInfo, rng: np.random.Generator, batch: int = 1) -> np.ndarray:
    """A random value for one input: unknown dims become `batch` (first) or 1; an unknown rank
    becomes a scalar."""
    dims = () if spec.shape is None else tuple(
        (batch if i == 0 else 1) if d is None else d for i, d in enumerate(spec.shape)
    )
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.standard_normal(dims).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 10, dims).astype(dtype)
    if dtype.kind == "b":
        return rng.random(dims) < 0.5
    raise SurgeryError(f"input {spec.name!r}: cannot make random values of dtype {spec.dtype}")


def random_feeds(fixture_or_graph: Any, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Seeded random values for every input of a fixture or graph, keyed `name:0`."""
    rng = np.random.default_rng(seed)
    return {
        f"{spec.name}:0": random_array(spec, rng, batch) for spec in input_specs(fixture_or_graph)
    }


def run_fixture(name: str, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Run a model fixture on seeded random inputs; outputs keyed by tensor name."""
    from surgery.models import fixture_info

    info = fixture_info(name)
    return run_graph_def(info.path, random_feeds(info, seed, batch), info.outputs)
