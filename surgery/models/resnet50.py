"""ResNet50 (bottleneck blocks 3-4-6-3, FusedBatchNormV3) with a width multiplier.

Layer names follow `keras.applications.ResNet50` (`conv2_block1_1_conv`, ...), so frozen graphs
look like the real one; `width=1, input_size=224, classes=1000` is the full-size network.
"""

from __future__ import annotations

from typing import Any

from surgery.models.weights import calibrate_batch_norm, randomise

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (filters, blocks, first stride)
BN_EPSILON = 1.001e-5


def build(
    width: float = 0.125, input_size: int = 64, classes: int = 10, seed: int = 3
) -> Any:
    """A tf-keras ResNet50; `width` scales every layer's channel count."""
    import tf_keras as keras

    layers = keras.layers
    keras.backend.clear_session()

    def scaled(filters: int) -> int:
        """Channels after the width multiplier (at least 4)."""
        return max(4, int(round(filters * width)))

    def block(x: Any, filters: int, stride: int, shortcut_conv: bool, name: str) -> Any:
        """A bottleneck residual block: 1x1 -> 3x3 -> 1x1 (x4 channels) plus the shortcut."""
        out = 4 * filters
        if shortcut_conv:
            shortcut = layers.Conv2D(out, 1, strides=stride, name=f"{name}_0_conv")(x)
            shortcut = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_0_bn")(shortcut)
        else:
            shortcut = x
        x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_1_bn")(x)
        x = layers.Activation("relu", name=f"{name}_1_relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_2_bn")(x)
        x = layers.Activation("relu", name=f"{name}_2_relu")(x)
        x = layers.Conv2D(out, 1, name=f"{name}_3_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_3_bn")(x)
        x = layers.Add(name=f"{name}_add")([shortcut, x])
        return layers.Activation("relu", name=f"{name}_out")(x)

    image = keras.Input((input_size, input_size, 3), name="input_1")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(image)
    x = layers.Conv2D(scaled(64), 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks, stride) in enumerate(STAGES, start=2):
        for index in range(1, blocks + 1):
            x = block(
                x,
                scaled(filters),
                stride if index == 1 else 1,
                shortcut_conv=index == 1,
                name=f"conv{stage}_block{index}",
            )
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    probs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(image, probs, name="resnet50")
    randomise(model, seed)
    calibrate_batch_norm(model, seed)
    return model
