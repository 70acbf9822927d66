"""Pyramid anchors in normalized (y1, x1, y2, x2) coordinates, computed in NumPy."""

from __future__ import annotations

import math

import numpy as np

from surgery.models.maskrcnn.config import MaskRCNNConfig


def level_anchors(
    scale: int, ratios: tuple[float, ...], side: int, feature_stride: int, anchor_stride: int
) -> np.ndarray:
    """Pixel anchors of one level: every cell x every ratio, cell-major, ratio-minor."""
    ratio = np.asarray(ratios, np.float64)
    heights = scale / np.sqrt(ratio)
    widths = scale * np.sqrt(ratio)
    centres = np.arange(0, side, anchor_stride, dtype=np.float64) * feature_stride
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    cy = cy.reshape(-1, 1)
    cx = cx.reshape(-1, 1)
    y1 = cy - 0.5 * heights
    x1 = cx - 0.5 * widths
    boxes = np.stack([y1, x1, y1 + heights, x1 + widths], axis=-1)
    return boxes.reshape(-1, 4)


def generate_anchors(config: MaskRCNNConfig) -> np.ndarray:
    """All anchors [num_anchors, 4], normalized to the image (Matterport's `norm_boxes`)."""
    size = config.image_size
    levels = [
        level_anchors(
            scale,
            config.anchor_ratios,
            math.ceil(size / stride),
            stride,
            config.anchor_stride,
        )
        for scale, stride in zip(config.anchor_scales, config.backbone_strides, strict=True)
    ]
    pixels = np.concatenate(levels, axis=0)
    scale = np.array([size - 1, size - 1, size - 1, size - 1], np.float64)
    shift = np.array([0, 0, 1, 1], np.float64)
    return ((pixels - shift) / scale).astype(np.float32)
