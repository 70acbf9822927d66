"""Freeze a SavedModel, a Keras file or a tf-keras model into one deterministic GraphDef.

Variables become `Const` nodes (read through `Identity`, as TF 2's
`convert_variables_to_constants_v2` leaves them), functions are inlined, and the result is saved
with sorted map entries so that freezing the same model twice gives the same bytes. TensorFlow is
imported here lazily: the rest of surgery works without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surgery.errors import ModelLoadError, SurgeryError, TensorFlowMissing
from surgery.ir import model_io
from surgery.ir.ports import parse_tensor
from surgery.ir.protos import GraphDef

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass(frozen=True)
class TensorSpecInfo:
    """A graph input: placeholder name, shape (None for unknown dims) and dtype name."""

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (shape as a list, unknown dims as null)."""
        shape = None if self.shape is None else list(self.shape)
        return {"name": self.name, "shape": shape, "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpecInfo:
        """The inverse of `to_json`."""
        shape = data.get("shape")
        return cls(data["name"], None if shape is None else tuple(shape), data["dtype"])


@dataclass
class FrozenModel:
    """A frozen GraphDef with what it takes to feed it and which tensors it answers with."""

    graph_def: GraphDef
    inputs: list[TensorSpecInfo]
    outputs: list[str]  # tensor names, e.g. "Identity:0"
    output_keys: list[str] = field(default_factory=list)  # Keras output / signature names


def import_tensorflow(purpose: str = "freeze models") -> Any:
    """`import tensorflow`, or a TensorFlowMissing error that says what needed it."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise TensorFlowMissing(
            f"TensorFlow is required to {purpose} and is not installed ({exc}); "
            "install it with `pip install 'surgery[tf]'` (tensorflow-cpu is enough)"
        ) from None
    return tf


def import_tf_keras() -> Any:
    """The tf-keras package (TF1-style Keras graphs), imported after TensorFlow."""
    import_tensorflow()
    try:
        import tf_keras
    except ImportError as exc:
        raise TensorFlowMissing(
            f"tf-keras is required to load Keras models and is not installed ({exc}); "
            "install it with `pip install --no-deps tf-keras`"
        ) from None
    return tf_keras


def _spec_of(tensor: Any) -> TensorSpecInfo:
    """The TensorSpecInfo of a graph tensor produced by a Placeholder."""
    shape = tensor.shape
    dims = None if shape.rank is None else tuple(shape.as_list())
    return TensorSpecInfo(tensor.name.split(":")[0], dims, tensor.dtype.name)


def _convert(concrete: Any, where: str, lower_control_flow: bool = True) -> Any:
    """convert_variables_to_constants_v2 with TF's errors turned into ours; with
    `lower_control_flow=False` functional control flow stays (`StatelessWhile` + library)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    try:
        return convert_variables_to_constants_v2(
            concrete, lower_control_flow=lower_control_flow
        )
    except Exception as exc:  # TF raises many kinds; the user needs one line
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise SurgeryError(f"{where}: cannot freeze: {why}") from None


def _input_node(text: str) -> str:
    """The producing node of a NodeDef input string (`^x`, `x:1` -> `x`)."""
    name = text[1:] if text.startswith("^") else text
    head, sep, port = name.rpartition(":")
    return head if sep and port.isdigit() else name


def canonical_order(graph_def: GraphDef) -> GraphDef:
    """The same graph with nodes sorted by (depth, name): a topological order that does not
    depend on the order TensorFlow happened to emit them in (which varies between processes,
    e.g. for sibling Keras branches). Back edges into `Merge` from `NextIteration` are ignored
    for depth; a graph that is cyclic even so keeps its order.
    """
    nodes = {node.name: node for node in graph_def.node}
    preds: dict[str, set[str]] = {}
    for node in graph_def.node:
        sources = {_input_node(t) for t in node.input}
        if node.op in ("Merge", "RefMerge"):
            sources = {s for s in sources if nodes.get(s) is None or nodes[s].op != "NextIteration"}
        preds[node.name] = {s for s in sources if s in nodes and s != node.name}
    users: dict[str, list[str]] = {name: [] for name in nodes}
    for name, sources in preds.items():
        for source in sources:
            users[source].append(name)
    waiting = {name: len(sources) for name, sources in preds.items()}
    depth = dict.fromkeys(nodes, 0)
    ready = [name for name, count in waiting.items() if count == 0]
    done = 0
    while ready:
        name = ready.pop()
        done += 1
        for user in users[name]:
            depth[user] = max(depth[user], depth[name] + 1)
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    if done != len(nodes):
        return graph_def
    out = GraphDef()
    out.CopyFrom(graph_def)
    del out.node[:]
    out.node.extend(nodes[name] for name in sorted(nodes, key=lambda n: (depth[n], n)))
    return out


def _frozen_from_concrete(
    concrete: Any, where: str, output_keys: list[str], lower_control_flow: bool = True
) -> FrozenModel:
    """Freeze a concrete function; inputs are its non-resource placeholders."""
    frozen = _convert(concrete, where, lower_control_flow)
    tf_graph_def = frozen.graph.as_graph_def()
    graph_def = canonical_order(GraphDef.FromString(tf_graph_def.SerializeToString()))
    inputs = [_spec_of(t) for t in frozen.inputs if t.dtype.name != "resource"]
    outputs = [t.name for t in frozen.outputs]
    return FrozenModel(graph_def, inputs, outputs, output_keys)


def freeze_keras_model(
    model: Any, where: str = "keras model", *, lower_control_flow: bool = True
) -> FrozenModel:
    """Freeze a tf-keras model object called in inference mode (training=False); see `_convert`
    for `lower_control_flow`."""
    tf = import_tensorflow()
    specs = [
        tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0].split("/")[0])
        for t in model.inputs
    ]
    multi = len(specs) > 1

    def call(*args: Any) -> Any:
        """The model on its inputs, as a flat list of outputs."""
        result = model(list(args) if multi else args[0], training=False)
        return list(result) if isinstance(result, list | tuple) else [result]

    concrete = tf.function(call).get_concrete_function(*specs)
    keys = list(getattr(model, "output_names", []))
    return _frozen_from_concrete(concrete, where, keys, lower_control_flow)


