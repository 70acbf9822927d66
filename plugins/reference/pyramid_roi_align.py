"""PyramidROIAlign_TRT: ROI Align over FPN levels P2..P5, the level chosen by each ROI's area.

TensorRT (8.6 kernel `roiAlign`): ROIs are read as (x1, y1, x2, y2), or (y1, x1, y2, x2) with
`roi_coords_swap=1`, min/max-sorted, clipped to the image (`roi_coords_absolute=1`: pixels of
`image_size`, then normalised) or to [0, 1]. The area `hw` (normalised; +1 pixel per side with
`roi_coords_plusone`) picks P2, then one level up each time it exceeds `t`, `4t`, `16t`, where
`t = (fpn_scale^2 / (H * W)) / 4`. Sampling: `roi_coords_transform` -1 is the align-corners
form of the original plugin (`start = y1 * (h - 1)`, step `(end - start) / (pool - 1)`), 0/1/2
use `y1 * h - offset` with offsets (0, 0), (0, 0.5), (0.5, 0.5) for input and sample; each bin
averages `sampling_ratio` (0: `ceil(bin size)`) samples per side, each clamped to the map and
interpolated bilinearly. `legacy=1` is TensorRT's preset: transform -1, swap, normalised, one
sample, threshold from 1024x1024. Output [N, rois, C, pooled, pooled].

Side input `image_meta` (`implied_image_meta`): Matterport's ROI align reads the image size from
the image meta; see `_mrcnn.implied_image_meta`. Known deviation `border` (`border_deviation`):
ROIs are clipped to the image here, where TF's crop_and_resize samples the whole box and
extrapolates zeros outside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from plugins.reference import _mrcnn
from plugins.reference._common import (
    F32,
    PluginReferenceError,
    SideContext,
    SideValue,
    field,
    need_rank,
)  # fmt: skip

# Matterport's level choice: level 4 + round(log2(sqrt(h * w) / (224 / sqrt(H * W)))), so P3
# from a normalised area of (224^2 / (H * W)) / 8 on.
MATTERPORT_CANONICAL = 224.0


def _settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The effective kernel settings after the `legacy` preset."""
    name = "PyramidROIAlign_TRT"
    image = [int(v) for v in (fields.get("image_size") or [1024, 1024])]
    if bool(fields.get("legacy", 0)):
        threshold = (224 * 224 * 2.0 / (1024 * 1024)) / (4.0 * 4.0)
        return {"transform": -1, "plusone": False, "swap": True, "absolute": False,
                "ratio": 1, "threshold": threshold, "image": image}  # fmt: skip
    scale = float(fields.get("fpn_scale", 224) or 224)
    norm = math.sqrt(scale * scale / (image[0] * image[1]))
    transform = int(fields.get("roi_coords_transform", 2))
    if transform not in (-1, 0, 1, 2):
        raise PluginReferenceError(f"{name}: roi_coords_transform must be -1..2, got {transform}")
    return {
        "transform": transform,
        "plusone": bool(fields.get("roi_coords_plusone", 0)),
        "swap": bool(fields.get("roi_coords_swap", 0)),
        "absolute": bool(fields.get("roi_coords_absolute", 1)),
        "ratio": int(fields.get("sampling_ratio", 0)),
        "threshold": norm * norm / 4.0,
        "image": image,
    }


def _bilinear(src: np.ndarray, y: float, x: float) -> np.ndarray:
    """Bilinear sample of a [C, h, w] map at an in-range point (floor, then +1 if fractional)."""
    y0, x0 = int(y), int(x)
    ya, xa = F32(y - y0), F32(x - x0)
    y1 = y0 if ya == 0 else y0 + 1
    x1 = x0 if xa == 0 else x0 + 1
    top = src[:, y0, x0] * (1 - xa) + src[:, y0, x1] * xa
    bottom = src[:, y1, x0] * (1 - xa) + src[:, y1, x1] * xa
    return top * (1 - ya) + bottom * ya


def _box(roi: np.ndarray, cfg: dict[str, Any]) -> tuple[float, float, float, float]:
    """(y1, x1, y2, x2) normalised and clipped."""
    a, b, c, d = (float(v) for v in roi)
    if cfg["swap"]:
        y1, x1, y2, x2 = min(a, c), min(b, d), max(a, c), max(b, d)
    else:
        x1, y1, x2, y2 = min(a, c), min(b, d), max(a, c), max(b, d)
    height, width = cfg["image"]
    if cfg["absolute"]:
        y1, y2 = (max(0.0, min(float(height), v)) / height for v in (y1, y2))
        x1, x2 = (max(0.0, min(float(width), v)) / width for v in (x1, x2))
    else:
        y1, x1, y2, x2 = (max(0.0, min(1.0, v)) for v in (y1, x1, y2, x2))
    return y1, x1, y2, x2


def level_of(box: tuple[float, float, float, float], cfg: dict[str, Any]) -> int:
    """0..3 for P2..P5."""
    y1, x1, y2, x2 = box
    height, width = cfg["image"]
    if cfg["plusone"]:
        area = (y2 - y1 + 1.0 / height) * (x2 - x1 + 1.0 / width)
    else:
        area = (y2 - y1) * (x2 - x1)
    level, threshold = 0, cfg["threshold"]
    for _ in range(3):
        if area > threshold:
            level += 1
        threshold *= 4
    return level


