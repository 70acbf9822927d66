"""Numeric reference: run a GraphDef in TensorFlow, and make seeded random feeds for its inputs.

This is what later validation compares rewritten graphs and TensorRT engines against. A graph is
imported into a `TFSession` once and run any number of times, each run cut at what it feeds;
its conv and matmul weights are fed rather than held where that changes no result
(`serialize_nodes`). TensorFlow is imported lazily (`TensorFlowMissing` if it is not installed).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from surgery.errors import GraphError, SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.ports import parse_tensor
from surgery.ir.protos import GraphDef, NodeDef, types_pb2
from surgery.ir.wire import GRAPHDEF_NODE_KEY, varint
from surgery.passes.freeze import TensorSpecInfo, import_tensorflow

GraphLike: TypeAlias = GraphDef | Graph | bytes | str | os.PathLike


def _graph_def(source: GraphLike) -> GraphDef:
    """A GraphDef from a GraphDef, a surgery Graph, serialized bytes or a `.pb`/`.pbtxt` path."""
    if isinstance(source, Graph):
        return source.to_graph_def()
    if isinstance(source, bytes | bytearray):
        return GraphDef.FromString(bytes(source))
    if isinstance(source, str | os.PathLike):
        from surgery.ir.model_io import read_graph_def

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


def import_graph(
    graph_def: GraphDef | bytes, purpose: str = "run the numeric reference"
) -> Any:
    """A tf.Graph holding `graph_def` (a GraphDef or its wire bytes); GraphError with TF's first
    line if TF refuses it. Bytes are not checked here: `TFSession` checks before serialising."""
    if isinstance(graph_def, GraphDef):
        check_consts(graph_def.node)
        data = graph_def.SerializeToString()
    else:
        data = graph_def
    tf = import_tensorflow(purpose)
    tf_graph_def = tf.compat.v1.GraphDef.FromString(data)
    del data
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(tf_graph_def, name="")
        except Exception as exc:  # unknown ops, bad attrs: one line for the user
            raise GraphError(f"TensorFlow cannot import the graph: {exc}".splitlines()[0]) from None
    return graph


def check_consts(nodes: Iterable[NodeDef]) -> None:
    """GraphError for a Const whose tensor's dtype contradicts its `dtype` attr: TensorFlow's
    shape inference aborts the whole process on some of them (a string tensor as a slice's
    strides), so they are refused before TensorFlow sees the graph."""
    for node in nodes:
        if node.op != "Const" or "value" not in node.attr or "dtype" not in node.attr:
            continue
        declared, held = node.attr["dtype"].type, node.attr["value"].tensor.dtype
        if declared != held:
            from surgery.ir.tensor_values import dtype_name

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


# A Const holding more than this that only convolutions or matmuls read as their weights is fed
# to the session instead (`serialize_nodes`).
LIFTED_CONST_BYTES = 1 << 16
# TensorFlow's CPU (oneDNN) convolutions and matmuls, and the input they read as weights.
WEIGHT_INPUT = {
    "Conv2D": 1, "Conv3D": 1, "DepthwiseConv2dNative": 1, "Conv2DBackpropInput": 1,
    "Conv3DBackpropInputV2": 1, "MatMul": 1, "BatchMatMul": 1, "BatchMatMulV2": 1,
    "BatchMatMulV3": 1,
}  # fmt: skip
# Set, before the process's first convolution kernel, this makes every oneDNN convolution and
# matmul cache its weights in the layout it prefers, as it does for a Const filter.
FROZEN_WEIGHTS_ENV = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"
# TensorFlow uses a fed array's memory as it is (no copy) when it is aligned to this many bytes.
_FEED_ALIGNMENT = 64


@dataclass(frozen=True)
class WireGraph:
    """A GraphDef serialised for `TFSession` (`data`), its node names, and its weights: the
    Consts the graph holds as Placeholders of the same name, dtype and shape, which every run
    is fed (`weights`, by node name)."""

    data: bytes
    names: frozenset[str]
    weights: Mapping[str, np.ndarray]


def wire_graph(source: GraphLike | WireGraph) -> WireGraph:
    """`source` as a `WireGraph` (see `serialize_nodes`)."""
    if isinstance(source, WireGraph):
        return source
    if isinstance(source, Graph):
        return serialize_nodes([node.proto for node in source], source._header_copy())
    graph_def = _graph_def(source)
    header = GraphDef()
    header.versions.CopyFrom(graph_def.versions)
    header.library.CopyFrom(graph_def.library)
    return serialize_nodes(list(graph_def.node), header)


def serialize_nodes(nodes: Sequence[NodeDef], header: GraphDef) -> WireGraph:
    """The GraphDef of `nodes` and `header` (versions, library), serialised node by node (never
    copied into a new GraphDef first), every Const checked (`check_consts`).

    Where TensorFlow treats fed weights as frozen (`weights_frozen`), a Const of more than
    LIFTED_CONST_BYTES that convolutions and matmuls alone read as their weights (directly or
    through Identity nodes) becomes a Placeholder, its value a weight `TFSession` feeds.
    TensorFlow copies a Const's tensor into every graph it builds for a run (the session's, the
    optimizers', the partitions, the kernel), where it uses a fed array in place: on a
    Mask R-CNN with 250 MB of weights the peak falls by 2.7 GB and the optimizers take 3 s less.
    The kernels then compute as they do with the Consts, to the bit: frozen, a fed weight is
    cached in the layout the kernel prefers, as a Const filter is; any other Const stays one,
    so TensorFlow's constant folding is unchanged."""
    from surgery.ir.tensor_values import to_numpy

    lifted = _weight_consts(nodes) if weights_frozen() else set()
    parts: list[bytes] = []
    names: set[str] = set()
    weights: dict[str, np.ndarray] = {}
    for proto in nodes:
        check_consts((proto,))
        names.add(proto.name)
        if proto.name in lifted:
            weights[proto.name] = _aligned(to_numpy(proto.attr["value"].tensor))
            stand = NodeDef(name=proto.name, op="Placeholder")
            stand.attr["dtype"].type = proto.attr["dtype"].type
            stand.attr["shape"].shape.CopyFrom(proto.attr["value"].tensor.tensor_shape)
            proto = stand
        body = proto.SerializeToString()
        parts.append(GRAPHDEF_NODE_KEY + varint(len(body)) + body)
    parts.append(header.SerializeToString())
    return WireGraph(b"".join(parts), frozenset(names), weights)


