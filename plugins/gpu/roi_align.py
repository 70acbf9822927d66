"""PyramidROIAlign_TRT and CropAndResize: NVRTC kernels of bilinear ROI sampling (`_roi_source`).

Both reproduce their NumPy reference (plugins/reference/pyramid_roi_align.py, crop_and_resize.py)
to float32 rounding, for float32 or float16 tensors (all float inputs and the output in one
dtype, arithmetic in float32; PyramidROIAlign's box, level and sample geometry in float64 as the
reference computes it). One launch each: block row = one ROI, columns split its outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from plugins.gpu._checks import (
    Shape,
    float_dtype,
    need_contiguous,
    need_dim,
    need_output,
    need_rank,
)  # fmt: skip
from plugins.gpu._roi_source import SOURCE, STORAGE, name_expressions
from plugins.gpu.dispatch import Kernel, full_fields
from plugins.gpu.runtime import GpuKernelError, compiled, scalar_field, sm_count

PYRAMID = "PyramidROIAlign_TRT"
CROP = "CropAndResize"
_THREADS = 256
_INT_MAX = 2**31 - 1


def roi_grid(rois: int, per_roi: int, sms: int) -> tuple[tuple[int, int], tuple[int]]:
    """(grid, block) of the ROI kernels: one block row per ROI, enough columns that a thread
    has about four outputs (one, when that would leave the GPU short of blocks)."""
    block = min(_THREADS, 32 * -(-per_roi // 32))
    columns = -(-per_roi // (block * 4))
    if rois * columns < 8 * sms:
        columns = -(-per_roi // block)
    if rois > _INT_MAX:
        raise GpuKernelError(f"{rois} ROIs are more than one launch can take ({_INT_MAX})")
    return (rois, min(columns, 65535)), (block,)


def _function(cp: Any, kernel: str, dtype: str) -> Any:
    """The compiled template instance of `kernel` for `dtype`."""
    module = compiled(SOURCE, tuple(name_expressions()), cp.cuda.runtime.getDevice())
    return module.get_function(f"{kernel}<{STORAGE[dtype]}>")


def _pyramid_settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    """PyramidROIAlign_TRT's fields checked and resolved as the reference resolves them."""
    from plugins.reference.pyramid_roi_align import _settings

    full = full_fields(PYRAMID, fields)
    pooled = int(scalar_field(full, PYRAMID, "pooled_size"))
    transform = int(scalar_field(full, PYRAMID, "roi_coords_transform"))
    if transform not in (-1, 0, 1, 2):
        raise GpuKernelError(f"{PYRAMID}: roi_coords_transform must be -1..2, got {transform}")
    cfg = _settings(full)
    if pooled < 1 or (cfg["transform"] == -1 and pooled < 2):
        need = 2 if cfg["transform"] == -1 else 1
        raise GpuKernelError(
            f"{PYRAMID}: pooled_size {pooled} is too small (needs >= {need} with "
            f"roi_coords_transform {cfg['transform']})"
        )
    if cfg["ratio"] < 0:
        raise GpuKernelError(f"{PYRAMID}: sampling_ratio must be >= 0, got {cfg['ratio']}")
    image = cfg["image"]
    if len(image) != 2 or min(image) < 1:
        raise GpuKernelError(f"{PYRAMID}: image_size must be two positive ints, got {image}")
    return {**cfg, "pooled": pooled}


def _pyramid_check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """rois [N, R, 4] and four NCHW maps agreeing on N and C, one float dtype, valid fields."""
    if len(shapes) != 5:
        raise GpuKernelError(f"{PYRAMID}: expected rois and 4 feature maps, got {len(shapes)} "
                             "inputs")  # fmt: skip
    float_dtype(PYRAMID, dtypes)
    rois, *maps = shapes
    need_rank(PYRAMID, "rois", rois, (3,))
    need_dim(PYRAMID, "rois", rois, -1, 4)
    for i, fmap in enumerate(maps):
        role = f"feature map P{i + 2}"
        need_rank(PYRAMID, role, fmap, (4,))
        need_dim(PYRAMID, role, fmap, 0, rois[0])
        for other in maps[:i]:
            need_dim(PYRAMID, role, fmap, 0, other[0])
            need_dim(PYRAMID, role, fmap, 1, other[1])
        if 0 in fmap[2:]:
            raise GpuKernelError(f"{PYRAMID}: {role} has shape {list(fmap)}; no pixels to sample")
    _pyramid_settings(fields)


