"""Give every variable of a tf-keras model a seeded random value, so grappler can delete nothing.

Keras' own initialisers leave zero biases and a neutral batch norm (gamma 1, beta 0, mean 0,
variance 1); a frozen graph of such a model folds away and no longer looks like a trained one.
Each variable gets its own NumPy generator seeded by (seed, CRC32 of the variable's name), so
values depend neither on TensorFlow's global seed, nor on what else the process built before, nor
on the order Keras lists sibling layers in (which can vary between processes).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np


def _fan_in(shape: tuple[int, ...], transposed: bool) -> int:
    """Inputs feeding one output unit: receptive field times input channels."""
    if len(shape) < 2:
        return max(1, int(shape[0]) if shape else 1)
    field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    channels = shape[-1] if transposed else shape[-2]
    return max(1, field * int(channels))


def random_value(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A plausible trained value for the variable called `name` (He-scaled kernels)."""
    leaf = name.rsplit("/", 1)[-1].split(":")[0]
    if leaf in ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings"):
        transposed = "transpose" in name
        std = np.sqrt(2.0 / _fan_in(shape, transposed))
        value = rng.normal(0.0, std, shape)
    elif leaf == "gamma":
        value = rng.uniform(0.6, 1.4, shape)
    elif leaf == "moving_variance":
        value = rng.uniform(0.5, 1.5, shape)
    elif leaf in ("beta", "moving_mean"):
        value = rng.normal(0.0, 0.1, shape)
    elif leaf == "bias":
        value = rng.normal(0.0, 0.05, shape)
    else:
        value = rng.normal(0.0, 0.1, shape)
    return value.astype(np.float32)


def randomise(model: Any, seed: int) -> None:
    """Overwrite every weight of `model` (trainable or not) with seeded random values."""
    values = []
    for weight in model.weights:
        rng = np.random.default_rng([seed, zlib.crc32(weight.name.encode())])
        shape = tuple(int(d) for d in weight.shape)
        values.append(random_value(weight.name, shape, rng).astype(weight.dtype.as_numpy_dtype))
    model.set_weights(values)


def calibrate_batch_norm(model: Any, seed: int, batch: int = 4) -> None:
    """Set every BatchNormalization's moving mean/variance to the statistics it sees on a seeded
    random batch, as training would: with random moving statistics activations grow about 2x
    per residual block, and a deep net saturates (or overflows float16) at the output."""
    import tf_keras

    norms = [
        layer
        for layer in model.submodules
        if isinstance(layer, tf_keras.layers.BatchNormalization)
    ]
    if not norms:
        return
    rng = np.random.default_rng([seed, 0xBA7C4])
    feeds = []
    for tensor in model.inputs:
        dims = [batch if d is None else int(d) for d in tensor.shape]
        feeds.append(rng.standard_normal(dims).astype(tensor.dtype.as_numpy_dtype))
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0  # moving statistics := this batch's statistics
        model(feeds if len(feeds) > 1 else feeds[0], training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