def _weight_consts(nodes: Sequence[NodeDef]) -> set[str]:
    """Names of the Consts of more than LIFTED_CONST_BYTES, without control inputs, that every
    reader reads as the weights of a convolution or matmul, directly or through Identity
    nodes."""
    readers: dict[str, list[tuple[NodeDef, int]]] = {}
    for proto in nodes:
        for slot, text in enumerate(proto.input):
            if not text.startswith("^"):
                readers.setdefault(text.partition(":")[0], []).append((proto, slot))

    def weights_only(name: str, depth: int = 0) -> bool:
        found = readers.get(name, [])
        return bool(found) and depth < 8 and all(
            WEIGHT_INPUT.get(reader.op) == slot
            or (reader.op == "Identity" and weights_only(reader.name, depth + 1))
            for reader, slot in found
        )

    return {
        proto.name for proto in nodes
        if proto.op == "Const" and not proto.input
        and proto.attr["value"].tensor.ByteSize() > LIFTED_CONST_BYTES
        and weights_only(proto.name)
    }  # fmt: skip


def dynamic_weights(graph: Graph) -> list[str]:
    """Convolutions and matmuls of `graph` (its function bodies included) whose weights are
    not a Const, read directly or through Identity nodes: where TensorFlow treats weights as
    frozen, such a node caches the first value it sees (wrong in a loop)."""
    found = []
    for node in graph:
        slot = WEIGHT_INPUT.get(node.op)
        if slot is None or slot >= len(node.inputs):
            continue
        source = graph.get(node.inputs[slot].node)
        while source is not None and source.op == "Identity" and source.inputs:
            source = graph.get(source.inputs[0].node)
        if source is None or source.op != "Const":
            found.append(node.name)
    found.extend(
        f"{function.signature.name}/{node.name}"
        for function in graph.library.function for node in function.node_def
        if node.op in WEIGHT_INPUT
    )  # fmt: skip
    return found


