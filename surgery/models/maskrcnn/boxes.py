"""Box arithmetic shared by the proposal and detection layers, and per-image slicing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf


def apply_deltas(boxes: Any, deltas: Any, name: str) -> Any:
    """Shift and scale (y1, x1, y2, x2) boxes by (dy, dx, log dh, log dw) deltas."""
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    centre_y = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    centre_x = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * tf.exp(deltas[:, 2])
    width = width * tf.exp(deltas[:, 3])
    corners = [
        centre_y - 0.5 * height,
        centre_x - 0.5 * width,
        centre_y + 0.5 * height,
        centre_x + 0.5 * width,
    ]
    return tf.stack(corners, axis=1, name=name)


def clip_boxes(boxes: Any, window: Sequence[float], name: str) -> Any:
    """Clamp every box into `window` (wy1, wx1, wy2, wx2)."""
    wy1, wx1, wy2, wx2 = (float(v) for v in window)
    y1, x1, y2, x2 = tf.split(boxes, 4, axis=1)
    y1 = tf.maximum(tf.minimum(y1, wy2), wy1)
    x1 = tf.maximum(tf.minimum(x1, wx2), wx1)
    y2 = tf.maximum(tf.minimum(y2, wy2), wy1)
    x2 = tf.maximum(tf.minimum(x2, wx2), wx1)
    clipped = tf.concat([y1, x1, y2, x2], axis=1, name=name)
    clipped.set_shape((clipped.shape[0], 4))
    return clipped


def per_image(
    inputs: Sequence[Any], fn: Callable[..., Any], batch: int, names: Sequence[str] | None = None
) -> Any:
    """Apply `fn` to each image's slice of `inputs` and stack the results back into a batch."""
    results = []
    for index in range(batch):
        out = fn(*[tensor[index] for tensor in inputs])
        results.append(out if isinstance(out, list | tuple) else [out])
    stacked = [
        tf.stack(list(parts), axis=0, name=None if names is None else names[i])
        for i, parts in enumerate(zip(*results, strict=True))
    ]
    return stacked[0] if len(stacked) == 1 else stacked
