"""Region proposal network: one shared Keras model applied to every pyramid level."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from surgery.models.maskrcnn.config import MaskRCNNConfig

L = keras.layers


def _flatten_anchors(x: Any, config: MaskRCNNConfig, per_anchor: int, name: str) -> Any:
    """[b, A*k, H, W] or [b, H, W, A*k] -> [b, H*W*A, k] (anchor-major, as the anchors are)."""
    if config.nchw:
        x = L.Permute((2, 3, 1), name=f"{name}_permute")(x)
        return L.Reshape((-1, per_anchor), name=f"{name}_reshape")(x)
    return L.Lambda(
        lambda t: tf.reshape(t, [tf.shape(t)[0], -1, per_anchor]), name=f"{name}_reshape"
    )(x)


def build_rpn_model(config: MaskRCNNConfig) -> Any:
    """The shared RPN: conv 3x3 -> (class logits, class probabilities, box deltas)."""
    depth = config.top_down_size
    shape = (depth, None, None) if config.nchw else (None, None, depth)
    feature_map = keras.Input(shape=shape, name="input_rpn_feature_map")
    fmt = config.data_format
    anchors = config.anchors_per_location
    shared = L.Conv2D(
        config.rpn_conv_size,
        3,
        padding="same",
        activation="relu",
        strides=config.anchor_stride,
        data_format=fmt,
        name="rpn_conv_shared",
    )(feature_map)
    x = L.Conv2D(2 * anchors, 1, data_format=fmt, name="rpn_class_raw")(shared)
    logits = _flatten_anchors(x, config, 2, "rpn_class_raw")
    probs = L.Activation("softmax", name="rpn_class_xxx")(logits)
    x = L.Conv2D(4 * anchors, 1, data_format=fmt, name="rpn_bbox_pred")(shared)
    deltas = _flatten_anchors(x, config, 4, "rpn_bbox_pred")
    return keras.Model([feature_map], [logits, probs, deltas], name="rpn_model")


def rpn_outputs(pyramid: list[Any], config: MaskRCNNConfig) -> tuple[Any, Any, Any]:
    """`rpn_class_logits`, `rpn_class`, `rpn_bbox`: the RPN on P2..P6, concatenated."""
    rpn = build_rpn_model(config)
    per_level = [rpn([p]) for p in pyramid]
    names = ("rpn_class_logits", "rpn_class", "rpn_bbox")
    return tuple(  # type: ignore[return-value]
        L.Concatenate(axis=1, name=name)([level[i] for level in per_level])
        for i, name in enumerate(names)
    )
