"""NMS_TRT on the GPU: SSD detection output (see plugins/reference/nms).

Segments are (image, class) pairs, background left out. One radix sort of keys (segment, score
code, prior) ranks every class's priors; the best min(topK, above threshold) of each are decoded
into candidates; the shared primitive (plugins.gpu.nms, Caffe overlap) runs every segment's
greedy NMS at once, stopping at keepTopK kept (no class can place more in the output). A second
sort of the survivors' keys (image, score code, class, rank) gives the output order (score, then
class, then the class's own order, as the reference's stable sort), and the first keepTopK are
written; keep_count counts them. Nothing leaves the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.gpu import nms
from plugins.gpu._checks import float32_inputs
from plugins.gpu.dispatch import Kernel, Shape
from plugins.gpu.runtime import GpuKernelError, scalar_field

NAME = "NMS_TRT"

SOURCE = nms.HELPERS + r"""
// Decode deltas l on prior pr with variances var (TensorRT's codeType 1..4, as the reference).
__device__ __forceinline__ float4 ssd_decode(const float* __restrict__ l,
                                             const float* __restrict__ pr,
                                             const float* __restrict__ var, int code,
                                             int in_target) {
    const bool ones = in_target && code != 4;
    const float v0 = ones ? 1.f : var[0], v1 = ones ? 1.f : var[1];
    const float v2 = ones ? 1.f : var[2], v3 = ones ? 1.f : var[3];
    const float p0 = pr[0], p1 = pr[1], p2 = pr[2], p3 = pr[3];
    if (code == 1) {
        return make_float4(__fadd_rn(p0, __fmul_rn(l[0], v0)), __fadd_rn(p1, __fmul_rn(l[1], v1)),
                           __fadd_rn(p2, __fmul_rn(l[2], v2)), __fadd_rn(p3, __fmul_rn(l[3], v3)));
    }
    const float pw = __fsub_rn(p2, p0), ph = __fsub_rn(p3, p1);
    if (code == 3) {
        return make_float4(__fadd_rn(p0, __fmul_rn(__fmul_rn(l[0], v0), pw)),
                           __fadd_rn(p1, __fmul_rn(__fmul_rn(l[1], v1), ph)),
                           __fadd_rn(p2, __fmul_rn(__fmul_rn(l[2], v2), pw)),
                           __fadd_rn(p3, __fmul_rn(__fmul_rn(l[3], v3), ph)));
    }
    const float pcx = __fdiv_rn(__fadd_rn(p0, p2), 2.f), pcy = __fdiv_rn(__fadd_rn(p1, p3), 2.f);
    const float dx = code == 2 ? l[0] : l[1], dy = code == 2 ? l[1] : l[0];
    const float dw = code == 2 ? l[2] : l[3], dh = code == 2 ? l[3] : l[2];
    const float cx = __fadd_rn(__fmul_rn(__fmul_rn(v0, dx), pw), pcx);
    const float cy = __fadd_rn(__fmul_rn(__fmul_rn(v1, dy), ph), pcy);
    const float w = __fmul_rn(expf(__fmul_rn(v2, dw)), pw);
    const float h = __fmul_rn(expf(__fmul_rn(v3, dh)), ph);
    const float hw = __fdiv_rn(w, 2.f), hh = __fdiv_rn(h, 2.f);
    return make_float4(__fsub_rn(cx, hw), __fsub_rn(cy, hh), __fadd_rn(cx, hw), __fadd_rn(cy, hh));
}

// Class slot cs of the Cs non-background classes -> class id (skip: the background, or C).
__device__ __forceinline__ int class_of(int cs, int skip) { return cs + (cs >= skip ? 1 : 0); }

// keys[(n * Cs + cs) * P + p] = (segment, code of conf[n, p, class], prior p).
__global__ void nms_trt_keys(const float* __restrict__ conf, u64* __restrict__ keys,
                             long long total, int P, int C, int Cs, int skip, int sigmoid,
                             int seg_shift, int low_bits) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long seg = i / P;
        const long long p = i - seg * P;
        const long long n = seg / Cs;
        const int c = class_of((int)(seg - n * Cs), skip);
        float f = conf[(n * P + p) * C + c];
        if (sigmoid) f = __fdiv_rn(1.f, __fadd_rn(1.f, expf(-f)));
        keys[i] = make_key((u64)seg, seg_shift, desc_code(f), low_bits, (u64)p);
    }
}

