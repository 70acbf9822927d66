"""ROIAlign_TRT: the NVRTC kernel of ONNX RoiAlign (`_roi_align_trt_source`), against its NumPy
reference plugins/reference/roi_align.py (onnxruntime's results).

X, rois and Y share one dtype, float32 or float16 (arithmetic in float32 either way, in the
reference's operation order, so float32 results agree with it to rounding); batch_indices are
int32. Both coordinate modes, avg and max, fixed or adaptive sampling; R = 0 launches nothing.
One launch on CuPy's current stream, no host synchronisation. The one difference from the
reference: a batch index outside [0, N) cannot be reported from the device without a sync, so
that ROI's outputs are 0 (the reference, like onnxruntime, refuses the input).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from plugins.gpu._checks import FLOATS, Shape, need_contiguous, need_dim, need_output, need_rank
from plugins.gpu._roi_align_trt_source import SOURCE, name_expressions
from plugins.gpu._source import STORAGE
from plugins.gpu.dispatch import Kernel, full_fields
from plugins.gpu.roi_align import roi_grid
from plugins.gpu.runtime import GpuKernelError, compiled, scalar_field, sm_count

NAME = "ROIAlign_TRT"
_INT_MAX = 2**31 - 1


def settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields (schema defaults filled) checked: half_pixel, max_mode, out_h, out_w, ratio,
    scale; GpuKernelError naming a value the kernel cannot take."""
    full = full_fields(NAME, fields)
    ctm, mode, out_h, out_w, ratio = (int(scalar_field(full, NAME, key)) for key in (
        "coordinate_transformation_mode", "mode", "output_height", "output_width",
        "sampling_ratio"))  # fmt: skip
    scale = float(scalar_field(full, NAME, "spatial_scale"))
    if ctm not in (0, 1):
        raise GpuKernelError(f"{NAME}: coordinate_transformation_mode must be 0 "
                             f"(output_half_pixel) or 1 (half_pixel), got {ctm}")  # fmt: skip
    if mode not in (0, 1):
        raise GpuKernelError(f"{NAME}: mode must be 0 (max) or 1 (avg), got {mode}")
    if out_h < 1 or out_w < 1 or out_h * out_w > _INT_MAX:
        raise GpuKernelError(f"{NAME}: output size must be at least 1x1, got {out_h}x{out_w}")
    if ratio < 0:
        raise GpuKernelError(f"{NAME}: sampling_ratio must be >= 0 (0: adaptive), got {ratio}")
    if not (math.isfinite(scale) and scale > 0):
        raise GpuKernelError(f"{NAME}: spatial_scale must be a positive number, got {scale}")
    return {"half_pixel": ctm == 1, "max_mode": mode == 0, "out_h": out_h, "out_w": out_w,
            "ratio": ratio, "scale": scale}  # fmt: skip


def _check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """X [N, C, H, W] and rois [R, 4] of one float dtype, batch_indices [R] int32, valid fields
    (dims of -1 are not known yet and pass)."""
    if len(shapes) != 3 or len(dtypes) != 3:
        raise GpuKernelError(f"{NAME}: expected X, rois and batch_indices, got {len(shapes)} "
                             "inputs")  # fmt: skip
    x_type, roi_type, index_type = dtypes
    if x_type not in FLOATS or roi_type != x_type or index_type != "int32":
        raise GpuKernelError(f"{NAME}: X and rois must both be float32 or both float16 and "
                             f"batch_indices int32, got {', '.join(dtypes)}")  # fmt: skip
    image, rois, indices = shapes
    need_rank(NAME, "X", image, (4,))
    need_rank(NAME, "rois", rois, (2,))
    need_rank(NAME, "batch_indices", indices, (1,))
    need_dim(NAME, "rois", rois, 1, 4)
    need_dim(NAME, "batch_indices", indices, 0, rois[0])
    if 0 in image[2:]:
        raise GpuKernelError(f"{NAME}: X has shape {list(image)}; no pixels to sample")
    settings(fields)


def _run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """X [N, C, H, W], rois [R, 4], batch_indices [R] -> Y [R, C, out_h, out_w], one launch."""
    image, rois, indices = inputs
    (out,) = outputs
    cfg = settings(fields)
    batch, channels, height, width = image.shape
    count = rois.shape[0]
    out_h, out_w = cfg["out_h"], cfg["out_w"]
    need_output(NAME, out, (count, channels, out_h, out_w), image.dtype.name)
    need_contiguous(NAME, [image, rois, indices, out])
    per_roi = channels * out_h * out_w
    if per_roi > _INT_MAX or height * width > _INT_MAX:
        raise GpuKernelError(f"{NAME}: {list(image.shape)} pooled to {out_h}x{out_w} is too "
                             "large for one launch")  # fmt: skip
    if count == 0 or per_roi == 0:
        return
    device = cp.cuda.runtime.getDevice()
    grid, block = roi_grid(count, per_roi, sm_count(device))
    args = (image, rois, indices, out, np.int32(batch), np.int32(channels), np.int32(height),
            np.int32(width), np.int32(out_h), np.int32(out_w), np.int32(cfg["ratio"]),
            np.float32(cfg["scale"]), np.int32(cfg["half_pixel"]),
            np.int32(cfg["max_mode"]))  # fmt: skip
    module = compiled(SOURCE, tuple(name_expressions()), device)
    module.get_function(f"roi_align_trt<{STORAGE[image.dtype.name]}>")(grid, block, args)


ROI_ALIGN_TRT = Kernel(_run, _check)