def freeze_keras_file(path: str | os.PathLike) -> FrozenModel:
    """Load a `.keras`/`.h5` file with tf-keras (no compile, no custom objects) and freeze it."""
    tf_keras = import_tf_keras()
    try:
        model = tf_keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise ModelLoadError(f"{path}: cannot load Keras model: {why}") from None
    return freeze_keras_model(model, str(path))


def freeze_saved_model(path: str | os.PathLike, signature: str = "serving_default") -> FrozenModel:
    """Freeze one signature of a SavedModel directory."""
    tf = import_tensorflow()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise ModelLoadError(f"{path}: cannot load SavedModel: {why}") from None
    signatures = dict(loaded.signatures)
    if signature not in signatures:
        have = ", ".join(sorted(signatures)) or "none"
        raise ModelLoadError(f"{path}: SavedModel has no signature {signature!r} (it has: {have})")
    concrete = signatures[signature]
    keys = sorted(concrete.structured_outputs) if isinstance(
        concrete.structured_outputs, dict
    ) else []
    return _frozen_from_concrete(concrete, str(path), keys)


def prune_to_outputs(frozen: FrozenModel, outputs: list[str], where: str) -> FrozenModel:
    """Keep only what the named output tensors need; unknown names are refused."""
    tf = import_tensorflow()
    names = {node.name for node in frozen.graph_def.node}
    refs = [parse_tensor(o) for o in outputs]
    missing = [o for o, ref in zip(outputs, refs, strict=True) if ref.node not in names]
    if missing:
        raise SurgeryError(
            f"{where}: --output {', '.join(missing)}: no such node in the frozen graph"
        )
    tf_graph_def = tf.compat.v1.GraphDef.FromString(frozen.graph_def.SerializeToString())
    pruned = tf.compat.v1.graph_util.extract_sub_graph(
        tf_graph_def, list(dict.fromkeys(ref.node for ref in refs))
    )
    graph_def = GraphDef.FromString(pruned.SerializeToString())
    kept = {node.name for node in graph_def.node}
    inputs = [spec for spec in frozen.inputs if spec.name in kept]
    tensors = [f"{ref.node}:{ref.port}" for ref in refs]
    return FrozenModel(graph_def, inputs, tensors, [])


def freeze(source: Any, outputs: list[str] | None = None) -> FrozenModel:
    """Freeze a SavedModel directory, a Keras file or a tf-keras model object."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            if not (path / "saved_model.pb").exists() and not (path / "saved_model.pbtxt").exists():
                raise ModelLoadError(f"{path}: directory is not a SavedModel (no saved_model.pb)")
            frozen = freeze_saved_model(path)
        elif not path.exists():
            raise ModelLoadError(f"{path}: no such file or directory")
        elif path.suffix.lower() in KERAS_SUFFIXES:
            frozen = freeze_keras_file(path)
        else:
            raise ModelLoadError(
                f"{path}: cannot freeze this (expected a SavedModel directory or a "
                f"{'/'.join(KERAS_SUFFIXES)} Keras file)"
            )
        where = str(path)
    else:
        frozen = freeze_keras_model(source)
        where = getattr(source, "name", "keras model")
    if outputs:
        frozen = prune_to_outputs(frozen, outputs, where)
    return frozen


def freeze_to_file(
    source: Any, output: str | os.PathLike, outputs: list[str] | None = None
) -> FrozenModel:
    """Freeze `source` and save it atomically to `output` (.pb or .pbtxt), never over the input."""
    inputs = (source,) if isinstance(source, str | os.PathLike) else ()
    model_io.check_output_path(output, *inputs)
    frozen = freeze(source, outputs)
    model_io.save(frozen.graph_def, output, inputs=inputs)
    return frozen
