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

from collections.abc import Mapping
from typing import Any

import numpy as np

from plugins.gpu._checks import FLOATS, Shape, need_contiguous, need_dim, need_output, need_rank
from plugins.gpu._roi_align_trt_source import SOURCE, name_expressions
from plugins.gpu._source import STORAGE
from plugins.gpu.dispatch import Kernel, full_fields
from plugins.gpu.roi_align import roi_grid
from plugins.gpu.runtime import GpuKernelError, compiled, sm_count
from plugins.reference._common import PluginReferenceError

NAME = "ROIAlign_TRT"
_INT_MAX = 2**31 - 1


def settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields (schema defaults filled) checked and resolved as the reference does
    (half_pixel, max_mode, out_h, out_w, ratio, scale), and an output size the kernel can
    index; GpuKernelError naming a value it cannot take."""
    from plugins.reference.roi_align import settings as reference_settings

    try:
        cfg = reference_settings(full_fields(NAME, fields))
    except PluginReferenceError as exc:
        raise GpuKernelError(str(exc)) from None
    if cfg["out_h"] * cfg["out_w"] > _INT_MAX:
        raise GpuKernelError(f"{NAME}: output size {cfg['out_h']}x{cfg['out_w']} has over "
                             f"{_INT_MAX} bins")  # fmt: skip
    return cfg


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
