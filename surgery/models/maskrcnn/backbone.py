"""ResNet50/101 (C2-C5) and the feature pyramid (P2-P6) in either data format."""

from __future__ import annotations

from typing import Any

import tf_keras as keras

from surgery.models.maskrcnn.config import MaskRCNNConfig
from surgery.models.maskrcnn.naming import backbone_names
from surgery.models.maskrcnn.norm import BatchNorm

L = keras.layers
STAGE4_BLOCKS = {"resnet50": 6, "resnet101": 23}


def _bn(config: MaskRCNNConfig, name: str | None) -> Any:
    """A batch norm on the channel axis of the build's layout."""
    return BatchNorm(axis=config.channel_axis, epsilon=config.bn_epsilon, name=name)


def _conv(config: MaskRCNNConfig, filters: int, kernel: int, name: str | None, **kw: Any) -> Any:
    """A Conv2D with bias in the build's data format."""
    return L.Conv2D(filters, kernel, data_format=config.data_format, name=name, **kw)


def residual_block(
    x: Any,
    config: MaskRCNNConfig,
    filters: tuple[int, int, int],
    stage: int,
    block: int,
    stride: int,
) -> Any:
    """Bottleneck block; the first of a stage (block 0) has a projection shortcut."""
    names = backbone_names(config, stage, block)
    f1, f2, f3 = (config.scaled(f) for f in filters)
    if block == 0:
        shortcut = _conv(config, f3, 1, names["conv"]("1"), strides=stride)(x)
        shortcut = _bn(config, names["bn"]("1"))(shortcut)
    else:
        shortcut = x
    y = _conv(config, f1, 1, names["conv"]("2a"), strides=stride)(x)
    y = _bn(config, names["bn"]("2a"))(y)
    y = L.Activation("relu", name=names["relu"]("2a"))(y)
    y = _conv(config, f2, 3, names["conv"]("2b"), padding="same")(y)
    y = _bn(config, names["bn"]("2b"))(y)
    y = L.Activation("relu", name=names["relu"]("2b"))(y)
    y = _conv(config, f3, 1, names["conv"]("2c"))(y)
    y = _bn(config, names["bn"]("2c"))(y)
    y = L.Add(name=names["add"])([y, shortcut])
    return L.Activation("relu", name=names["out"])(y)


def resnet(image: Any, config: MaskRCNNConfig) -> list[Any]:
    """The ResNet stages C2..C5 of `image`."""
    renamed = config.naming == "renamed"
    fmt = config.data_format
    x = L.ZeroPadding2D(3, data_format=fmt, name="conv1_pad" if renamed else None)(image)
    x = _conv(config, config.scaled(64), 7, "conv1_conv" if renamed else "conv1", strides=2)(x)
    x = _bn(config, "conv1_bn" if renamed else "bn_conv1")(x)
    x = L.Activation("relu", name="conv1_relu" if renamed else None)(x)
    x = L.MaxPooling2D(
        3, strides=2, padding="same", data_format=fmt, name="pool1_pool" if renamed else None
    )(x)
    stages = (
        (2, (64, 64, 256), 3, 1),
        (3, (128, 128, 512), 4, 2),
        (4, (256, 256, 1024), STAGE4_BLOCKS[config.backbone], 2),
        (5, (512, 512, 2048), 3, 2),
    )
    features = []
    for stage, filters, blocks, stride in stages:
        for block in range(blocks):
            x = residual_block(x, config, filters, stage, block, stride if block == 0 else 1)
        features.append(x)
    return features


def pyramid(features: list[Any], config: MaskRCNNConfig) -> list[Any]:
    """FPN levels P2..P6 from C2..C5 (top-down 2x nearest upsampling, 3x3 smoothing)."""
    c2, c3, c4, c5 = features
    fmt = config.data_format
    size = config.top_down_size
    p5 = _conv(config, size, 1, "fpn_c5p5")(c5)
    up5 = L.UpSampling2D(2, data_format=fmt, name="fpn_p5upsampled")(p5)
    p4 = L.Add(name="fpn_p4add")([up5, _conv(config, size, 1, "fpn_c4p4")(c4)])
    up4 = L.UpSampling2D(2, data_format=fmt, name="fpn_p4upsampled")(p4)
    p3 = L.Add(name="fpn_p3add")([up4, _conv(config, size, 1, "fpn_c3p3")(c3)])
    up3 = L.UpSampling2D(2, data_format=fmt, name="fpn_p3upsampled")(p3)
    p2 = L.Add(name="fpn_p2add")([up3, _conv(config, size, 1, "fpn_c2p2")(c2)])
    p2 = _conv(config, size, 3, "fpn_p2", padding="same")(p2)
    p3 = _conv(config, size, 3, "fpn_p3", padding="same")(p3)
    p4 = _conv(config, size, 3, "fpn_p4", padding="same")(p4)
    p5 = _conv(config, size, 3, "fpn_p5", padding="same")(p5)
    p6 = L.MaxPooling2D(1, strides=2, data_format=fmt, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
