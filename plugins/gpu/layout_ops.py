"""SpecialSlice_TRT, FlattenConcat_TRT, GridAnchor_TRT and Normalize_TRT on the GPU.

Copies and one reduction, so CuPy array code (launched on CuPy's current stream, i.e. TensorRT's)
except GridAnchor, one tiny NVRTC kernel per layer. Each reproduces its NumPy reference in
plugins/reference/: the copies exactly, GridAnchor exactly (float32, no fused multiply-adds),
Normalize to float32 rounding. Field arrays the device needs (GridAnchor's box sizes, Normalize's
weights) are uploaded once per distinct value, like TensorRT's plugins do at initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
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
from plugins.gpu.dispatch import Kernel, full_fields
from plugins.gpu.runtime import GpuKernelError, load_cupy, scalar_field, sm_count
from plugins.reference._common import PluginReferenceError

SLICE = "SpecialSlice_TRT"
FLATTEN = "FlattenConcat_TRT"
ANCHOR = "GridAnchor_TRT"
NORMALIZE = "Normalize_TRT"


@lru_cache(maxsize=64)
def device_constant(values: tuple[float, ...], device: int) -> Any:
    """`values` as a float32 array on `device`, uploaded once (on a private stream that is
    waited for, so that any stream may read it afterwards)."""
    cp = load_cupy()
    with cp.cuda.Device(device):
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            array = cp.asarray(np.asarray(values, dtype=np.float32))
        stream.synchronize()
    return array


# --- SpecialSlice_TRT ------------------------------------------------------------------------


def _slice_check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """One float tensor [..., K, 6]."""
    if len(shapes) != 1:
        raise GpuKernelError(f"{SLICE}: expected 1 input (detections), got {len(shapes)}")
    float_dtype(SLICE, dtypes)
    if len(shapes[0]) < 2:
        raise GpuKernelError(
            f"{SLICE}: detections have shape {list(shapes[0])}; expected [N, K, 6]"
        )
    need_dim(SLICE, "detections", shapes[0], -1, 6)


def _slice_run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """[N, K, 6] -> [N, K, 4]: the first four values of each row."""
    (det,), (out,) = inputs, outputs
    need_output(SLICE, out, (*det.shape[:-1], 4), det.dtype.name)
    out[...] = det[..., :4]


# --- FlattenConcat_TRT -----------------------------------------------------------------------


def _flatten_fields(fields: Mapping[str, Any]) -> tuple[int, bool]:
    """(axis, ignoreBatch); GpuKernelError for an axis other than 1..3."""
    full = full_fields(FLATTEN, fields)
    axis = int(scalar_field(full, FLATTEN, "axis"))
    if axis not in (1, 2, 3):
        raise GpuKernelError(f"{FLATTEN}: axis must be 1, 2 or 3, got {axis}")
    return axis, bool(scalar_field(full, FLATTEN, "ignoreBatch"))


def _flatten_check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """At least one input, one float dtype; without ignoreBatch every input has batch dim 0."""
    if not shapes:
        raise GpuKernelError(f"{FLATTEN}: needs at least one input")
    float_dtype(FLATTEN, dtypes)
    _, ignore_batch = _flatten_fields(fields)
    if ignore_batch:
        return
    for i, shape in enumerate(shapes):
        if not shape:
            raise GpuKernelError(
                f"{FLATTEN}: input {i} is a scalar; without ignoreBatch every input needs a "
                "batch dim"
            )
        need_dim(FLATTEN, f"input {i}", shape, 0, shapes[0][0])


def _flatten_run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """Each input's values per batch item, one input after the other."""
    (out,) = outputs
    axis, ignore_batch = _flatten_fields(fields)
    rows = 1 if ignore_batch else inputs[0].shape[0]
    sizes = [x.size // rows for x in inputs]
    shape = [rows, 1, 1, 1]
    shape[axis] = sum(sizes)
    need_output(FLATTEN, out, tuple(shape), inputs[0].dtype.name)
    need_contiguous(FLATTEN, [*inputs, out])
    joined = out.reshape(rows, -1)
    start = 0
    for x, size in zip(inputs, sizes, strict=True):
        joined[:, start : start + size] = x.reshape(rows, size)
        start += size


# --- GridAnchor_TRT --------------------------------------------------------------------------

_ANCHOR_SOURCE = r"""
// One layer of side x side cells, nb boxes a cell, half sizes hw[k], hh[k]: boxes[4 i + j] for
// box i = cell * nb + k is (cx - hw, cy - hh, cx + hw, cy + hh) with centres (x + 0.5) * inv;
// variances[4 i + j] = v[j]. Unfused float32 operations, as the NumPy reference.
extern "C" __global__ void grid_anchor(const float* __restrict__ hw, const float* __restrict__ hh,
                                       int nb, int side, float inv, float v0, float v1, float v2,
                                       float v3, int count, float* __restrict__ boxes,
                                       float* __restrict__ variances) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
        const int k = i % nb;
        const int cell = i / nb;
        const int y = cell / side;
        const int x = cell - y * side;
        const float cx = __fmul_rn(__fadd_rn((float)x, 0.5f), inv);
        const float cy = __fmul_rn(__fadd_rn((float)y, 0.5f), inv);
        boxes[4 * i + 0] = __fsub_rn(cx, hw[k]);
        boxes[4 * i + 1] = __fsub_rn(cy, hh[k]);
        boxes[4 * i + 2] = __fadd_rn(cx, hw[k]);
        boxes[4 * i + 3] = __fadd_rn(cy, hh[k]);
        variances[4 * i + 0] = v0;
        variances[4 * i + 1] = v1;
        variances[4 * i + 2] = v2;
        variances[4 * i + 3] = v3;
    }
}
"""


@lru_cache(maxsize=1)
def _anchor_kernel() -> Any:
    """The compiled `grid_anchor` kernel (CuPy compiles it once per device)."""
    return load_cupy(ANCHOR).RawKernel(_ANCHOR_SOURCE, "grid_anchor")


def _anchor_layers(fields: Mapping[str, Any]) -> tuple[list[int], list[Any], np.ndarray]:
    """(feature-map sides, (widths, heights) per layer, the 4 variances), as the reference
    derives them; GpuKernelError for fields it refuses."""
    from plugins.reference.grid_anchor import layer_sizes

    full = full_fields(ANCHOR, fields)
    try:
        sizes = layer_sizes(full)
    except PluginReferenceError as exc:
        raise GpuKernelError(str(exc)) from None
    sides = [int(s) for s in np.asarray(full["featureMapShapes"]).reshape(-1)]
    variance = np.asarray(full["variance"], dtype=np.float32).reshape(-1)
    if len(sides) != len(sizes) or variance.size != 4 or min(sides) < 1:
        raise GpuKernelError(
            f"{ANCHOR}: featureMapShapes {sides} must give one positive side per layer "
            f"({len(sizes)}) and variance 4 values (got {variance.size})"
        )
    return sides, sizes, variance


def _anchor_check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """No inputs are read; the fields must describe the layers consistently."""
    _anchor_layers(fields)


def _anchor_run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """One [2, side * side * boxes * 4, 1] float32 output per layer."""
    sides, sizes, variance = _anchor_layers(fields)
    if len(outputs) != len(sides):
        raise GpuKernelError(f"{ANCHOR}: {len(sides)} layers need {len(sides)} outputs, got "
                             f"{len(outputs)}")  # fmt: skip
    device = cp.cuda.runtime.getDevice()
    kernel = _anchor_kernel()
    half = np.float32(0.5)
    for out, side, (widths, heights) in zip(outputs, sides, sizes, strict=True):
        count = side * side * len(widths)
        need_output(ANCHOR, out, (2, count * 4, 1), "float32")
        need_contiguous(ANCHOR, [out])
        if count >= 2**29:
            raise GpuKernelError(f"{ANCHOR}: a {side}x{side} layer has too many boxes")
        hw = device_constant(tuple(float(v) for v in half * widths), device)
        hh = device_constant(tuple(float(v) for v in half * heights), device)
        inv = np.float32(1.0) / np.float32(side)
        blocks = max(1, min(-(-count // 256), sm_count(device) * 8))
        args = (hw, hh, np.int32(len(widths)), np.int32(side), inv, *variance, np.int32(count),
                out[0], out[1])  # fmt: skip
        kernel((blocks,), (256,), args)


# --- Normalize_TRT ---------------------------------------------------------------------------


def _normalize_fields(fields: Mapping[str, Any], channels: int) -> tuple[bool, bool, Any, Any]:
    """(acrossSpatial, channelShared, eps, weights as float32 NumPy); GpuKernelError when the
    weights do not fit `channels` (-1: not known yet)."""
    full = full_fields(NORMALIZE, fields)
    across = bool(scalar_field(full, NORMALIZE, "acrossSpatial"))
    shared = bool(scalar_field(full, NORMALIZE, "channelShared"))
    eps = np.float32(scalar_field(full, NORMALIZE, "eps"))
    weights = np.asarray(scalar_field(full, NORMALIZE, "weights"), dtype=np.float32).reshape(-1)
    if (shared and weights.size < 1) or (not shared and channels >= 0 and weights.size != channels):
        want = "1 weight" if shared else f"{channels} weights (one per channel)"
        raise GpuKernelError(f"{NORMALIZE}: expected {want}, got {weights.size}")
    return across, shared, eps, weights


def _normalize_check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """One float NCHW tensor and weights for its channels."""
    if len(shapes) != 1:
        raise GpuKernelError(f"{NORMALIZE}: expected 1 input (x), got {len(shapes)}")
    float_dtype(NORMALIZE, dtypes)
    need_rank(NORMALIZE, "x", shapes[0], (4,))
    _normalize_fields(fields, shapes[0][1])


def _normalize_run(cp: Any, inputs: list[Any], outputs: list[Any],
                   fields: Mapping[str, Any]) -> None:  # fmt: skip
    """x / sqrt(sum x^2 + eps) over C (or C, H, W), times weights[c] (divided, across space)."""
    (x,), (out,) = inputs, outputs
    need_output(NORMALIZE, out, tuple(x.shape), x.dtype.name)
    across, shared, eps, weights = _normalize_fields(fields, x.shape[1])
    xf = x.astype(cp.float32, copy=False)
    axes = (1, 2, 3) if across else (1,)
    y = xf / cp.sqrt(cp.sum(xf * xf, axis=axes, keepdims=True) + eps)
    if shared:
        y *= weights[0]
    else:
        device = cp.cuda.runtime.getDevice()
        scale = device_constant(tuple(float(w) for w in weights), device).reshape(1, -1, 1, 1)
        y = y / scale if across else y * scale
    out[...] = y


SPECIAL_SLICE = Kernel(_slice_run, _slice_check)
FLATTEN_CONCAT = Kernel(_flatten_run, _flatten_check)
GRID_ANCHOR = Kernel(_anchor_run, _anchor_check)
NORMALIZE_KERNEL = Kernel(_normalize_run, _normalize_check)
