"""ROIAlign_TRT: ONNX RoiAlign (opset 16) as onnxruntime's CPU kernel computes it, in float32.

ROI `r` = (x1, y1, x2, y2) of image `batch_indices[r]` becomes, in feature-map pixels, a start
`x1 * spatial_scale - offset` and a size `(x2 - x1) * ...` (offset 0.5 with
`coordinate_transformation_mode` 1, half_pixel; 0 and sizes grown to at least 1 with 0,
output_half_pixel). Each of the `output_height x output_width` bins takes `gh x gw` samples
(`sampling_ratio`, or 0: `ceil(bin size)` per axis, possibly 0, which leaves the bin 0) at
`start + bin * size + (i + 0.5) * size / g`. A sample beyond one pixel outside the map (`< -1` or
`> H`) counts as 0; otherwise it is clamped into the map and interpolated bilinearly from its
four neighbours with weights `hy * hx`, `hy * lx`, `ly * hx`, `ly * lx`. `mode` 1 (avg) sums the
samples in row-major order and divides by `max(gh * gw, 1)`.

`mode` 0 (max) follows onnxruntime (and ONNX's own reference implementation), not a max of
interpolated values as the spec's wording suggests: each sample contributes the largest of its
four *weighted* corner terms (`max(w1 * v1, w2 * v2, w3 * v3, w4 * v4)`), and the bin is the
largest contribution of its samples (a skipped sample contributes 0). `surgery validate`
compares against onnxruntime, so this is the behaviour to match.

Everything is computed in float32 with onnxruntime's operation order (sums accumulated one
sample at a time), so the result agrees with onnxruntime to the last bit or so. The computation
is vectorised over ROIs that share a sample grid and over channels, in chunks of bounded size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, field, need_rank

NAME = "ROIAlign_TRT"
_CHUNK = 1 << 21
"""Most gathered values (samples x channels) one vectorised step holds per corner."""


def settings(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields checked: half_pixel, max_mode (bools), out_h, out_w, ratio, scale (float32)."""
    ctm = int(field(NAME, fields, "coordinate_transformation_mode"))
    mode = int(field(NAME, fields, "mode"))
    out_h, out_w = (int(field(NAME, fields, f"output_{side}")) for side in ("height", "width"))
    ratio = int(field(NAME, fields, "sampling_ratio"))
    scale = float(field(NAME, fields, "spatial_scale"))
    if ctm not in (0, 1):
        raise PluginReferenceError(f"{NAME}: coordinate_transformation_mode must be 0 "
                                   f"(output_half_pixel) or 1 (half_pixel), got {ctm}")  # fmt: skip
    if mode not in (0, 1):
        raise PluginReferenceError(f"{NAME}: mode must be 0 (max) or 1 (avg), got {mode}")
    if out_h < 1 or out_w < 1:
        raise PluginReferenceError(f"{NAME}: output size must be at least 1x1, got "
                                   f"{out_h}x{out_w}")  # fmt: skip
    if ratio < 0:
        raise PluginReferenceError(f"{NAME}: sampling_ratio must be >= 0 (0: adaptive), got "
                                   f"{ratio}")  # fmt: skip
    if not (math.isfinite(scale) and scale > 0):
        raise PluginReferenceError(f"{NAME}: spatial_scale must be a positive number, got {scale}")
    return {"half_pixel": ctm == 1, "max_mode": mode == 0, "out_h": out_h, "out_w": out_w,
            "ratio": ratio, "scale": F32(scale)}  # fmt: skip


def _batch_indices(raw: np.ndarray, count: int, batch: int) -> np.ndarray:
    """batch_indices as int64 [R], each in [0, batch); PluginReferenceError naming a bad one."""
    values = np.asarray(raw)
    if values.shape != (count,):
        raise PluginReferenceError(f"{NAME}: batch_indices have shape {values.shape}; expected "
                                   f"[{count}] (one per ROI)")  # fmt: skip
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise PluginReferenceError(f"{NAME}: batch_indices must be whole numbers")
    index = values.astype(np.int64)
    bad = np.flatnonzero((index < 0) | (index >= batch))
    if len(bad):
        raise PluginReferenceError(f"{NAME}: batch_indices[{bad[0]}] = {index[bad[0]]} is not an "
                                   f"image of the batch of {batch}")  # fmt: skip
    return index


def _grid(size: np.ndarray, bins: int, ratio: int) -> np.ndarray:
    """Samples per bin along one axis for every ROI: `ratio`, or ceil(size / bins) (adaptive;
    0 or less means none, and a non-finite size none either)."""
    if ratio > 0:
        return np.full(size.shape, ratio, dtype=np.int64)
    per_bin = size / F32(bins)
    finite = np.isfinite(per_bin)
    return np.where(finite, np.ceil(np.where(finite, per_bin, 0)), 0).astype(np.int64)


def _axis(start: np.ndarray, bin_size: np.ndarray, bins: int, grid: int,
          extent: int) -> tuple[np.ndarray, ...]:  # fmt: skip
    """Sample geometry along one axis for ROIs [G] with `grid` samples per bin: (valid, low,
    high, low weight, high weight), each [G, bins, grid] (low/high as pixel indices)."""
    b = np.arange(bins, dtype=F32)[None, :, None]
    i = (np.arange(grid, dtype=F32) + F32(0.5))[None, None, :]
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    pos = (start + b * bin_size) + (i * bin_size) / F32(grid)
    valid = (pos >= F32(-1)) & (pos <= F32(extent))
    pos = np.maximum(pos, F32(0))
    low = np.trunc(np.where(valid, pos, 0)).astype(np.int64)
    edge = low >= extent - 1
    low = np.where(edge, extent - 1, low)
    high = np.where(edge, low, low + 1)
    pos = np.where(edge, low.astype(F32), pos)
    frac = (pos - low.astype(F32)).astype(F32)
    return valid, low, high, (F32(1) - frac).astype(F32), frac


