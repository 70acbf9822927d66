"""A detector-like net: conv backbone, a Conv2DTranspose (Conv2DBackpropInput) upsampling path,
and a box head built from multi-output ops (Split, Unpack, TopKV2) read at ports `:1`/`:2`,
guarded by an Assert through control edges, all inside name scopes."""

from __future__ import annotations

from typing import Any

import numpy as np

from surgery.models.weights import randomise


def anchors(grid: int, per_cell: int, image_size: int) -> np.ndarray:
    """(grid*grid*per_cell, 4) anchors as (cy, cx, h, w) in pixels, row-major over cells."""
    step = image_size / grid
    centres = (np.arange(grid, dtype=np.float32) + 0.5) * step
    sizes = step * (1.0 + np.arange(per_cell, dtype=np.float32))
    cy, cx, size = np.meshgrid(centres, centres, sizes, indexing="ij")
    return np.stack([cy, cx, size, size], axis=-1).reshape(-1, 4).astype(np.float32)


def build(
    input_size: int = 64,
    widths: tuple[int, int, int] = (16, 32, 32),
    per_cell: int = 3,
    top_k: int = 16,
    seed: int = 4,
) -> Any:
    """A tf-keras Model with outputs (boxes [N,k,4], scores [N,k], mask [N,H/4,W/4,1])."""
    import tensorflow as tf
    import tf_keras as keras

    layers = keras.layers
    keras.backend.clear_session()
    grid = input_size // 4
    anchor_table = anchors(grid, per_cell, input_size)

    class DecodeDetections(keras.layers.Layer):
        """Split the head into (objectness, centre, size), decode boxes, keep the top k."""

        def call(self, head: Any) -> Any:
            """head: [N, grid, grid, per_cell*6] -> (boxes [N,k,4], scores [N,k])."""
            with tf.name_scope("reshape_head"):
                rows = tf.reshape(head, [-1, grid * grid * per_cell, 6])
            with tf.name_scope("split_head"):
                logits, centre, size = tf.split(rows, 3, axis=-1)  # :0, :1, :2
            with tf.name_scope("scores"):
                probs = tf.nn.softmax(logits, axis=-1)
                _, foreground = tf.unstack(probs, axis=-1)  # Unpack:1
            with tf.name_scope("decode"):
                ay, ax, ah, aw = tf.unstack(tf.constant(anchor_table, name="anchors"), axis=1)
                dy, dx = tf.unstack(centre, axis=-1)
                dh, dw = tf.unstack(tf.clip_by_value(size, -4.0, 4.0), axis=-1)
                cy, cx = ay + dy * ah, ax + dx * aw
                h, w = ah * tf.exp(dh), aw * tf.exp(dw)
                boxes = tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)
            with tf.name_scope("top_k"):
                scores, indices = tf.math.top_k(foreground, k=top_k, sorted=True)
                boxes = tf.gather(boxes, indices, batch_dims=1)
            with tf.name_scope("checks"):
                finite = tf.debugging.Assert(
                    tf.reduce_all(tf.math.is_finite(boxes)), [boxes], name="boxes_finite"
                )
                in_range = tf.debugging.Assert(
                    tf.reduce_all(scores >= 0.0), [scores], name="scores_non_negative"
                )
                checked = tf.group(finite, in_range, name="all_checks")
            with tf.control_dependencies([checked]):
                boxes = tf.identity(boxes, name="boxes")
                scores = tf.identity(scores, name="scores")
            return boxes, scores

    image = keras.Input((input_size, input_size, 3), name="image")
    c1 = layers.Conv2D(widths[0], 3, strides=2, padding="same", activation="relu",
                       name="backbone/conv1")(image)
    c2 = layers.Conv2D(widths[1], 3, strides=2, padding="same", activation="relu",
                       name="backbone/conv2")(c1)
    c3 = layers.Conv2D(widths[2], 3, strides=2, padding="same", activation="relu",
                       name="backbone/conv3")(c2)
    up = layers.Conv2DTranspose(widths[1], 3, strides=2, padding="same", name="fpn/upsample")(c3)
    p2 = layers.Add(name="fpn/merge")([up, c2])
    p2 = layers.Conv2D(widths[1], 3, padding="same", activation="relu", name="fpn/smooth")(p2)
    head = layers.Conv2D(per_cell * 6, 1, name="head/conv")(p2)
    boxes, scores = DecodeDetections(name="detections")(head)
    mask = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(p2)
    model = keras.Model(image, [boxes, scores, mask], name="detector")
    randomise(model, seed)
    return model
