"""Build, randomise and freeze Mask R-CNN the way the fixture registry expects.

Every variant of one config carries the same weights: they are drawn and calibrated on the
reference build (NCHW, Matterport names, constant anchors) and copied into the variant, whose
layers come in the same order. So the NHWC, renamed, TF1-control-flow and anchors-as-input
graphs compute what the NCHW one does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from surgery.models.maskrcnn.config import MaskRCNNConfig, make_config
from surgery.passes.freeze import FrozenModel, TensorSpecInfo, canonical_order, freeze_keras_model


def reference_config(config: MaskRCNNConfig) -> MaskRCNNConfig:
    """The build whose weights every variant of `config` shares."""
    return config.with_(
        naming="matterport", data_format="channels_first", control_flow="v2", anchors="constant"
    )


def reference_model(config: MaskRCNNConfig) -> Any:
    """The reference build with seeded random weights, BN statistics calibrated on a seeded
    random image."""
    import tf_keras as keras

    from surgery.models.maskrcnn.model import build_keras_model
    from surgery.models.maskrcnn.norm import calibration
    from surgery.models.weights import calibrate_batch_norm, randomise

    keras.backend.clear_session()
    model = build_keras_model(reference_config(config))
    randomise(model, config.seed)
    with calibration():
        calibrate_batch_norm(model, config.seed)
    return model


def reference_weights(config: MaskRCNNConfig) -> list[Any]:
    """The weights of `reference_model(config)`."""
    import tf_keras as keras

    weights = reference_model(config).get_weights()
    keras.backend.clear_session()
    return weights


def build(config: str | MaskRCNNConfig = "small", **changes: Any) -> Any:
    """A randomised tf-keras Mask R-CNN (eager build; `control_flow` matters only to freezing)."""
    from surgery.models.maskrcnn.model import build_keras_model

    cfg = make_config(config, **changes)
    if reference_config(cfg) == cfg.with_(control_flow="v2"):
        return reference_model(cfg)
    weights = reference_weights(cfg)
    model = build_keras_model(cfg)
    model.set_weights(weights)
    return model


def freeze_model(where: str, config: str | MaskRCNNConfig = "small", **changes: Any) -> FrozenModel:
    """The frozen graph, TF2 control flow kept (`StatelessWhile` + library) or TF1's (v1)."""
    cfg = make_config(config, **changes)
    if cfg.control_flow == "v1":
        return _freeze_v1(reference_weights(cfg), cfg, where)
    frozen = freeze_keras_model(Unscoped(build(cfg)), where, lower_control_flow=False)
    renumber_functions(frozen.graph_def)
    return frozen


def renumber_functions(graph_def: Any) -> None:
    """Rename library functions `f_<uid>` to `f_<rank>` in place, with every mention of them
    (call attributes, argument names derived from them): TF's uids count every function the
    process traced before, so the frozen bytes would depend on what else it built."""
    import re

    from google.protobuf import text_format

    library = graph_def.library
    found = []
    for function in library.function:
        match = re.fullmatch(r"(.*)_(\d+)", function.signature.name)
        if match:
            found.append((int(match.group(2)), match.group(1), function.signature.name))
    mapping = {old: f"{base}_{rank}" for rank, (_, base, old) in enumerate(sorted(found))}
    if not mapping:
        return
    pattern = re.compile("|".join(re.escape(old) for old in mapping) + r"(?!\d)")
    text = text_format.MessageToString(library)
    text = pattern.sub(lambda m: mapping[m.group(0)], text)
    library.Clear()
    text_format.Parse(text, library)
    for node in graph_def.node:
        for value in node.attr.values():
            if value.HasField("func"):
                value.func.name = mapping.get(value.func.name, value.func.name)
            for func in value.list.func:
                func.name = mapping.get(func.name, func.name)


class Unscoped:
    """A Keras model seen by `freeze_keras_model` without its own name scope, so that layer
    scopes are top-level (`ROI/...`, not `mask_rcnn/ROI/...`), as in a TF1-frozen Matterport
    graph."""

    def __init__(self, model: Any) -> None:
        """Wrap `model`, exposing what the freezer reads."""
        self.model = model
        self.name = model.name
        self.inputs = model.inputs
        self.output_names = model.output_names

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        """Run the functional graph directly (`Model.call` opens no scope of its own)."""
        return self.model.call(inputs, training=training)


def _freeze_v1(weights: list[Any], cfg: MaskRCNNConfig, where: str) -> FrozenModel:
    """Build the model in a TF1 graph with control flow v1, load `weights`, freeze a session."""
    from surgery.models.maskrcnn.model import build_keras_model

    return freeze_in_tf1_graph(lambda: build_keras_model(cfg), weights, where)


def freeze_in_tf1_graph(
    make_model: Callable[[], Any], weights: list[Any], where: str
) -> FrozenModel:
    """Build a tf-keras model with `make_model` in a TF1 graph with control flow v1 (Enter/Exit/
    Merge/Switch), load `weights`, freeze the session; outputs named `Identity`, `Identity_1`..."""
    import tensorflow as tf
    import tf_keras as keras

    from surgery.errors import SurgeryError
    from surgery.ir.protos import GraphDef

    keras.backend.clear_session()
    was_v2 = tf.compat.v1.control_flow_v2_enabled()
    graph = tf.Graph()
    try:
        tf.compat.v1.disable_control_flow_v2()
        with graph.as_default():
            model = make_model()
            model.set_weights(weights)
            outputs = [
                tf.identity(t, name="Identity" if i == 0 else f"Identity_{i}")
                for i, t in enumerate(model.outputs)
            ]
            session = tf.compat.v1.keras.backend.get_session()
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), [t.op.name for t in outputs]
            )
            inputs = [
                TensorSpecInfo(t.op.name, tuple(t.shape.as_list()), t.dtype.name)
                for t in model.inputs
            ]
            names = [t.name for t in outputs]
            keys = list(model.output_names)
    except Exception as exc:  # TF raises many kinds; the user needs one line
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise SurgeryError(f"{where}: cannot freeze with TF1 control flow: {why}") from None
    finally:
        if was_v2:
            tf.compat.v1.enable_control_flow_v2()
        keras.backend.clear_session()
    graph_def = canonical_order(GraphDef.FromString(frozen.SerializeToString()))
    return FrozenModel(graph_def, inputs, names, keys)
