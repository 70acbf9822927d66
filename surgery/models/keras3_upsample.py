"""A small Keras 3 encoder/decoder: its `UpSampling2D` freezes to the Keras 3 form of nearest
upsampling (no ResizeNearestNeighbor), and LeakyReLU activations between the convolutions."""

from __future__ import annotations

from typing import Any

import numpy as np


def build(input_size: int = 16, widths: tuple[int, int] = (8, 16), seed: int = 7) -> Any:
    """A Keras 3 (not tf-keras) Model: conv, pool, conv, two 2x nearest upsamplings, conv."""
    import keras

    layers = keras.layers
    image = keras.Input((input_size, input_size, 3), name="image", batch_size=1)
    x = layers.Conv2D(widths[0], 3, padding="same", name="enc1")(image)
    x = layers.LeakyReLU(negative_slope=0.2, name="enc1_lrelu")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(widths[1], 3, padding="same", name="enc2")(x)
    x = layers.LeakyReLU(negative_slope=0.1, name="enc2_lrelu")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.UpSampling2D(2, interpolation="nearest", name="up1")(x)
    x = layers.Conv2D(widths[0], 3, padding="same", activation="relu", name="dec1")(x)
    x = layers.UpSampling2D(2, interpolation="nearest", name="up2")(x)
    out = layers.Conv2D(1, 1, name="head")(x)
    model = keras.Model(image, out, name="keras3_upsample")
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        scale = np.sqrt(2.0 / max(fan_in, 1)) if len(shape) > 1 else 0.05
        weight.assign(rng.standard_normal(shape).astype(np.float32) * scale)
    return model