// Candidates of segment seg: its first L sorted priors, decoded; counts[seg] = how many of them
// score above the threshold (a prefix).
__global__ void nms_trt_gather(const u64* __restrict__ keys, const float* __restrict__ loc,
                               const float* __restrict__ priors, float4* __restrict__ cand,
                               int* __restrict__ counts, long long total, int P, int L, int Cs,
                               int skip, int loc_classes, int prior_sets, int agnostic, int code,
                               int in_target, float threshold, int low_bits) {
    const u64 low_mask = (1ull << low_bits) - 1ull;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long seg = i / L;
        const int j = (int)(i - seg * L);
        const u64* row = keys + seg * P;
        const u64 key = row[j];
        const bool ok = code_score(key_code(key, low_bits)) > threshold;
        const bool next = j + 1 < L && code_score(key_code(row[j + 1], low_bits)) > threshold;
        if (ok && !next) counts[seg] = j + 1;
        if (j == 0 && !ok) counts[seg] = 0;
        if (!ok) continue;
        const long long p = (long long)(key & low_mask);
        const long long n = seg / Cs;
        const int k = loc_classes == 1 ? 0 : class_of((int)(seg - n * Cs), skip);
        const long long set = (agnostic || prior_sets == 1) ? 0 : n;
        const float* pr = priors + set * 8 * (long long)P + p * 4;
        cand[i] = ssd_decode(loc + ((n * P + p) * loc_classes + k) * 4, pr, pr + 4 * (long long)P,
                             code, in_target);
    }
}

// Survivor r of segment (n, cs) -> keys2 = (image n, score code, cs, rank j); empty slots sort
// after every survivor of the image.
__global__ void nms_trt_merge(const u64* __restrict__ keys, const int* __restrict__ keep,
                              const int* __restrict__ kept, u64* __restrict__ keys2,
                              long long total, int P, int K, int Cs, int low_bits,
                              int seg_shift2, int low_bits2, int rank_bits) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long seg = i / K;
        const int r = (int)(i - seg * K);
        const long long n = seg / Cs;
        const u64 cs = (u64)(seg - n * Cs);
        if (r < kept[seg]) {
            const int j = keep[i];
            const unsigned int code = key_code(keys[seg * P + j], low_bits);
            keys2[i] = make_key((u64)n, seg_shift2, code, low_bits2, (cs << rank_bits) | (u64)j);
        } else {
            keys2[i] = make_key((u64)n, seg_shift2, 0xFFFFFFFFu, low_bits2,
                                (1ull << low_bits2) - 1ull);
        }
    }
}

// det[n, 0, r] = (n, class, score, xmin, ymin, xmax, ymax) clipped to [0, 1] for the first
// keepTopK survivors of image n, (n, -1, 0, 0, 0, 0, 0) after; count[n] = how many.
__global__ void nms_trt_write(const u64* __restrict__ keys2, const float4* __restrict__ cand,
                              float* __restrict__ det, int* __restrict__ count, long long total,
                              int keep_top_k, int M, int L, int Cs, int skip, int low_bits2,
                              int rank_bits) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / keep_top_k;
        const int r = (int)(i - n * keep_top_k);
        const u64* row = keys2 + n * M;
        const bool ok = r < M && key_code(row[r], low_bits2) != 0xFFFFFFFFu;
        const bool next = r + 1 < keep_top_k && r + 1 < M &&
                          key_code(row[r + 1], low_bits2) != 0xFFFFFFFFu;
        if (ok && !next) count[n] = r + 1;
        if (r == 0 && !ok) count[n] = 0;
        float* o = det + i * 7;
        o[0] = (float)n;
        if (ok) {
            const u64 key = row[r];
            const u64 low = key & ((1ull << low_bits2) - 1ull);
            const int cs = (int)(low >> rank_bits);
            const int j = (int)(low & ((1ull << rank_bits) - 1ull));
            const float4 b = cand[(n * Cs + cs) * L + j];
            o[1] = (float)class_of(cs, skip);
            o[2] = code_score(key_code(key, low_bits2));
            o[3] = clip(b.x, 0.f, 1.f); o[4] = clip(b.y, 0.f, 1.f);
            o[5] = clip(b.z, 0.f, 1.f); o[6] = clip(b.w, 0.f, 1.f);
        } else {
            o[1] = -1.f; o[2] = 0.f; o[3] = 0.f; o[4] = 0.f; o[5] = 0.f; o[6] = 0.f;
        }
    }
}
"""

KERNELS = ("nms_trt_keys", "nms_trt_gather", "nms_trt_merge", "nms_trt_write")


def _opt(fields: Mapping[str, Any], name: str, default: Any) -> Any:
    """Optional field `name` (a one-element list unwrapped), `default` when absent."""
    value = fields.get(name)
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    return default if value is None else value


@dataclass(frozen=True)
class Settings:
    """NMS_TRT's fields, checked."""

    order: tuple[int, ...]
    share: bool
    in_target: bool
    background: int
    classes: int
    top_k: int
    keep_top_k: int
    threshold: float
    iou: float
    sigmoid: bool
    normalized: bool
    code: int
    agnostic: bool

    @property
    def skip(self) -> int:
        """The background class id, or numClasses when no class is background."""
        return self.background if 0 <= self.background < self.classes else self.classes

    @property
    def slots(self) -> int:
        """Classes that go through NMS (all but the background)."""
        return self.classes - (1 if self.skip < self.classes else 0)

    @property
    def loc_classes(self) -> int:
        """Box sets per prior in loc."""
        return 1 if self.share else self.classes


