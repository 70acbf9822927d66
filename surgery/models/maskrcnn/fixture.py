"""Build, randomise and freeze Mask R-CNN the way the fixture registry expects."""

from __future__ import annotations

from typing import Any

from surgery.freeze import FrozenModel, TensorSpecInfo, canonical_order, freeze_keras_model
from surgery.models.maskrcnn.config import MaskRCNNConfig, make_config


def build(config: str | MaskRCNNConfig = "small", **changes: Any) -> Any:
    """A randomised tf-keras Mask R-CNN (BN statistics calibrated on a seeded random image)."""
    import tf_keras as keras

    from surgery.models.maskrcnn.model import build_keras_model
    from surgery.models.maskrcnn.norm import calibration
    from surgery.models.weights import calibrate_batch_norm, randomise

    cfg = make_config(config, **changes)
    keras.backend.clear_session()
    model = build_keras_model(cfg)
    randomise(model, cfg.seed)
    with calibration():
        calibrate_batch_norm(model, cfg.seed)
    return model


def freeze_model(where: str, config: str | MaskRCNNConfig = "small", **changes: Any) -> FrozenModel:
    """The frozen graph: through `surgery.freeze` (TF2 control flow) or a TF1 session (v1)."""
    cfg = make_config(config, **changes)
    model = build(cfg)
    if cfg.control_flow == "v2":
        return freeze_keras_model(model, where, lower_control_flow=False)
    return _freeze_v1(model, cfg, where)


def _freeze_v1(trained: Any, cfg: MaskRCNNConfig, where: str) -> FrozenModel:
    """Rebuild the model in a TF1 graph with control flow v1, load `trained`'s weights, freeze."""
    import tensorflow as tf
    import tf_keras as keras

    from surgery.errors import SurgeryError
    from surgery.models.maskrcnn.model import build_keras_model
    from surgery.protos import GraphDef

    weights = trained.get_weights()
    output_keys = list(trained.output_names)
    keras.backend.clear_session()
    was_v2 = tf.compat.v1.control_flow_v2_enabled()
    graph = tf.Graph()
    try:
        tf.compat.v1.disable_control_flow_v2()
        with graph.as_default():
            model = build_keras_model(cfg)
            model.set_weights(weights)
            outputs = [
                tf.identity(t, name="Identity" if i == 0 else f"Identity_{i}")
                for i, t in enumerate(model.outputs)
            ]
            session = keras.backend.get_session()
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), [t.op.name for t in outputs]
            )
            inputs = [
                TensorSpecInfo(t.op.name, tuple(t.shape.as_list()), t.dtype.name)
                for t in model.inputs
            ]
            names = [t.name for t in outputs]
    except Exception as exc:  # TF raises many kinds; the user needs one line
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise SurgeryError(f"{where}: cannot freeze with TF1 control flow: {why}") from None
    finally:
        if was_v2:
            tf.compat.v1.enable_control_flow_v2()
        keras.backend.clear_session()
    graph_def = canonical_order(GraphDef.FromString(frozen.SerializeToString()))
    return FrozenModel(graph_def, inputs, names, output_keys)
