"""Proposal on the GPU: Faster R-CNN region proposals (see plugins/reference/proposal).

One thread per (image, anchor, y, x) decodes its box on the fly (anchor widths and heights are
computed once per field values, as the reference computes them, and kept on the device), marks
boxes too small with score -inf and writes a sort key (image, score code, anchor position). One
radix sort for the batch, the `pre_nms_top_n` best decoded again as candidates, greedy NMS with
the +1-pixel IoU through the shared primitive (plugins.gpu.nms) stopping at `post_nms_top_n`, and
the kept boxes written normalised as (y1, x1, y2, x2), zeros after. Nothing leaves the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from plugins.gpu import nms
from plugins.gpu._checks import float32_inputs
from plugins.gpu.dispatch import Kernel, Shape
from plugins.gpu.runtime import GpuKernelError, load_cupy, scalar_field

NAME = "Proposal"

SOURCE = nms.HELPERS + r"""
// Box (x1, y1, x2, y2) of anchor a at (y, x), deltas d of one image [4A, H, W], clipped to
// [0, max_x] x [0, max_y]; wh[2a], wh[2a + 1]: the anchor's width and height.
__device__ __forceinline__ float4 rpn_box(const float* __restrict__ d,
                                          const float* __restrict__ wh, int a, int y, int x,
                                          int H, int W, float stride, float max_x, float max_y) {
    const long long plane = (long long)H * W, at = (long long)y * W + x;
    const float* t = d + (long long)a * 4 * plane + at;
    const float aw = wh[2 * a], ah = wh[2 * a + 1];
    const float acx = __fmul_rn(__fadd_rn((float)x, 0.5f), stride);
    const float acy = __fmul_rn(__fadd_rn((float)y, 0.5f), stride);
    const float cx = __fadd_rn(acx, __fmul_rn(aw, t[0]));
    const float cy = __fadd_rn(acy, __fmul_rn(ah, t[plane]));
    const float w = __fmul_rn(expf(t[2 * plane]), aw);
    const float h = __fmul_rn(expf(t[3 * plane]), ah);
    const float x1 = __fsub_rn(cx, __fdiv_rn(w, 2.f)), y1 = __fsub_rn(cy, __fdiv_rn(h, 2.f));
    return make_float4(clip(x1, 0.f, max_x), clip(y1, 0.f, max_y),
                       clip(__fadd_rn(x1, w), 0.f, max_x), clip(__fadd_rn(y1, h), 0.f, max_y));
}

// keys[n * M + m] = (image n, code of its score, -inf when too small, m), m = (a * H + y) * W + x.
__global__ void proposal_keys(const float* __restrict__ scores, const float* __restrict__ deltas,
                              const float* __restrict__ wh, u64* __restrict__ keys,
                              long long total, int A, int score_channels, int H, int W,
                              float stride, float max_x, float max_y, float min_size,
                              int seg_shift, int low_bits) {
    const long long plane = (long long)H * W, M = A * plane;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / M, m = i - n * M;
        const int a = (int)(m / plane);
        const long long at = m - a * plane;
        const int y = (int)(at / W), x = (int)(at - (long long)y * W);
        const float4 b = rpn_box(deltas + n * 4 * M, wh, a, y, x, H, W, stride, max_x, max_y);
        const bool small = __fsub_rn(b.z, b.x) <= min_size || __fsub_rn(b.w, b.y) <= min_size;
        const float f = small ? __int_as_float(0xff800000)
                              : scores[(n * score_channels + a) * plane + at];
        keys[i] = make_key((u64)n, seg_shift, desc_code(f), low_bits, (u64)m);
    }
}