def settings(fields: Mapping[str, Any]) -> Settings:
    """The fields as Settings; GpuKernelError for values the kernel cannot take."""
    get = lambda name: scalar_field(fields, NAME, name)  # noqa: E731
    order = tuple(int(v) for v in (fields.get("inputOrder") or [0, 1, 2]))
    if sorted(order) != [0, 1, 2]:
        raise GpuKernelError(f"{NAME}: inputOrder must be a permutation of 0, 1, 2, got {order}")
    s = Settings(order, bool(int(get("shareLocation"))), bool(int(get("varianceEncodedInTarget"))),
                 int(get("backgroundLabelId")), int(get("numClasses")), int(get("topK")),
                 int(get("keepTopK")), float(get("confidenceThreshold")),
                 float(get("nmsThreshold")), bool(int(_opt(fields, "confSigmoid", 0))),
                 bool(int(_opt(fields, "isNormalized", 1))), int(_opt(fields, "codeType", 1)),
                 bool(int(_opt(fields, "isBatchAgnostic", 1))))  # fmt: skip
    if s.classes < 1 or s.top_k < 1 or s.keep_top_k < 1:
        raise GpuKernelError(f"{NAME}: numClasses, topK and keepTopK must be >= 1, got "
                             f"{s.classes}, {s.top_k}, {s.keep_top_k}")  # fmt: skip
    if s.code not in (1, 2, 3, 4):
        raise GpuKernelError(f"{NAME}: codeType {s.code} is unknown (1..4)")
    if math.isnan(s.threshold) or math.isnan(s.iou):
        raise GpuKernelError(f"{NAME}: confidenceThreshold and nmsThreshold must be numbers")
    return s


def geometry(s: Settings, shapes: list[Shape]) -> tuple[int, int | None, int | None]:
    """(batch or -1, priors P or None, prior sets or None) of loc, conf, priors (in inputOrder);
    GpuKernelError where the known dims do not fit."""
    loc, conf, priors = (shapes[i] for i in s.order)
    if len(loc) < 1 or len(conf) < 1:
        raise GpuKernelError(f"{NAME}: loc {loc} and conf {conf} must have a batch dim")
    batch = loc[0]
    if batch >= 0 and conf[0] >= 0 and conf[0] != batch:
        raise GpuKernelError(f"{NAME}: loc {loc} and conf {conf} differ in batch")
    if any(d < 0 for d in loc[1:]):
        return batch, None, None
    per = math.prod(loc[1:])
    if per % (s.loc_classes * 4):
        raise GpuKernelError(f"{NAME}: loc {loc} does not hold {s.loc_classes} box(es) per prior")
    count = per // (s.loc_classes * 4)
    if all(d >= 0 for d in conf[1:]) and math.prod(conf[1:]) != count * s.classes:
        raise GpuKernelError(f"{NAME}: conf {conf} does not hold {s.classes} scores for each of "
                             f"{count} priors")  # fmt: skip
    if any(d < 0 for d in priors):
        return batch, count, None
    size = math.prod(priors)
    if count == 0 or size % (8 * count):
        raise GpuKernelError(f"{NAME}: priors {priors} are not [*, 2, {count * 4}]")
    sets = size // (8 * count)
    if not s.agnostic and sets != 1 and batch >= 0 and sets < batch:
        raise GpuKernelError(f"{NAME}: {sets} prior sets for a batch of {batch}")
    return batch, count, sets


