"""ProposalLayer_TRT on the GPU: Mask R-CNN RPN proposals (see plugins/reference/proposal_layer).

Per image, without a host round trip: sort keys (image, foreground score code, anchor) of all
anchors (one radix sort for the batch), take the `prenms_topk` best, decode only those on their
anchors (generated once per image size and kept on the device), greedy NMS with the shared
primitive (plugins.gpu.nms) stopping at `keep_topk` kept, and write the kept boxes, zeros after.
Boxes scoring <= 0.01 are left out of the NMS: they sort last, so they could only suppress boxes
that the reference drops anyway.
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
from plugins.reference._mrcnn import MIN_VALID_SCORE, pyramid_anchors

NAME = "ProposalLayer_TRT"

MRCNN_DECODE = r"""
// Matterport's apply_box_deltas + clip to [0, 1] on a (y1, x1, y2, x2) box, std-dev 0.1/0.2.
__device__ __forceinline__ float4 mrcnn_decode(float4 b, const float* __restrict__ d) {
    const float d0 = __fmul_rn(d[0], 0.1f), d1 = __fmul_rn(d[1], 0.1f);
    const float d2 = __fmul_rn(d[2], 0.2f), d3 = __fmul_rn(d[3], 0.2f);
    float h = __fsub_rn(b.z, b.x), w = __fsub_rn(b.w, b.y);
    const float cy = __fadd_rn(__fdiv_rn(__fadd_rn(b.x, b.z), 2.f), __fmul_rn(d0, h));
    const float cx = __fadd_rn(__fdiv_rn(__fadd_rn(b.y, b.w), 2.f), __fmul_rn(d1, w));
    h = __fmul_rn(h, expf(d2));
    w = __fmul_rn(w, expf(d3));
    const float y1 = __fsub_rn(cy, __fmul_rn(0.5f, h)), x1 = __fsub_rn(cx, __fmul_rn(0.5f, w));
    return make_float4(clip(y1, 0.f, 1.f), clip(x1, 0.f, 1.f), clip(__fadd_rn(y1, h), 0.f, 1.f),
                       clip(__fadd_rn(x1, w), 0.f, 1.f));
}
"""

SOURCE = nms.HELPERS + MRCNN_DECODE + r"""
// keys[n * A + a] = (image n, code of scores[n, a, 1], anchor a).
__global__ void proposal_layer_keys(const float* __restrict__ scores, u64* __restrict__ keys,
                                    long long total, int A, int seg_shift, int low_bits) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / A;
        keys[i] = make_key((u64)n, seg_shift, desc_code(scores[2 * i + 1]), low_bits,
                           (u64)(i - n * A));
    }
}

// The L best of image n (sorted keys), decoded: boxes[n, j]; counts[n] = how many of them
// score above min_score (a prefix, the keys being sorted).
__global__ void proposal_layer_gather(const u64* __restrict__ keys,
                                      const float* __restrict__ deltas,
                                      const float4* __restrict__ anchors,
                                      float4* __restrict__ boxes, int* __restrict__ counts,
                                      long long total, int A, int L, int low_bits,
                                      float min_score) {
    const u64 low_mask = (1ull << low_bits) - 1ull;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / L;
        const int j = (int)(i - n * L);
        const u64* row = keys + n * A;
        const u64 key = row[j];
        const long long a = (long long)(key & low_mask);
        boxes[i] = mrcnn_decode(anchors[a], deltas + (n * A + a) * 4);
        const bool ok = code_score(key_code(key, low_bits)) > min_score;
        const bool next = j + 1 < L && code_score(key_code(row[j + 1], low_bits)) > min_score;
        if (ok && !next) counts[n] = j + 1;
        if (j == 0 && !ok) counts[n] = 0;
    }
}

