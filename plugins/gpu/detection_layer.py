"""DetectionLayer_TRT on the GPU: Mask R-CNN detections (see plugins/reference/detection_layer).

Per ROI (one thread): the best class (first maximum), its refined and clipped box, and a sort
key (image, score code, class, ROI) for the candidates (class > 0, score >= score_threshold,
score > 0.01; the rest sort last). One radix sort orders every image's candidates by score, ties
by class then ROI: the reference's final order. Per-class NMS is then one pass of the shared
primitive (plugins.gpu.nms) over that order with a label check, stopping at `keep_topk` kept, so
the kept boxes come out already in output order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from plugins.gpu import nms
from plugins.gpu._checks import float32_inputs
from plugins.gpu.dispatch import Kernel, Shape
from plugins.gpu.proposal_layer import MRCNN_DECODE
from plugins.gpu.runtime import GpuKernelError, scalar_field
from plugins.reference._mrcnn import MIN_VALID_SCORE

NAME = "DetectionLayer_TRT"

SOURCE = nms.HELPERS + MRCNN_DECODE + r"""
// ROI i = n * R + r: best class (NumPy's argmax: first maximum, a NaN wins), refined box, key.
// Not a candidate: key = (image n, all ones), after every candidate of the image.
__global__ void detection_prepare(const float* __restrict__ deltas,
                                  const float* __restrict__ scores,
                                  const float4* __restrict__ rois, float4* __restrict__ boxes,
                                  u64* __restrict__ keys, long long total, int R, int C,
                                  float threshold, float min_score, int seg_shift, int low_bits,
                                  int roi_bits) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const float* s = scores + i * C;
        float best = s[0];
        int label = 0;
        for (int c = 1; c < C && best == best; ++c) {
            const float v = s[c];
            if (v > best || v != v) {
                best = v;
                label = c;
            }
        }
        if (!(best > 0.f)) {
            best = 0.f;
            label = -1;
        }
        boxes[i] = mrcnn_decode(rois[i], deltas + (i * C + max(label, 0)) * 4);
        const long long n = i / R;
        const long long r = i - n * R;
        const bool candidate = label > 0 && best >= threshold && best > min_score;
        const u64 low = candidate ? (((u64)label << roi_bits) | (u64)r)
                                  : ((1ull << low_bits) - 1ull);
        keys[i] = make_key((u64)n, seg_shift, candidate ? desc_code(best) : 0xFFFFFFFFu, low_bits,
                           low);
    }
}

// Image n's candidates in key order: sorted[n, j] = box, labels[n, j] = class (-1 past the
// candidates); counts[n] = how many candidates (a prefix of the sorted keys).
__global__ void detection_gather(const u64* __restrict__ keys, const float4* __restrict__ boxes,
                                 float4* __restrict__ sorted, int* __restrict__ labels,
                                 int* __restrict__ counts, long long total, int R, int low_bits,
                                 int roi_bits) {
    const u64 roi_mask = (1ull << roi_bits) - 1ull;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / R;
        const int j = (int)(i - n * R);
        const u64 key = keys[i];
        const bool ok = key_code(key, low_bits) != 0xFFFFFFFFu;
        const bool next = j + 1 < R && key_code(keys[i + 1], low_bits) != 0xFFFFFFFFu;
        if (ok) {
            sorted[i] = boxes[n * R + (long long)(key & roi_mask)];
            labels[i] = (int)((key & ((1ull << low_bits) - 1ull)) >> roi_bits);
        } else {
            labels[i] = -1;
        }
        if (ok && !next) counts[n] = j + 1;
        if (j == 0 && !ok) counts[n] = 0;
    }
}

