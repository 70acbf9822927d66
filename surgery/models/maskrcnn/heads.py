"""The classifier/box head (`mrcnn_class*`, `mrcnn_bbox*`) and the mask head (`mrcnn_mask*`)."""

from __future__ import annotations

from typing import Any

import tf_keras as keras

from surgery.models.maskrcnn.config import MaskRCNNConfig
from surgery.models.maskrcnn.norm import BatchNorm
from surgery.models.maskrcnn.roi_align import PyramidROIAlign

L = keras.layers


def _td_conv(config: MaskRCNNConfig, filters: int, kernel: int, name: str, **kw: Any) -> Any:
    """A TimeDistributed Conv2D in the build's data format."""
    conv = L.Conv2D(filters, kernel, data_format=config.data_format, **kw)
    return L.TimeDistributed(conv, name=name)


def _td_bn(config: MaskRCNNConfig, name: str) -> Any:
    """A TimeDistributed batch norm on the channel axis (1 after TimeDistributed's reshape)."""
    return L.TimeDistributed(
        BatchNorm(axis=config.channel_axis, epsilon=config.bn_epsilon), name=name
    )


def classifier_head(rois: Any, pyramid: list[Any], config: MaskRCNNConfig) -> tuple[Any, Any, Any]:
    """(mrcnn_class_logits, mrcnn_class, mrcnn_bbox) of each proposal."""
    x = PyramidROIAlign(config, config.pool_size, name="roi_align_classifier")([rois, *pyramid])
    x = _td_conv(config, config.fc_size, config.pool_size, "mrcnn_class_conv1")(x)
    x = _td_bn(config, "mrcnn_class_bn1")(x)
    x = L.Activation("relu")(x)
    x = _td_conv(config, config.fc_size, 1, "mrcnn_class_conv2")(x)
    x = _td_bn(config, "mrcnn_class_bn2")(x)
    x = L.Activation("relu")(x)
    # [b, n, C, 1, 1] (NCHW) or [b, n, 1, 1, C]: drop the two unit spatial axes
    axes = (4, 3) if config.nchw else (3, 2)
    shared = L.Lambda(lambda t: _squeeze(t, axes), name="pool_squeeze")(x)
    classes = config.num_classes
    logits = L.TimeDistributed(L.Dense(classes), name="mrcnn_class_logits")(shared)
    probs = L.TimeDistributed(L.Activation("softmax"), name="mrcnn_class")(logits)
    x = L.TimeDistributed(L.Dense(classes * 4), name="mrcnn_bbox_fc")(shared)
    bbox = L.Reshape((config.proposals, classes, 4), name="mrcnn_bbox")(x)
    return logits, probs, bbox


def _squeeze(tensor: Any, axes: tuple[int, int]) -> Any:
    """Squeeze `axes` one after the other (the higher first)."""
    import tensorflow as tf

    return tf.squeeze(tf.squeeze(tensor, axes[0]), axes[1])


def mask_head(boxes: Any, pyramid: list[Any], config: MaskRCNNConfig) -> Any:
    """Per-class mask probabilities [b, n, classes, m, m] (NCHW) or [b, n, m, m, classes]."""
    x = PyramidROIAlign(config, config.mask_pool_size, name="roi_align_mask")([boxes, *pyramid])
    for index in range(1, 5):
        x = _td_conv(config, config.mask_conv_size, 3, f"mrcnn_mask_conv{index}", padding="same")(x)
        x = _td_bn(config, f"mrcnn_mask_bn{index}")(x)
        x = L.Activation("relu")(x)
    deconv = L.Conv2DTranspose(
        config.mask_conv_size, 2, strides=2, activation="relu", data_format=config.data_format
    )
    x = L.TimeDistributed(deconv, name="mrcnn_mask_deconv")(x)
    return _td_conv(config, config.num_classes, 1, "mrcnn_mask", activation="sigmoid")(x)
