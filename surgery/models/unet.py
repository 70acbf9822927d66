"""A small U-Net: conv blocks down, `UpSampling2D` (nearest: ResizeNearestNeighbor) and skip
concatenations up, a 1x1 sigmoid mask at the end."""

from __future__ import annotations

from typing import Any

from surgery.models.weights import calibrate_batch_norm, randomise


def build(
    input_size: int = 64,
    channels: int = 3,
    widths: tuple[int, ...] = (8, 16, 32),
    bottleneck: int = 64,
    classes: int = 1,
    seed: int = 2,
) -> Any:
    """A tf-keras U-Net with one output, the per-pixel mask."""
    import tf_keras as keras

    layers = keras.layers
    keras.backend.clear_session()

    def conv_block(x: Any, width: int, name: str) -> Any:
        """Two 3x3 conv + batch norm + ReLU, as in the original U-Net (with BN)."""
        for index in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv{index}")(x)
            x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
            x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
        return x

    image = keras.Input((input_size, input_size, channels), name="image")
    x = image
    skips = []
    for depth, width in enumerate(widths, start=1):
        x = conv_block(x, width, f"down{depth}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{depth}_pool")(x)
    x = conv_block(x, bottleneck, "bottom")
    for depth, width in reversed(list(enumerate(widths, start=1))):
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{depth}_upsample")(x)
        x = layers.Conv2D(width, 2, padding="same", activation="relu", name=f"up{depth}_proj")(x)
        x = layers.Concatenate(axis=-1, name=f"up{depth}_concat")([skips[depth - 1], x])
        x = conv_block(x, width, f"up{depth}")
    mask = layers.Conv2D(classes, 1, activation="sigmoid", name="mask")(x)
    model = keras.Model(image, mask, name="unet")
    randomise(model, seed)
    calibrate_batch_norm(model, seed)
    return model
