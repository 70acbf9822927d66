"""The 3D bounding-box estimation net (VGG-style backbone, dimension/orientation/confidence heads).

After the Keras model of the TensorRT blog post in seeds/001: a Flatten -> Dense trunk, LeakyReLU
with alpha 0.1 everywhere, an orientation head that reshapes to `(bin_num, -1)` and ends in
`tf.math.l2_normalize`, and a softmax confidence head. The backbone is kept small for tests.
"""

from __future__ import annotations

from typing import Any

from surgery.models.weights import randomise


def build(
    input_size: int = 64,
    widths: tuple[int, ...] = (16, 32, 64, 64),
    convs_per_block: tuple[int, ...] = (2, 2, 3, 3),
    dense: int = 64,
    bin_num: int = 2,
    seed: int = 1,
) -> Any:
    """A tf-keras Model with outputs (dimension, orientation, confidence)."""
    import tensorflow as tf
    import tf_keras as keras

    layers = keras.layers
    keras.backend.clear_session()
    image = keras.Input((input_size, input_size, 3), name="input_1")
    x = image
    for block, (width, count) in enumerate(zip(widths, convs_per_block, strict=True), start=1):
        for index in range(1, count + 1):
            x = layers.Conv2D(
                width, 3, padding="same", activation="relu", name=f"block{block}_conv{index}"
            )(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)

    dimension = layers.Dense(dense, name="dense_1")(x)
    dimension = layers.LeakyReLU(alpha=0.1, name="leaky_re_lu_1")(dimension)
    dimension = layers.Dropout(0.5, name="dropout_1")(dimension)
    dimension = layers.Dense(3, name="dense_2")(dimension)
    dimension = layers.LeakyReLU(alpha=0.1, name="dimension")(dimension)

    orientation = layers.Dense(dense // 2, name="dense_3")(x)
    orientation = layers.LeakyReLU(alpha=0.1, name="leaky_re_lu_2")(orientation)
    orientation = layers.Dropout(0.5, name="dropout_2")(orientation)
    orientation = layers.Dense(bin_num * 2, name="dense_4")(orientation)
    orientation = layers.LeakyReLU(alpha=0.1, name="leaky_re_lu_3")(orientation)
    orientation = layers.Reshape((bin_num, -1), name="reshape_1")(orientation)
    orientation = layers.Lambda(
        lambda t: tf.math.l2_normalize(t, axis=2), name="orientation"
    )(orientation)

    confidence = layers.Dense(dense // 2, name="dense_5")(x)
    confidence = layers.LeakyReLU(alpha=0.1, name="leaky_re_lu_4")(confidence)
    confidence = layers.Dropout(0.5, name="dropout_3")(confidence)
    confidence = layers.Dense(bin_num, activation="softmax", name="confidence")(confidence)

    model = keras.Model(image, [dimension, orientation, confidence], name="box3d")
    randomise(model, seed)
    return model