def _pool(src: np.ndarray, box: tuple[float, ...], pooled: int, cfg: dict[str, Any]) -> np.ndarray:
    """One ROI pooled from one [C, h, w] level: [C, pooled, pooled]."""
    y1, x1, y2, x2 = box
    h, w = src.shape[1], src.shape[2]
    if cfg["transform"] == -1:
        offset = 0.0
        ys, xs, ye, xe = y1 * (h - 1), x1 * (w - 1), y2 * (h - 1), x2 * (w - 1)
        dy, dx = (ye - ys) / (pooled - 1), (xe - xs) / (pooled - 1)
    else:
        shift, offset = {0: (0.0, 0.0), 1: (0.0, 0.5), 2: (0.5, 0.5)}[cfg["transform"]]
        ys, xs, ye, xe = y1 * h - shift, x1 * w - shift, y2 * h - shift, x2 * w - shift
        dy, dx = (ye - ys) / pooled, (xe - xs) / pooled
    ratio = cfg["ratio"]
    ry = ratio if ratio > 0 else max(1, math.ceil((ye - ys) / pooled))
    rx = ratio if ratio > 0 else max(1, math.ceil((xe - xs) / pooled))
    out = np.zeros((src.shape[0], pooled, pooled), dtype=F32)
    for yy in range(pooled):
        for xx in range(pooled):
            total = np.zeros(src.shape[0], dtype=F32)
            for iy in range(ry):
                sy = min(max(ys + dy * yy + dy * (iy + offset) / ry, 0.0), h - 1.0)
                for ix in range(rx):
                    sx = min(max(xs + dx * xx + dx * (ix + offset) / rx, 0.0), w - 1.0)
                    total += _bilinear(src, sy, sx)
            out[:, yy, xx] = total / (ry * rx)
    return out


def pyramid_roi_align(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """rois [N, R, 4] and P2..P5 [N, C, h, w] -> [N, R, C, pooled, pooled]."""
    name = "PyramidROIAlign_TRT"
    if len(inputs) != 5:
        raise PluginReferenceError(f"{name}: expected rois and 4 feature maps, got {len(inputs)}")
    rois = np.asarray(inputs[0], dtype=F32)
    maps = [np.asarray(m, dtype=F32) for m in inputs[1:]]
    for i, fmap in enumerate(maps):
        need_rank(name, f"feature_maps[{i}]", fmap, (4,))
    batch, channels = maps[0].shape[:2]
    if any(m.shape[:2] != (batch, channels) for m in maps):
        raise PluginReferenceError(
            f"{name}: feature maps disagree on N, C: {[m.shape for m in maps]}"
        )
    if rois.size % (batch * 4):
        raise PluginReferenceError(
            f"{name}: rois have shape {rois.shape}; expected [{batch}, R, 4]"
        )
    rois = rois.reshape(batch, -1, 4)
    pooled = int(field(name, fields, "pooled_size"))
    cfg = _settings(fields)
    if pooled < 1 or (cfg["transform"] == -1 and pooled < 2):
        raise PluginReferenceError(f"{name}: pooled_size {pooled} is too small")
    out = np.zeros((batch, rois.shape[1], channels, pooled, pooled), dtype=F32)
    for n in range(batch):
        for r in range(rois.shape[1]):
            box = _box(rois[n, r], cfg)
            out[n, r] = _pool(maps[level_of(box, cfg)][n], box, pooled, cfg)
    return [out]


def matterport_area(fields: Mapping[str, Any]) -> tuple[float, float]:
    """(H, W) of the image for which Matterport's level choice has this plugin's thresholds:
    its first threshold `t` (normalised area) equals (224^2 / (H * W)) / 8 for H * W =
    224^2 / (8 t). H is `image_size[0]` (1024 with `legacy`) and W the rest of the area."""
    cfg = _settings(fields)
    area = MATTERPORT_CANONICAL**2 / (8.0 * cfg["threshold"])
    height = 1024.0 if bool(fields.get("legacy", 0)) else float(cfg["image"][0])
    return height, area / height


def implied_image_meta(ctx: SideContext) -> SideValue:
    """Matterport's image meta for the graph's input size (`_mrcnn.implied_image_meta`)."""
    return _mrcnn.implied_image_meta(ctx)


def border_deviation(inputs: list[np.ndarray], fields: dict[str, Any]) -> str | None:
    """How many ROIs reach outside the image (where this plugin clips the box and TF's
    crop_and_resize extrapolates zeros), or None when none do."""
    cfg = _settings(fields)
    rois = np.asarray(inputs[0], dtype=np.float64).reshape(-1, 4)
    if cfg["absolute"]:
        height, width = cfg["image"]
        ys, xs = (rois[:, [1, 3]], rois[:, [0, 2]]) if not cfg["swap"] else (
            rois[:, [0, 2]], rois[:, [1, 3]])  # fmt: skip
        outside = ((ys < 0) | (ys > height)).any(axis=1) | ((xs < 0) | (xs > width)).any(axis=1)
    else:
        outside = ((rois < 0) | (rois > 1)).any(axis=1)
    count = int(outside.sum())
    if not count:
        return None
    return (
        f"{count} of {len(rois)} boxes reach outside the image, where it clips them and "
        "crop_and_resize extrapolates zeros"
    )