// rois[n, r] = boxes[n, keep[n, r]] for r < kept[n], zeros after.
__global__ void proposal_layer_write(const float4* __restrict__ boxes,
                                     const int* __restrict__ keep, const int* __restrict__ kept,
                                     float4* __restrict__ rois, long long total, int K, int L,
                                     int cap) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / K;
        const int r = (int)(i - n * K);
        rois[i] = r < kept[n] ? boxes[n * L + keep[n * cap + r]] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
}
"""

KERNELS = ("proposal_layer_keys", "proposal_layer_gather", "proposal_layer_write")


def _settings(fields: Mapping[str, Any]) -> tuple[int, int, float, tuple[int, int, int]]:
    """(prenms_topk, keep_topk, iou_threshold, image_size), checked."""
    pre = int(scalar_field(fields, NAME, "prenms_topk"))
    keep = int(scalar_field(fields, NAME, "keep_topk"))
    iou = float(scalar_field(fields, NAME, "iou_threshold"))
    image = fields.get("image_size")
    if image is None or len(image) != 3 or any(int(v) < 1 for v in image):
        raise GpuKernelError(f"{NAME}: field 'image_size' must be [C, H, W] > 0, got {image}")
    if pre < 1 or keep < 1:
        raise GpuKernelError(f"{NAME}: prenms_topk and keep_topk must be >= 1, got {pre}, {keep}")
    if math.isnan(iou):
        raise GpuKernelError(f"{NAME}: iou_threshold is NaN")
    c, h, w = (int(v) for v in image)
    return pre, keep, iou, (c, h, w)


@lru_cache(maxsize=16)
def anchor_count(channels: int, height: int, width: int) -> int:
    """How many anchors the plugin generates for an image [C, H, W]."""
    return len(pyramid_anchors(channels, height, width))


@lru_cache(maxsize=8)
def _device_anchors(image: tuple[int, int, int], device: int) -> Any:
    """The generated anchors [A, 4] on `device`, uploaded once (the reference's own values)."""
    cupy = load_cupy(NAME)
    with cupy.cuda.Device(device):
        anchors = cupy.asarray(pyramid_anchors(*image))
        cupy.cuda.get_current_stream().synchronize()  # once: later calls may use other streams
    return anchors


def _per_image(plugin: str, role: str, shape: Shape, per: int) -> None:
    """Refuse `shape` unless it is [N, ...] with `per` values per image (known dims only)."""
    if len(shape) < 1:
        raise GpuKernelError(f"{plugin}: input '{role}' must have a batch dim, got shape {shape}")
    rest = shape[1:]
    if all(d >= 0 for d in rest) and math.prod(rest) != per:
        raise GpuKernelError(f"{plugin}: input '{role}' has shape {shape}; expected {per} values "
                             "per image")  # fmt: skip


def check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """scores [N, A, 2, 1, 1], deltas [N, A, 4, 1, 1] float32, A anchors of image_size."""
    float32_inputs(NAME, ("scores", "deltas"), dtypes)
    pre, _, _, image = _settings(fields)
    anchors = anchor_count(*image)
    _per_image(NAME, "scores", shapes[0], anchors * 2)
    _per_image(NAME, "deltas", shapes[1], anchors * 4)
    if shapes[0][0] >= 0 and shapes[1][0] >= 0 and shapes[0][0] != shapes[1][0]:
        raise GpuKernelError(f"{NAME}: scores {shapes[0]} and deltas {shapes[1]} differ in batch")
    if min(pre, anchors) > nms.MAX_CANDIDATES:
        raise GpuKernelError(f"{NAME}: prenms_topk {pre} is above {nms.MAX_CANDIDATES}")


def run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """rois [N, keep_topk, 4] from scores and deltas, on the current stream."""
    pre, keep, iou, image = _settings(fields)
    scores, deltas = (cp.ascontiguousarray(x) for x in inputs)
    (rois,) = outputs
    batch, count = int(scores.shape[0]), anchor_count(*image)
    if scores.size != batch * count * 2 or deltas.size != batch * count * 4:
        raise GpuKernelError(f"{NAME}: scores {scores.shape} and deltas {deltas.shape} do not "
                             f"hold {count} anchors per image")  # fmt: skip
    if rois.shape != (batch, keep, 4) or not rois.flags.c_contiguous:
        raise GpuKernelError(f"{NAME}: output must be a contiguous [{batch}, {keep}, 4], "
                             f"got {rois.shape}")  # fmt: skip
    length = min(pre, count)
    layout = nms.key_layout(NAME, batch, count)
    mod = nms.module(cp, SOURCE, KERNELS)
    keys = cp.empty((batch * count,), dtype=cp.uint64)
    nms.launch_1d(cp, mod.get_function("proposal_layer_keys"), keys.size,
                  (scores, keys, np.int64(keys.size), np.int32(count), layout.seg_shift,
                   layout.low))  # fmt: skip
    nms.sort_keys(keys, layout)
    boxes = cp.empty((batch, length, 4), dtype=cp.float32)
    counts = cp.empty((batch,), dtype=cp.int32)
    anchors = _device_anchors(image, cp.cuda.runtime.getDevice())
    nms.launch_1d(cp, mod.get_function("proposal_layer_gather"), boxes.size // 4,
                  (keys, deltas, anchors, boxes, counts, np.int64(boxes.size // 4),
                   np.int32(count), np.int32(length), layout.low,
                   np.float32(MIN_VALID_SCORE)))  # fmt: skip
    kept_at, kept = nms.suppress(cp, NAME, boxes, counts, iou, "iou", keep)
    nms.launch_1d(cp, mod.get_function("proposal_layer_write"), batch * keep,
                  (boxes, kept_at, kept, rois, np.int64(batch * keep), np.int32(keep),
                   np.int32(length), np.int32(kept_at.shape[1])))  # fmt: skip


PROPOSAL_LAYER = Kernel(run, check)
