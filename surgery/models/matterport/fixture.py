"""Randomise Matterport's model so that it detects on its feeds, and freeze it (TF2 or TF1
control flow) the way the fixture registry expects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from surgery.models.matterport.config import matterport_config, matterport_inputs
from surgery.models.matterport.shims import import_mrcnn
from surgery.passes.freeze import FrozenModel, freeze_keras_model

# How `mrcnn_class_logits` is shaped on the fixture's feeds: each class's logit standardised over
# the ROIs and times LOGIT_SCALE, then background put ahead by just enough that FOREGROUND_SHARE
# of the ROIs still go to a foreground class.
LOGIT_SCALE = 3.0
FOREGROUND_SHARE = 0.15


class _RealFeeds:
    """The model as `weights.calibrate_batch_norm` sees it, fed the fixture's feeds instead of
    the random ones it draws (random anchors would give meaningless ROIs)."""

    def __init__(self, model: Any, feeds: dict[str, np.ndarray]) -> None:
        import tensorflow as tf

        self.model = model
        self.feeds = _feeds_for(model, feeds)
        self.submodules = model.submodules
        self.inputs = [tf.TensorSpec([1], tf.float32)]  # what it draws its (unused) batch from

    def __call__(self, _random: Any, training: bool) -> Any:
        return self.model(self.feeds, training=training)


@contextlib.contextmanager
def _batch_statistics(modellib: Any) -> Iterator[None]:
    """mrcnn's BatchNorm layers are called with `training=False` (TRAIN_BN): let them use batch
    statistics (and so update their moving ones) for the duration."""
    original = modellib.BatchNorm.__dict__["call"]
    parent = modellib.BatchNorm.__mro__[1]

    def call(self: Any, inputs: Any, training: Any = None) -> Any:
        return parent.call(self, inputs, training=True)

    modellib.BatchNorm.call = call
    try:
        yield
    finally:
        modellib.BatchNorm.call = original


def _feeds_for(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """`feeds` in the order of the model's inputs."""
    return [feeds[t.name.split(":")[0]] for t in model.inputs]


def _tame_rpn_deltas(model: Any, feeds: dict[str, np.ndarray]) -> None:
    """Scale `rpn_bbox_pred` so that its deltas have unit spread on `feeds`, as trained ones
    do (their targets are divided by RPN_BBOX_STD_DEV); He-scaled random weights give deltas
    of ~8 that blow every proposal up to the whole image."""
    layer = model.get_layer("rpn_model").get_layer("rpn_bbox_pred")
    outputs = model(_feeds_for(model, feeds), training=False)
    deltas = np.asarray(outputs[model.output_names.index("rpn_bbox")])
    kernel, bias = layer.get_weights()
    scale = 1.0 / (deltas.std() + 1e-6)
    layer.set_weights([kernel * scale, bias * scale])


def _shape_class_logits(model: Any, feeds: dict[str, np.ndarray]) -> None:
    """Standardise each class logit of `mrcnn_class_logits` over the ROIs of `feeds`, scale it
    by LOGIT_SCALE and put background ahead so that FOREGROUND_SHARE of the ROIs go to a
    foreground class, most with high confidence, as in a trained model (random weights give
    near-uniform probabilities, and detections that depend on chance)."""
    import tf_keras

    layer = model.get_layer("mrcnn_class_logits")
    probe = tf_keras.Model(model.inputs, model.get_layer("pool_squeeze").output)
    shared = np.asarray(probe(_feeds_for(model, feeds)))[0]
    kernel, bias = layer.get_weights()
    logits = shared @ kernel + bias
    gain = LOGIT_SCALE / (logits.std(axis=0) + 1e-6)
    standard = (logits - logits.mean(axis=0)) * gain
    margin = standard[:, 1:].max(axis=1) - standard[:, 0]  # > 0: a foreground class wins
    offset = np.zeros_like(bias)
    offset[0] = np.quantile(margin, 1.0 - FOREGROUND_SHARE)
    layer.set_weights([kernel * gain, (bias - logits.mean(axis=0)) * gain + offset])


def build_maskrcnn(config: str = "small", seed: int = 0) -> Any:
    """Matterport's `MaskRCNN` in inference mode with seeded random weights (see module doc)."""
    import tf_keras

    from surgery.models.weights import calibrate_batch_norm, randomise

    modellib, _ = import_mrcnn()
    cfg = matterport_config(config)
    feeds = matterport_inputs(cfg, seed)
    tf_keras.backend.clear_session()  # Keras' auto names (and so the weights) start afresh
    maskrcnn = modellib.MaskRCNN(mode="inference", config=cfg, model_dir="unused")
    model = maskrcnn.keras_model
    randomise(model, seed)
    # Batch norm sees what precedes it: the backbone first, then the heads on the tamed
    # proposals, then (after the classes are shaped) the mask head on the final detections.
    for shape in (_tame_rpn_deltas, _shape_class_logits, None):
        with _batch_statistics(modellib):
            calibrate_batch_norm(_RealFeeds(model, feeds), seed)
        if shape is not None:
            shape(model, feeds)
    return maskrcnn


def build(config: str = "small", control_flow: str = "v2", seed: int = 0) -> Any:
    """The randomised tf-keras model (`control_flow` matters only to freezing)."""
    del control_flow
    return build_maskrcnn(config, seed).keras_model


def freeze_model(
    where: str, config: str = "small", control_flow: str = "v2", seed: int = 0
) -> FrozenModel:
    """The frozen graph: TF2 control flow kept (`StatelessWhile` + library, functions renumbered)
    or TF1's (`v1`: Enter/Exit/Merge/Switch, built in a TF1 graph with the same weights)."""
    from surgery.models.maskrcnn.fixture import Unscoped, renumber_functions

    model = build(config, seed=seed)
    if control_flow == "v1":
        return _freeze_v1(model.get_weights(), config, where)
    if control_flow != "v2":
        raise ValueError(f"control_flow must be 'v1' or 'v2', not {control_flow!r}")
    frozen = freeze_keras_model(Unscoped(model), where, lower_control_flow=False)
    renumber_functions(frozen.graph_def)
    # TF lists library functions in an order that varies between processes: sort them by name.
    library = frozen.graph_def.library
    functions = sorted(library.function, key=lambda f: f.signature.name)
    copies = [type(f).FromString(f.SerializeToString()) for f in functions]
    del library.function[:]
    library.function.extend(copies)
    return frozen


def _freeze_v1(weights: list[Any], config: str, where: str) -> FrozenModel:
    """Build mrcnn in a TF1 graph with control flow v1, load `weights`, freeze the session."""
    from surgery.models.maskrcnn.fixture import freeze_in_tf1_graph

    modellib, _ = import_mrcnn()
    config_object = matterport_config(config)
    return freeze_in_tf1_graph(
        lambda: modellib.MaskRCNN(
            mode="inference", config=config_object, model_dir="unused"
        ).keras_model,
        weights, where,
    )  # fmt: skip