// cand[n, j] = the box of image n's j-th best key (j < L).
__global__ void proposal_gather(const u64* __restrict__ keys, const float* __restrict__ deltas,
                                const float* __restrict__ wh, float4* __restrict__ cand,
                                long long total, int A, int H, int W, int L, float stride,
                                float max_x, float max_y, int low_bits) {
    const long long plane = (long long)H * W, M = A * plane;
    const u64 low_mask = (1ull << low_bits) - 1ull;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / L;
        const long long j = i - n * L;
        const long long m = (long long)(keys[n * M + j] & low_mask);
        const int a = (int)(m / plane);
        const long long at = m - a * plane;
        const int y = (int)(at / W), x = (int)(at - (long long)y * W);
        cand[i] = rpn_box(deltas + n * 4 * M, wh, a, y, x, H, W, stride, max_x, max_y);
    }
}

// rois[n, r] = kept box r as (y1 / dy, x1 / dx, y2 / dy, x2 / dx), zeros after the kept.
__global__ void proposal_write(const float4* __restrict__ cand, const int* __restrict__ keep,
                               const int* __restrict__ kept, float4* __restrict__ rois,
                               long long total, int K, int L, int cap, float dy, float dx) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / K;
        const int r = (int)(i - n * K);
        if (r < kept[n]) {
            const float4 b = cand[n * L + keep[n * cap + r]];
            rois[i] = make_float4(__fdiv_rn(b.y, dy), __fdiv_rn(b.x, dx), __fdiv_rn(b.w, dy),
                                  __fdiv_rn(b.z, dx));
        } else {
            rois[i] = make_float4(0.f, 0.f, 0.f, 0.f);
        }
    }
}
"""

KERNELS = ("proposal_keys", "proposal_gather", "proposal_write")


def _list(fields: Mapping[str, Any], name: str) -> tuple[float, ...]:
    """List field `name` as float32 values; GpuKernelError when missing or empty."""
    value = fields.get(name)
    values = np.asarray(value if value is not None else [], dtype=np.float32).reshape(-1)
    if not values.size:
        raise GpuKernelError(f"{NAME}: field '{name}' must list at least one value")
    return tuple(float(v) for v in values)


def _settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields by name (lists as float32 tuples), checked."""
    get = lambda name: scalar_field(fields, NAME, name)  # noqa: E731
    s = {name: int(get(name)) for name in ("input_height", "input_width", "pre_nms_top_n",
                                           "post_nms_top_n")}  # fmt: skip
    s["rpn_stride"] = float(np.float32(get("rpn_stride")))
    s["roi_min_size"] = float(np.float32(get("roi_min_size")))
    s["iou"] = float(get("nms_iou_threshold"))
    s["sizes"], s["ratios"] = _list(fields, "anchor_sizes"), _list(fields, "anchor_ratios")
    if s["pre_nms_top_n"] < 1 or s["post_nms_top_n"] < 1:
        raise GpuKernelError(f"{NAME}: pre_nms_top_n and post_nms_top_n must be >= 1, got "
                             f"{s['pre_nms_top_n']}, {s['post_nms_top_n']}")  # fmt: skip
    if math.isnan(s["iou"]):
        raise GpuKernelError(f"{NAME}: nms_iou_threshold is NaN")
    return s


@lru_cache(maxsize=16)
def _anchor_sizes(sizes: tuple[float, ...], ratios: tuple[float, ...], device: int) -> Any:
    """[A, 2] anchor (width, height) on `device`, as the reference computes them (float32)."""
    size = np.asarray(sizes, dtype=np.float32)[:, None]
    ratio = np.asarray(ratios, dtype=np.float32)[None, :]
    wh = np.stack([(size * ratio).reshape(-1), (size / ratio).reshape(-1)], axis=1)
    cupy = load_cupy(NAME)
    with cupy.cuda.Device(device):
        table = cupy.asarray(wh.astype(np.float32))
        cupy.cuda.get_current_stream().synchronize()  # once: later calls may use other streams
    return table