def check(shapes: list[Shape], dtypes: list[str], fields: Mapping[str, Any]) -> None:
    """loc, conf, priors float32 (in inputOrder) whose known dims fit the fields."""
    float32_inputs(NAME, ("loc", "conf", "priors"), dtypes)
    s = settings(fields)
    _, count, _ = geometry(s, shapes)
    if count is not None and min(count, s.top_k) > nms.MAX_CANDIDATES:
        raise GpuKernelError(f"{NAME}: topK {s.top_k} over {count} priors is above "
                             f"{nms.MAX_CANDIDATES}")  # fmt: skip


def run(cp: Any, inputs: list[Any], outputs: list[Any], fields: Mapping[str, Any]) -> None:
    """detections [N, 1, keepTopK, 7] and keep_count [N, 1, 1, 1] int32, on the current stream."""
    s = settings(fields)
    loc, conf, priors = (cp.ascontiguousarray(inputs[i]) for i in s.order)
    det, count_out = outputs
    batch, count, sets = geometry(s, [tuple(inputs[i].shape) for i in range(3)])
    if count is None or sets is None:
        raise GpuKernelError(f"{NAME}: input shapes must be known to run")
    if det.shape != (batch, 1, s.keep_top_k, 7) or count_out.dtype != np.int32 \
            or count_out.size != batch or not det.flags.c_contiguous \
            or not count_out.flags.c_contiguous:  # fmt: skip
        raise GpuKernelError(f"{NAME}: outputs must be contiguous [{batch}, 1, {s.keep_top_k}, 7] "
                             f"float32 and [{batch}, 1, 1, 1] int32, got {det.shape}, "
                             f"{count_out.shape} {count_out.dtype}")  # fmt: skip
    slots, length = s.slots, min(s.top_k, count)
    segments = batch * slots
    mod = nms.module(cp, SOURCE, KERNELS)
    layout = nms.key_layout(NAME, segments, count)
    keys = cp.empty((segments * count,), dtype=cp.uint64)
    nms.launch_1d(cp, mod.get_function("nms_trt_keys"), keys.size,
                  (conf, keys, np.int64(keys.size), np.int32(count), np.int32(s.classes),
                   np.int32(slots), np.int32(s.skip), np.int32(s.sigmoid), layout.seg_shift,
                   layout.low))  # fmt: skip
    nms.sort_keys(keys, layout)
    cand = cp.empty((segments, length, 4), dtype=cp.float32)
    counts = cp.zeros((segments,), dtype=cp.int32)
    nms.launch_1d(cp, mod.get_function("nms_trt_gather"), segments * length,
                  (keys, loc, priors, cand, counts, np.int64(segments * length), np.int32(count),
                   np.int32(length), np.int32(slots), np.int32(s.skip),
                   np.int32(s.loc_classes), np.int32(sets), np.int32(s.agnostic),
                   np.int32(s.code), np.int32(s.in_target), np.float32(s.threshold),
                   layout.low))  # fmt: skip
    overlap = "caffe" if s.normalized else "caffe_pixel"
    keep_at, kept = nms.suppress(cp, NAME, cand, counts, s.iou, overlap, s.keep_top_k)
    cap = int(keep_at.shape[1])
    merged = nms.key_layout(NAME, batch, slots, length)
    rank_bits = nms.bits_for(length)
    keys2 = cp.empty((segments * cap,), dtype=cp.uint64)
    nms.launch_1d(cp, mod.get_function("nms_trt_merge"), keys2.size,
                  (keys, keep_at, kept, keys2, np.int64(keys2.size), np.int32(count),
                   np.int32(cap), np.int32(slots), layout.low, merged.seg_shift, merged.low,
                   np.int32(rank_bits)))  # fmt: skip
    nms.sort_keys(keys2, merged)
    total = batch * s.keep_top_k
    nms.launch_1d(cp, mod.get_function("nms_trt_write"), total,
                  (keys2, cand, det, count_out, np.int64(total), np.int32(s.keep_top_k),
                   np.int32(slots * cap), np.int32(length), np.int32(slots), np.int32(s.skip),
                   merged.low, np.int32(rank_bits)))  # fmt: skip


NMS_TRT = Kernel(run, check)