def _pyramid_run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """[N, R, 4] rois + P2..P5 -> [N, R, C, pooled, pooled]."""
    rois, *maps = inputs
    (out,) = outputs
    cfg = _pyramid_settings(fields)
    batch, count, channels = maps[0].shape[0], rois.shape[1], maps[0].shape[1]
    pooled = cfg["pooled"]
    need_output(PYRAMID, out, (batch, count, channels, pooled, pooled), rois.dtype.name)
    need_contiguous(PYRAMID, [*inputs, out])
    if rois.shape[0] != batch or any(m.shape[2] * m.shape[3] > _INT_MAX for m in maps):
        raise GpuKernelError(f"{PYRAMID}: cannot pool {[list(m.shape) for m in maps]} for rois "
                             f"{list(rois.shape)}")  # fmt: skip
    per_roi = channels * pooled * pooled
    if per_roi > _INT_MAX:
        raise GpuKernelError(f"{PYRAMID}: {per_roi} outputs per ROI are too many")
    device = cp.cuda.runtime.getDevice()
    grid, block = roi_grid(batch * count, per_roi, sm_count(device))
    dims = [np.int32(d) for m in maps for d in m.shape[2:]]
    height, width = cfg["image"]
    args = (rois, *maps, out, np.int32(count), np.int32(channels), np.int32(pooled), *dims,
            np.float64(height), np.float64(width), np.float64(cfg["threshold"]),
            np.int32(cfg["transform"]), np.int32(cfg["plusone"]), np.int32(cfg["swap"]),
            np.int32(cfg["absolute"]), np.int32(cfg["ratio"]))  # fmt: skip
    _function(cp, "pyramid_roi_align", rois.dtype.name)(grid, block, args)


def _crop_sizes(fields: Mapping[str, Any]) -> tuple[int, ...]:
    """(crop_height, crop_width), both >= 1."""
    full = full_fields(CROP, fields)
    size = tuple(int(scalar_field(full, CROP, f"crop_{side}")) for side in ("height", "width"))
    if min(size) < 1:
        raise GpuKernelError(f"{CROP}: crop size must be positive, got {size[0]}x{size[1]}")
    return size


def _crop_check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """feature_map [N, C, H, W] and rois [N, B, 4] or [N, B, 4, 1] of one float dtype."""
    if len(shapes) != 2:
        raise GpuKernelError(f"{CROP}: expected feature_map and rois, got {len(shapes)} inputs")
    float_dtype(CROP, dtypes)
    image, rois = shapes
    need_rank(CROP, "feature_map", image, (4,))
    need_rank(CROP, "rois", rois, (3, 4))
    need_dim(CROP, "rois", rois, 0, image[0])
    need_dim(CROP, "rois", rois, 2, 4)
    if len(rois) == 4:
        need_dim(CROP, "rois", rois, 3, 1)
    if 0 in image[2:]:
        raise GpuKernelError(f"{CROP}: feature_map has shape {list(image)}; no pixels to sample")
    _crop_sizes(fields)


def _crop_run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """[N, C, H, W] + [N, B, 4(, 1)] boxes -> [N, B, C, crop_h, crop_w]."""
    image, rois = inputs
    (out,) = outputs
    crop_h, crop_w = _crop_sizes(fields)
    batch, channels, height, width = image.shape
    count = rois.shape[1]
    need_output(CROP, out, (batch, count, channels, crop_h, crop_w), image.dtype.name)
    need_contiguous(CROP, [image, rois, out])
    per_box = channels * crop_h * crop_w
    if per_box > _INT_MAX or height * width > _INT_MAX:
        raise GpuKernelError(f"{CROP}: {list(image.shape)} cropped to {crop_h}x{crop_w} is too "
                             "large for one launch")  # fmt: skip
    grid, block = roi_grid(batch * count, per_box, sm_count(cp.cuda.runtime.getDevice()))
    args = (image, rois, out, np.int32(count), np.int32(channels), np.int32(height),
            np.int32(width), np.int32(crop_h), np.int32(crop_w))  # fmt: skip
    _function(cp, "crop_and_resize", image.dtype.name)(grid, block, args)


PYRAMID_ROI_ALIGN = Kernel(_pyramid_run, _pyramid_check)
CROP_AND_RESIZE = Kernel(_crop_run, _crop_check)