def check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """scores [N, A or 2A, H, W], deltas [N, 4A, H, W], float32."""
    float32_inputs(NAME, ("scores", "deltas"), dtypes)
    s = _settings(fields)
    scores, deltas = shapes
    for role, shape in (("scores", scores), ("deltas", deltas)):
        if len(shape) != 4:
            raise GpuKernelError(f"{NAME}: input '{role}' has shape {shape}; expected rank 4 "
                                 "[N, C, H, W]")  # fmt: skip
    anchors = len(s["sizes"]) * len(s["ratios"])
    pairs = [(scores[k], deltas[k]) for k in (0, 2, 3)]
    if any(a >= 0 and b >= 0 and a != b for a, b in pairs):
        raise GpuKernelError(f"{NAME}: scores {scores} and deltas {deltas} differ in N, H or W")
    if deltas[1] >= 0 and deltas[1] != 4 * anchors:
        raise GpuKernelError(f"{NAME}: deltas {deltas} need {4 * anchors} channels for "
                             f"{anchors} anchors")  # fmt: skip
    if scores[1] >= 0 and scores[1] not in (anchors, 2 * anchors):
        raise GpuKernelError(f"{NAME}: scores {scores} need {anchors} (or {2 * anchors}) "
                             "channels")  # fmt: skip
    if deltas[2] >= 0 and deltas[3] >= 0:
        length = min(s["pre_nms_top_n"], anchors * deltas[2] * deltas[3])
        if length > nms.MAX_CANDIDATES:
            raise GpuKernelError(f"{NAME}: pre_nms_top_n {length} is above {nms.MAX_CANDIDATES}")


def run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """rois [N, post_nms_top_n, 4] from scores and deltas, on the current stream."""
    s = _settings(fields)
    scores, deltas = (cp.ascontiguousarray(x) for x in inputs)
    (rois,) = outputs
    batch, _, height, width = (int(d) for d in deltas.shape)
    anchors = len(s["sizes"]) * len(s["ratios"])
    post = s["post_nms_top_n"]
    if rois.shape != (batch, post, 4) or not rois.flags.c_contiguous:
        raise GpuKernelError(f"{NAME}: output must be a contiguous [{batch}, {post}, 4], "
                             f"got {rois.shape}")  # fmt: skip
    per = anchors * height * width
    length = min(s["pre_nms_top_n"], per)
    wh = _anchor_sizes(s["sizes"], s["ratios"], cp.cuda.runtime.getDevice())
    layout = nms.key_layout(NAME, batch, per)
    mod = nms.module(cp, SOURCE, KERNELS)
    geometry = (np.int32(height), np.int32(width), np.float32(s["rpn_stride"]),
                np.float32(s["input_width"] - 1), np.float32(s["input_height"] - 1))  # fmt: skip
    keys = cp.empty((batch * per,), dtype=cp.uint64)
    nms.launch_1d(cp, mod.get_function("proposal_keys"), keys.size,
                  (scores, deltas, wh, keys, np.int64(keys.size), np.int32(anchors),
                   np.int32(scores.shape[1]), *geometry, np.float32(s["roi_min_size"]),
                   layout.seg_shift, layout.low))  # fmt: skip
    nms.sort_keys(keys, layout)
    cand = cp.empty((batch, length, 4), dtype=cp.float32)
    nms.launch_1d(cp, mod.get_function("proposal_gather"), batch * length,
                  (keys, deltas, wh, cand, np.int64(batch * length), np.int32(anchors),
                   geometry[0], geometry[1], np.int32(length), *geometry[2:],
                   layout.low))  # fmt: skip
    counts = cp.full((batch,), length, dtype=cp.int32)
    keep_at, kept = nms.suppress(cp, NAME, cand, counts, s["iou"], "pixel", post)
    nms.launch_1d(cp, mod.get_function("proposal_write"), batch * post,
                  (cand, keep_at, kept, rois, np.int64(batch * post), np.int32(post),
                   np.int32(length), np.int32(keep_at.shape[1]),
                   geometry[4], geometry[3]))  # fmt: skip


PROPOSAL = Kernel(run, check)