@functools.cache
def weights_frozen() -> bool:
    """Whether this process's TensorFlow treats convolution weights as frozen (FROZEN_WEIGHTS_ENV,
    read once, at the first such kernel): a convolution fed two filters in turn gives the first
    result twice."""
    tf = import_tensorflow("run the numeric reference")
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (1, 4, 4, 8))
        w = tf.compat.v1.placeholder(tf.float32, (1, 1, 8, 8))
        y = tf.nn.conv2d(x, w, 1, "VALID")
    ones = np.ones((1, 4, 4, 8), np.float32)
    filters = np.ones((1, 1, 8, 8), np.float32)
    with tf.compat.v1.Session(graph=graph) as session:
        first = session.run(y, {x: ones, w: filters})
        second = session.run(y, {x: ones, w: 2 * filters})
    return bool(np.array_equal(first, second))


def _trim_heap() -> None:
    """Return the heap's free memory to the system: glibc keeps what TensorFlow freed (the
    activations of a run, its graphs) mapped, and the next phase would start that much higher.
    Nothing where the C library has no `malloc_trim`."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _aligned(value: np.ndarray) -> np.ndarray:
    """A copy of `value` in memory TensorFlow can use in place when it is fed."""
    buffer = np.empty(value.nbytes + _FEED_ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % _FEED_ALIGNMENT
    aligned = buffer[start : start + value.nbytes].view(value.dtype).reshape(value.shape)
    aligned[...] = value
    return aligned


class TFSession:
    """One graph imported into TensorFlow once and one session on it, for any number of runs.

    Each run executes only what its fetches need, cut at the tensors it feeds (any tensor can be
    fed, not only a Placeholder), so callers that evaluate a graph piece by piece compute every
    node once. The graph's weights are fed where that changes no result (`serialize_nodes`).
    The session's options are TensorFlow's defaults: its graph optimizations (fusions, constant
    folding) decide the last bits of every result. `close` (or leaving a `with` block) frees the
    graph, the session and the weights."""

    def __init__(self, source: GraphLike | WireGraph, purpose: str = "run the numeric reference"):
        self._tf = import_tensorflow(purpose)
        wire = wire_graph(source)
        self.names = wire.names
        self._weights: Mapping[str, np.ndarray] = wire.weights
        self._graph: Any = import_graph(wire.data, purpose)
        del wire
        config = self._tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=0, inter_op_parallelism_threads=0
        )
        self._session: Any = self._tf.compat.v1.Session(graph=self._graph, config=config)

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Iterable[str]) -> dict[str, np.ndarray]:
        """Values of `fetches` given `feeds` (tensor names, `x` meaning `x:0`), keyed by the
        fetch names as given."""
        if self._session is None:
            raise SurgeryError("this TensorFlow session is closed")
        fetch_list = list(fetches)
        for name in [*feeds, *fetch_list]:
            if parse_tensor(name).node not in self.names:
                raise GraphError(
                    f"tensor {name!r}: no node {parse_tensor(name).node!r} in the graph"
                )
        feed_dict = {f"{name}:0": value for name, value in self._weights.items()}
        feed_dict.update({tensor_name(k): np.asarray(v) for k, v in feeds.items()})
        values = self._session.run([tensor_name(f) for f in fetch_list], feed_dict=feed_dict)
        return {name: np.asarray(value) for name, value in zip(fetch_list, values, strict=True)}

    def close(self) -> None:
        """Free the session, the graph and the weights (idempotent), and give the memory back."""
        if self._session is not None:
            self._session.close()
            self._session = self._graph = None
            self._weights = {}
            gc.collect()  # a tf.Graph and its ops reference each other
            _trim_heap()

    def __enter__(self) -> TFSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_graph_def(
    graph_def_or_bytes: GraphLike,
    feeds: Mapping[str, np.ndarray],
    fetches: Iterable[str],
) -> dict[str, np.ndarray]:
    """Run `fetches` with `feeds` in a TF1 session; results keyed by the fetch names as given."""
    fetch_list = list(fetches)
    with TFSession(graph_def_or_bytes) as session:
        return session.run(feeds, fetch_list)


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