def _pool_group(flat: np.ndarray, width: int, images: np.ndarray, ys: tuple[np.ndarray, ...],
                xs: tuple[np.ndarray, ...], max_mode: bool) -> np.ndarray:  # fmt: skip
    """Bins [G, C, out_h, out_w] of G ROIs with one sample grid, from `flat` [N, C, H * W]."""
    vy, y_lo, y_hi, hy, ly = (a[:, :, :, None, None] for a in ys)  # [G, oh, gh, 1, 1]
    vx, x_lo, x_hi, hx, lx = (a[:, None, None, :, :] for a in xs)  # [G, 1, 1, ow, gw]
    valid = vy & vx
    zero = F32(0)
    weights = [np.where(valid, w, zero)[..., None] for w in (hy * hx, hy * lx, ly * hx, ly * lx)]
    spots = [np.where(valid, r * width + c, 0) for r, c in
             ((y_lo, x_lo), (y_lo, x_hi), (y_hi, x_lo), (y_hi, x_hi))]  # fmt: skip
    image = images[:, None, None, None, None]
    # Each term [G, oh, gh, ow, gw, C]: the advanced indices first, the channel slice last.
    terms = [w * flat[image, :, s] for w, s in zip(weights, spots, strict=True)]
    groups, out_h, grid_h, out_w, grid_w, channels = terms[0].shape
    if max_mode:
        value = np.maximum(np.maximum(np.maximum(terms[0], terms[1]), terms[2]), terms[3])
    else:
        value = ((terms[0] + terms[1]) + terms[2]) + terms[3]
    samples = value.transpose(0, 5, 1, 3, 2, 4).reshape(
        groups, channels, out_h, out_w, grid_h * grid_w)  # fmt: skip
    if max_mode:
        return samples.max(axis=-1)
    # onnxruntime adds the samples one at a time, row by row: a running sum does the same.
    total = np.cumsum(samples, axis=-1, dtype=F32)[..., -1]
    return (total / F32(max(grid_h * grid_w, 1))).astype(F32)


def roi_align(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """X [N, C, H, W], rois [R, 4], batch_indices [R] -> Y [R, C, output_height, output_width]."""
    if len(inputs) != 3:
        raise PluginReferenceError(f"{NAME}: expected X, rois and batch_indices, got "
                                   f"{len(inputs)} input(s)")  # fmt: skip
    x = np.asarray(inputs[0], dtype=F32)
    rois = np.asarray(inputs[1], dtype=F32)
    need_rank(NAME, "X", x, (4,))
    need_rank(NAME, "rois", rois, (2,))
    if rois.shape[1] != 4:
        raise PluginReferenceError(f"{NAME}: rois have shape {rois.shape}; expected [R, 4]")
    batch, channels, height, width = x.shape
    if height < 1 or width < 1:
        raise PluginReferenceError(f"{NAME}: X has shape {x.shape}; no pixels to sample")
    count = rois.shape[0]
    images = _batch_indices(inputs[2], count, batch)
    cfg = settings(fields)
    out_h, out_w = cfg["out_h"], cfg["out_w"]
    out = np.zeros((count, channels, out_h, out_w), dtype=F32)
    if count == 0 or channels == 0:
        return [out]
    offset = F32(0.5) if cfg["half_pixel"] else F32(0)
    scaled = rois * cfg["scale"]
    start_w, start_h = scaled[:, 0] - offset, scaled[:, 1] - offset
    size_w = (scaled[:, 2] - offset) - start_w
    size_h = (scaled[:, 3] - offset) - start_h
    if not cfg["half_pixel"]:  # output_half_pixel grows ROIs smaller than a pixel to one
        size_w, size_h = np.maximum(size_w, F32(1)), np.maximum(size_h, F32(1))
    bin_h, bin_w = size_h / F32(out_h), size_w / F32(out_w)
    grid_h = _grid(size_h, out_h, cfg["ratio"])
    grid_w = _grid(size_w, out_w, cfg["ratio"])
    flat = x.reshape(batch, channels, height * width)
    sampled = (grid_h > 0) & (grid_w > 0)  # the others keep their zeros
    pairs = np.stack([grid_h, grid_w], axis=1)[sampled]
    for grid_y, grid_x in np.unique(pairs, axis=0) if len(pairs) else ():
        members = np.flatnonzero(sampled & (grid_h == grid_y) & (grid_w == grid_x))
        per_channel = out_h * int(grid_y) * out_w * int(grid_x)
        step_c = max(1, min(channels, _CHUNK // per_channel))
        step_r = max(1, _CHUNK // (per_channel * step_c))
        for first in range(0, len(members), step_r):
            part = members[first : first + step_r]
            ys = _axis(start_h[part], bin_h[part], out_h, int(grid_y), height)
            xs = _axis(start_w[part], bin_w[part], out_w, int(grid_x), width)
            for c in range(0, channels, step_c):
                out[part, c : c + step_c] = _pool_group(
                    flat[:, c : c + step_c], width, images[part], ys, xs, cfg["max_mode"])
    return [out]
