"""CropAndResize: bilinear crops of normalised boxes from an NCHW map (TensorRT's kernel).

Box `b` of image `n` samples image `n`. TensorRT follows `tf.image.crop_and_resize`:
`in_y = y1 * (H - 1) + y * (y2 - y1) * (H - 1) / (crop_h - 1)` (the box centre when crop_h is
1), samples outside [0, H - 1] give 0 (the extrapolation value), otherwise bilinear between
floor and ceil.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, field, inputs_exactly, need_rank


def _positions(lo: np.ndarray, hi: np.ndarray, extent: int, crop: int) -> np.ndarray:
    """Sample positions [boxes, crop] along one axis."""
    span = F32(extent - 1)
    if crop > 1:
        step = (hi - lo) * span / F32(crop - 1)
        return lo[:, None] * span + np.arange(crop, dtype=F32)[None, :] * step[:, None]
    return (F32(0.5) * (lo + hi) * span)[:, None]


def bilinear_crops(image: np.ndarray, boxes: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """Crops [boxes, C, crop_h, crop_w] of one [C, H, W] image, boxes [boxes, 4] as y1 x1 y2 x2."""
    _, height, width = image.shape
    ys = _positions(boxes[:, 0], boxes[:, 2], height, crop_h).astype(F32)
    xs = _positions(boxes[:, 1], boxes[:, 3], width, crop_w).astype(F32)
    y_ok = (ys >= 0) & (ys <= height - 1)
    x_ok = (xs >= 0) & (xs <= width - 1)
    yc = np.clip(ys, 0, height - 1)
    xc = np.clip(xs, 0, width - 1)
    top, left = np.floor(yc).astype(np.int64), np.floor(xc).astype(np.int64)
    bottom, right = np.ceil(yc).astype(np.int64), np.ceil(xc).astype(np.int64)
    y_lerp = (yc - top).astype(F32)[:, None, :, None]
    x_lerp = (xc - left).astype(F32)[:, None, None, :]

    def pick(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # [boxes, C, crop_h, crop_w]
        return image[:, rows[:, :, None], cols[:, None, :]].transpose(1, 0, 2, 3)

    upper = pick(top, left) + (pick(top, right) - pick(top, left)) * x_lerp
    lower = pick(bottom, left) + (pick(bottom, right) - pick(bottom, left)) * x_lerp
    crops = upper + (lower - upper) * y_lerp
    inside = (y_ok[:, :, None] & x_ok[:, None, :])[:, None, :, :]
    return np.where(inside, crops, F32(0)).astype(F32)


def crop_and_resize(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """feature_map [N, C, H, W], rois [N, B, 4(, 1)] -> crops [N, B, C, crop_h, crop_w]."""
    name = "CropAndResize"
    image, rois = inputs_exactly(name, inputs, 2)
    need_rank(name, "feature_map", image, (4,))
    crop_h = int(field(name, fields, "crop_height"))
    crop_w = int(field(name, fields, "crop_width"))
    if crop_h < 1 or crop_w < 1:
        raise PluginReferenceError(f"{name}: crop size must be positive, got {crop_h}x{crop_w}")
    batch = image.shape[0]
    if rois.ndim < 2 or rois.shape[0] != batch or rois.size % (batch * 4):
        raise PluginReferenceError(
            f"{name}: rois have shape {rois.shape}; expected [{batch}, boxes, 4, 1]"
        )
    boxes = rois.reshape(batch, -1, 4)
    crops = [bilinear_crops(image[n], boxes[n], crop_h, crop_w) for n in range(batch)]
    return [np.stack(crops).astype(F32)]