// out[n, r] = (y1, x1, y2, x2, class, score) of the r-th kept, (0, 0, 0, 0, -1, 0) after.
__global__ void detection_write(const u64* __restrict__ keys, const float4* __restrict__ sorted,
                                const int* __restrict__ labels, const int* __restrict__ keep,
                                const int* __restrict__ kept, float* __restrict__ out,
                                long long total, int K, int R, int cap, int low_bits) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / K;
        const int r = (int)(i - n * K);
        float* o = out + i * 6;
        if (r < kept[n]) {
            const long long j = n * R + keep[n * cap + r];
            const float4 b = sorted[j];
            o[0] = b.x; o[1] = b.y; o[2] = b.z; o[3] = b.w;
            o[4] = (float)labels[j];
            o[5] = code_score(key_code(keys[j], low_bits));
        } else {
            o[0] = 0.f; o[1] = 0.f; o[2] = 0.f; o[3] = 0.f; o[4] = -1.f; o[5] = 0.f;
        }
    }
}
"""

KERNELS = ("detection_prepare", "detection_gather", "detection_write")


def _settings(fields: Mapping[str, Any]) -> tuple[int, int, float, float]:
    """(num_classes, keep_topk, score_threshold, iou_threshold), checked."""
    classes = int(scalar_field(fields, NAME, "num_classes"))
    keep = int(scalar_field(fields, NAME, "keep_topk"))
    score = float(scalar_field(fields, NAME, "score_threshold"))
    iou = float(scalar_field(fields, NAME, "iou_threshold"))
    if classes < 1 or keep < 1:
        raise GpuKernelError(f"{NAME}: num_classes and keep_topk must be >= 1, got {classes}, "
                             f"{keep}")  # fmt: skip
    if math.isnan(score) or math.isnan(iou):
        raise GpuKernelError(f"{NAME}: score_threshold and iou_threshold must be numbers")
    return classes, keep, score, iou


def _rois_of(shapes: list[Shape]) -> int | None:
    """ROIs per image from roi [N, R, 4] (None while unknown)."""
    roi = shapes[2]
    if len(roi) < 2:
        raise GpuKernelError(f"{NAME}: input 'roi' must be [N, R, 4], got shape {roi}")
    if any(d < 0 for d in roi[1:]):
        return None
    per = math.prod(roi[1:])
    if per % 4:
        raise GpuKernelError(f"{NAME}: input 'roi' has shape {roi}; expected [N, R, 4]")
    return per // 4


def check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """delta_bbox [N, R, C*4, 1, 1], score [N, R, C, 1, 1], roi [N, R, 4], float32."""
    float32_inputs(NAME, ("delta_bbox", "score", "roi"), dtypes)
    classes, _, _, _ = _settings(fields)
    rois = _rois_of(shapes)
    batches = {s[0] for s in shapes if len(s) and s[0] >= 0}
    if len(batches) > 1 or any(len(s) < 1 for s in shapes):
        raise GpuKernelError(f"{NAME}: inputs {shapes} must share the batch dim")
    if rois is None:
        return
    if rois > nms.MAX_CANDIDATES:
        raise GpuKernelError(f"{NAME}: {rois} ROIs per image; at most {nms.MAX_CANDIDATES}")
    for role, shape, per in (("delta_bbox", shapes[0], rois * classes * 4),
                             ("score", shapes[1], rois * classes)):  # fmt: skip
        if all(d >= 0 for d in shape[1:]) and math.prod(shape[1:]) != per:
            raise GpuKernelError(f"{NAME}: input '{role}' has shape {shape}; expected {per} "
                                 f"values per image ({rois} ROIs x {classes} classes)")  # fmt: skip


def run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """detections [N, keep_topk, 6] from delta_bbox, score and roi, on the current stream."""
    classes, keep, score, iou = _settings(fields)
    deltas, scores, rois = (cp.ascontiguousarray(x) for x in inputs)
    (out,) = outputs
    batch = int(rois.shape[0])
    count = rois.size // max(batch * 4, 1)
    if out.shape != (batch, keep, 6) or not out.flags.c_contiguous:
        raise GpuKernelError(f"{NAME}: output must be a contiguous [{batch}, {keep}, 6], "
                             f"got {out.shape}")  # fmt: skip
    if rois.size != batch * count * 4 or scores.size != batch * count * classes \
            or deltas.size != batch * count * classes * 4:  # fmt: skip
        raise GpuKernelError(f"{NAME}: inputs {deltas.shape}, {scores.shape}, {rois.shape} do "
                             f"not fit {classes} classes")  # fmt: skip
    if rois.data.ptr % 16:  # the kernel reads a box as one float4
        rois = rois.copy()
    roi_bits = nms.bits_for(count)
    layout = nms.key_layout(NAME, batch, classes, count)
    mod = nms.module(cp, SOURCE, KERNELS)
    total = batch * count
    boxes = cp.empty((batch, count, 4), dtype=cp.float32)
    keys = cp.empty((total,), dtype=cp.uint64)
    nms.launch_1d(cp, mod.get_function("detection_prepare"), total,
                  (deltas, scores, rois, boxes, keys, np.int64(total), np.int32(count),
                   np.int32(classes), np.float32(score), np.float32(MIN_VALID_SCORE),
                   layout.seg_shift, layout.low, np.int32(roi_bits)))  # fmt: skip
    nms.sort_keys(keys, layout)
    ordered = cp.empty((batch, count, 4), dtype=cp.float32)
    labels = cp.empty((batch, count), dtype=cp.int32)
    counts = cp.zeros((batch,), dtype=cp.int32)
    nms.launch_1d(cp, mod.get_function("detection_gather"), total,
                  (keys, boxes, ordered, labels, counts, np.int64(total), np.int32(count),
                   layout.low, np.int32(roi_bits)))  # fmt: skip
    keep_at, kept = nms.suppress(cp, NAME, ordered, counts, iou, "iou", keep, labels)
    nms.launch_1d(cp, mod.get_function("detection_write"), batch * keep,
                  (keys, ordered, labels, keep_at, kept, out, np.int64(batch * keep),
                   np.int32(keep), np.int32(count), np.int32(keep_at.shape[1]),
                   layout.low))  # fmt: skip


DETECTION_LAYER = Kernel(run, check)
