"""BatchedNMS_Surgery on the GPU: torchvision's exported `batched_nms` (see
plugins/reference/batched_nms).

One segment of N boxes, on the shared primitive of `plugins.gpu.nms`: keys (score code, index)
from its `score_keys`, one radix sort (best first, equal scores lower index first); a kernel of
this module gathers the boxes in that order, moved by `float32(class) * (max coordinate + 1)`
exactly as the export computes the offsets (the maximum is a CuPy reduction left on the device);
`nms.suppress` with the `onnx` overlap (onnxruntime's NonMaxSuppression test: sorted corners,
positive intersection, IoU > threshold) builds the bitmask and walks it on the device, with no
label check, since the offsets are what keep classes apart in the export too; `keep_to_index`
writes the kept input indices and -1 after them, and the count is copied into `count`. Nothing
is copied to the host and no call waits for the device; the sort is CuPy's own (`ndarray.sort`),
as in every NMS-type kernel here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from plugins.gpu import nms
from plugins.gpu._checks import need_contiguous, need_output, need_rank
from plugins.gpu.dispatch import Kernel, Shape
from plugins.gpu.runtime import GpuKernelError, scalar_field

NAME = "BatchedNMS_Surgery"
DTYPES = ("float32", "float32", "int32")
"""boxes, scores, classes."""

SOURCE = nms.HELPERS + r"""
// Box i of the sorted order (key i's low bits: its input index k), moved by its class offset
// float32(classes[k]) * (top[0] + 1), each step rounded as the exported graph's float32 ops.
__global__ void batched_offset_gather(const u64* __restrict__ keys,
                                      const float4* __restrict__ boxes,
                                      const int* __restrict__ classes,
                                      const float* __restrict__ top,
                                      float4* __restrict__ sorted_boxes,
                                      int* __restrict__ order, int n, int low_bits) {
    const u64 low_mask = (1ull << low_bits) - 1ull;
    const float shift = __fadd_rn(top[0], 1.f);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int k = (int)(keys[i] & low_mask);
        const float offset = __fmul_rn(__int2float_rn(classes[k]), shift);
        const float4 b = boxes[k];
        sorted_boxes[i] = make_float4(__fadd_rn(b.x, offset), __fadd_rn(b.y, offset),
                                      __fadd_rn(b.z, offset), __fadd_rn(b.w, offset));
        order[i] = k;
    }
}
"""

KERNELS = ("batched_offset_gather",)


def threshold(fields: Mapping[str, Any]) -> float:
    """The `iou_threshold` field; GpuKernelError outside [0, 1] (onnxruntime refuses those)."""
    value = float(scalar_field(fields, NAME, "iou_threshold"))
    if not 0.0 <= value <= 1.0:
        raise GpuKernelError(f"{NAME}: iou_threshold must be in [0, 1], got {value}")
    return value


def boxes_count(shapes: list[Shape]) -> int:
    """N of boxes [N, 4], scores [N], classes [N] (-1 while unknown); GpuKernelError where the
    known dims disagree."""
    if len(shapes) != 3:
        raise GpuKernelError(f"{NAME}: expected 3 inputs (boxes, scores, classes), got "
                             f"{len(shapes)}")  # fmt: skip
    boxes, scores, classes = shapes
    need_rank(NAME, "input 'boxes'", boxes, (2,))
    need_rank(NAME, "input 'scores'", scores, (1,))
    need_rank(NAME, "input 'classes'", classes, (1,))
    if boxes[1] >= 0 and boxes[1] != 4:
        raise GpuKernelError(f"{NAME}: input 'boxes' has shape {list(boxes)}; expected [N, 4]")
    known = {d for d in (boxes[0], scores[0], classes[0]) if d >= 0}
    if len(known) > 1:
        raise GpuKernelError(f"{NAME}: boxes {list(boxes)}, scores {list(scores)} and classes "
                             f"{list(classes)} must hold the same number of boxes")  # fmt: skip
    return known.pop() if known else -1


def check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """boxes [N, 4] float32, scores [N] float32, classes [N] int32, N <= nms.MAX_CANDIDATES,
    iou_threshold in [0, 1]."""
    if tuple(dtypes) != DTYPES:
        raise GpuKernelError(f"{NAME}: the GPU kernel takes boxes and scores float32 and classes "
                             f"int32, got {list(dtypes)}")  # fmt: skip
    n = boxes_count(shapes)
    if n > nms.MAX_CANDIDATES:
        raise GpuKernelError(f"{NAME}: {n} boxes; the GPU kernel takes at most "
                             f"{nms.MAX_CANDIDATES} (its IoU bitmask has N * N bits)")  # fmt: skip
    threshold(fields)


def run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """keep [N] int32 (kept input indices best first, then -1) and count [1] int32, on CuPy's
    current stream."""
    boxes, scores, classes = inputs
    keep_out, count_out = outputs
    n = int(boxes.shape[0])
    thr = threshold(fields)
    need_output(NAME, keep_out, (n,), "int32")
    need_output(NAME, count_out, (1,), "int32")
    need_contiguous(NAME, [keep_out, count_out])
    if n == 0:
        count_out.fill(0)
        return
    if not boxes.flags.c_contiguous or boxes.data.ptr % 16:
        boxes = boxes.copy()  # read as float4: contiguous and 16-byte aligned
    scores, classes = cp.ascontiguousarray(scores), cp.ascontiguousarray(classes)
    base, mod = nms.module(cp), nms.module(cp, SOURCE, KERNELS)
    layout = nms.key_layout(NAME, 1, n)
    keys = cp.empty((n,), dtype=cp.uint64)
    nms.launch_1d(cp, base.get_function("score_keys"), n, (scores, keys, np.int32(n), layout.low))
    nms.sort_keys(keys, layout)
    top = cp.max(boxes)  # a 0-d device array: the kernel reads it, the host never does
    moved = cp.empty((1, n, 4), dtype=cp.float32)
    order = cp.empty((n,), dtype=cp.int32)
    nms.launch_1d(cp, mod.get_function("batched_offset_gather"), n,
                  (keys, boxes, classes, top, moved, order, np.int32(n), layout.low))  # fmt: skip
    counts = cp.full((1,), n, dtype=cp.int32)
    keep, kept = nms.suppress(cp, NAME, moved, counts, thr, "onnx", n)
    nms.launch_1d(cp, base.get_function("keep_to_index"), n,
                  (keep, kept, order, keep_out, np.int32(n)))  # fmt: skip
    count_out[...] = kept


BATCHED_NMS = Kernel(run, check)
