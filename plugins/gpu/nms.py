"""Batched greedy NMS on the GPU: the primitive the four NMS-type plugins share.

Greedy NMS visits boxes best first and keeps a box unless a kept box overlaps it by more than the
threshold. Here that runs over S independent segments at once (an image, or an image and class),
each a run of L boxes already sorted best first, of which the first `counts[s]` take part:

* `nms_mask` (one 64-thread block per 64x64 tile of a segment): bit j of word w of row i says
  whether box i suppresses box 64w + j, a later box of the segment (overlap > threshold and, when
  labels are given, the same label). Fully parallel.
* `nms_walk` (one block per segment): walks the boxes 64 at a time without leaving the device;
  one thread settles the 64 decisions from the diagonal tile, then the whole block ORs the rows
  of the boxes just kept into the `removed` bits of the later words (coalesced reads). It writes
  the kept positions in order and their count, and stops at `limit` kept.

Sorting uses 64-bit integer keys (`KeyLayout`): segment, then the score as an order-preserving
32-bit code (best first, NaN last, -0 equal to +0, as the references' stable argsort of -score),
then tie-break bits (class, index). Sorting these plain integers (CuPy's radix sort, no host
synchronisation) reproduces the references' stable order exactly.

The overlap measures are those of the references, computed in float32 with explicitly rounded
operations (no fused multiply-add), so they agree bit for bit: `iou` (Mask R-CNN corners, no +1),
`caffe` / `caffe_pixel` (SSD's jaccardOverlap, +0 / +1), `pixel` (Faster R-CNN, +1) and `onnx`
(onnxruntime's NonMaxSuppression, for BatchedNMS_Surgery: 0 wherever it would not suppress, so
any threshold in [0, 1] decides as onnxruntime does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.gpu.runtime import GpuKernelError, compiled, sm_count

OVERLAPS = {"iou": 0, "caffe": 1, "caffe_pixel": 2, "pixel": 3, "onnx": 4}
"""Overlap measure name -> the `kind` the kernels take."""

MAX_CANDIDATES = 32768
"""Most boxes one segment may hold (its mask is L * L / 8 bytes: 128 MiB here)."""

THREADS = 256

HELPERS = r"""
typedef unsigned long long u64;

// NumPy's maximum/minimum: NaN wins.
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float nan_min(float a, float b) { return (a < b || a != a) ? a : b; }
__device__ __forceinline__ float clip(float v, float lo, float hi) {
    return nan_min(nan_max(v, lo), hi);
}

// Score -> 32-bit code, ascending code = descending score; NaN last, -0 the same as +0.
__device__ __forceinline__ unsigned int desc_code(float f) {
    if (f != f) return 0xFFFFFFFFu;
    unsigned int u = __float_as_uint(f);
    if (u == 0x80000000u) u = 0u;
    const unsigned int asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~asc;
}
__device__ __forceinline__ float code_score(unsigned int code) {
    const unsigned int asc = ~code;
    return __uint_as_float((asc & 0x80000000u) ? (asc & 0x7FFFFFFFu) : ~asc);
}
// The score code of a key whose low `low_bits` bits are tie-breaks.
__device__ __forceinline__ unsigned int key_code(u64 key, int low_bits) {
    return (unsigned int)(key >> low_bits);
}
__device__ __forceinline__ u64 make_key(u64 segment, int seg_shift, unsigned int code,
                                        int low_bits, u64 low) {
    const u64 seg = seg_shift < 64 ? (segment << seg_shift) : 0ull;
    return seg | ((u64)code << low_bits) | low;
}
"""

SOURCE = HELPERS + r"""
// Overlap of box a (the earlier, kept one) with box b, as the NumPy references compute it.
// kind 0: IoU of (a1, b1, a2, b2) corners, zero when the intersection is empty (Mask R-CNN);
// 1 / 2: Caffe's jaccardOverlap, corners sorted, +0 / +1 on every side (SSD);
// 3: IoU with +1 on every side, the intersection floored at 0 (Faster R-CNN);
// 4: onnxruntime's NonMaxSuppression test, 0 where it never suppresses (BatchedNMS_Surgery).
__device__ __forceinline__ float overlap(float4 a, float4 b, int kind) {
    if (kind == 0) {
        const float s0 = __fsub_rn(nan_min(a.z, b.z), nan_max(a.x, b.x));
        const float s1 = __fsub_rn(nan_min(a.w, b.w), nan_max(a.y, b.y));
        if (s0 < 0.f || s1 < 0.f) return 0.f;
        const float inter = __fmul_rn(s0, s1);
        const float area_a = __fmul_rn(__fsub_rn(a.z, a.x), __fsub_rn(a.w, a.y));
        const float area_b = __fmul_rn(__fsub_rn(b.z, b.x), __fsub_rn(b.w, b.y));
        return __fdiv_rn(inter, __fsub_rn(__fadd_rn(area_a, area_b), inter));
    }
    if (kind == 4) {
        // onnxruntime's NonMaxSuppression: corners sorted per axis; no overlap unless both
        // extents and the intersection area are positive; IoU = inter / (areas - inter).
        const float ax0 = a.x >= a.z ? a.z : a.x, ax1 = a.x >= a.z ? a.x : a.z;
        const float ay0 = a.y >= a.w ? a.w : a.y, ay1 = a.y >= a.w ? a.y : a.w;
        const float bx0 = b.x >= b.z ? b.z : b.x, bx1 = b.x >= b.z ? b.x : b.z;
        const float by0 = b.y >= b.w ? b.w : b.y, by1 = b.y >= b.w ? b.y : b.w;
        const float ix0 = ax0 < bx0 ? bx0 : ax0, ix1 = bx1 < ax1 ? bx1 : ax1;
        const float iy0 = ay0 < by0 ? by0 : ay0, iy1 = by1 < ay1 ? by1 : ay1;
        if (ix1 <= ix0 || iy1 <= iy0) return 0.f;
        const float inter = __fmul_rn(__fsub_rn(ix1, ix0), __fsub_rn(iy1, iy0));
        if (inter <= 0.f) return 0.f;
        const float area_a = __fmul_rn(__fsub_rn(ax1, ax0), __fsub_rn(ay1, ay0));
        const float area_b = __fmul_rn(__fsub_rn(bx1, bx0), __fsub_rn(by1, by0));
        return __fdiv_rn(inter, __fsub_rn(__fadd_rn(area_b, area_a), inter));
    }
    if (kind == 3) {
        const float w = nan_max(__fadd_rn(__fsub_rn(nan_min(a.z, b.z), nan_max(a.x, b.x)), 1.f),
                                0.f);
        const float h = nan_max(__fadd_rn(__fsub_rn(nan_min(a.w, b.w), nan_max(a.y, b.y)), 1.f),
                                0.f);
        const float inter = __fmul_rn(w, h);
        const float area_a = __fmul_rn(__fadd_rn(__fsub_rn(a.z, a.x), 1.f),
                                       __fadd_rn(__fsub_rn(a.w, a.y), 1.f));
        const float area_b = __fmul_rn(__fadd_rn(__fsub_rn(b.z, b.x), 1.f),
                                       __fadd_rn(__fsub_rn(b.w, b.y), 1.f));
        return __fdiv_rn(inter, __fsub_rn(__fadd_rn(area_a, area_b), inter));
    }
    const float p = kind == 2 ? 1.f : 0.f;
    const float ax0 = nan_min(a.x, a.z), ay0 = nan_min(a.y, a.w);
    const float ax1 = nan_max(a.x, a.z), ay1 = nan_max(a.y, a.w);
    const float bx0 = nan_min(b.x, b.z), by0 = nan_min(b.y, b.w);
    const float bx1 = nan_max(b.x, b.z), by1 = nan_max(b.y, b.w);
    const float iw = __fadd_rn(__fsub_rn(nan_min(ax1, bx1), nan_max(ax0, bx0)), p);
    const float ih = __fadd_rn(__fsub_rn(nan_min(ay1, by1), nan_max(ay0, by0)), p);
    if (!(iw > 0.f && ih > 0.f)) return 0.f;
    const float inter = __fmul_rn(iw, ih);
    const float area_a = __fmul_rn(__fadd_rn(__fsub_rn(ax1, ax0), p),
                                   __fadd_rn(__fsub_rn(ay1, ay0), p));
    const float area_b = __fmul_rn(__fadd_rn(__fsub_rn(bx1, bx0), p),
                                   __fadd_rn(__fsub_rn(by1, by0), p));
    return __fdiv_rn(inter, __fsub_rn(__fadd_rn(area_a, area_b), inter));
}

// grid (words, words, segments), block 64. Tile (row block blockIdx.y, column block
// blockIdx.x) of segment blockIdx.z; tiles left of the diagonal and beyond counts[s] are never
// read by nms_walk, so they are not written. labels may be null (no label check).
__global__ void nms_mask(const float4* __restrict__ boxes, const int* __restrict__ labels,
                         const int* __restrict__ counts, u64* __restrict__ mask, int L, int words,
                         float threshold, int kind) {
    const int s = blockIdx.z, rb = blockIdx.y, cb = blockIdx.x, t = threadIdx.x;
    const int n = min(counts[s], L);
    const int row0 = rb * 64, col0 = cb * 64;
    if (cb < rb || row0 >= n || col0 >= n) return;
    const int rows = min(64, n - row0), cols = min(64, n - col0);
    __shared__ float4 tile[64];
    __shared__ int tile_label[64];
    const long long base = (long long)s * L;
    if (t < cols) {
        tile[t] = boxes[base + col0 + t];
        tile_label[t] = labels ? labels[base + col0 + t] : 0;
    }
    __syncthreads();
    if (t >= rows) return;
    const float4 a = boxes[base + row0 + t];
    const int label = labels ? labels[base + row0 + t] : 0;
    u64 bits = 0ull;
    for (int j = (cb == rb ? t + 1 : 0); j < cols; ++j) {
        if (tile_label[j] == label && overlap(a, tile[j], kind) > threshold) bits |= 1ull << j;
    }
    mask[(base + row0 + t) * words + cb] = bits;
}

// grid (segments), block 256, dynamic shared memory words * 8 bytes. Greedy walk of segment
// blockIdx.x: keep[s, 0:kept[s]] = positions kept, in order, at most `limit`.
__global__ void nms_walk(const u64* __restrict__ mask, const int* __restrict__ counts, int L,
                         int words, int limit, int cap, int* __restrict__ keep,
                         int* __restrict__ kept) {
    extern __shared__ u64 removed[];
    __shared__ u64 diag[64];
    __shared__ u64 chosen;
    const int s = blockIdx.x, tid = threadIdx.x;
    const int n = min(counts[s], L);
    const int nw = (n + 63) / 64;
    const u64* m = mask + (long long)s * L * words;
    for (int w = tid; w < words; w += blockDim.x) removed[w] = 0ull;
    __syncthreads();
    int total = 0;  // the same in every thread
    for (int w = 0; w < nw && total < limit; ++w) {
        const int base = w * 64, rows = min(64, n - base);
        if (tid < rows) diag[tid] = m[(long long)(base + tid) * words + w];
        __syncthreads();
        if (tid == 0) {
            const u64 valid = rows == 64 ? ~0ull : ((1ull << rows) - 1ull);
            u64 cur = removed[w], bits = 0ull, avail = valid & ~cur;
            int t = total;
            while (avail && t < limit) {
                const int b = __ffsll((long long)avail) - 1;
                bits |= 1ull << b;
                ++t;
                cur |= diag[b];
                avail = b == 63 ? 0ull : (valid & ~cur & (~0ull << (b + 1)));
            }
            chosen = bits;
        }
        __syncthreads();
        const u64 bits = chosen;
        if (tid < 64 && ((bits >> tid) & 1ull)) {
            keep[(long long)s * cap + total + __popcll(bits & ((1ull << tid) - 1ull))] = base + tid;
        }
        total += __popcll(bits);
        // Work item = (later word j, group of 8 rows): consecutive threads read consecutive
        // words of a row (coalesced), 8 independent loads each, one shared atomic OR.
        const int rest = nw - w - 1;
        if (total < limit && bits) {
            for (int item = tid; item < rest * 8; item += blockDim.x) {
                const int j = w + 1 + item % rest, g = item / rest;
                const u64* col = m + (long long)(base + g * 8) * words + j;
                u64 v = 0ull;
#pragma unroll
                for (int b = 0; b < 8; ++b) {
                    if ((bits >> (g * 8 + b)) & 1ull) v |= col[(long long)b * words];
                }
                if (v) atomicOr(&removed[j], v);
            }
        }
        __syncthreads();
    }
    if (tid == 0) kept[s] = total;
}

// One image, any number of classes (the torchvision-style batched NMS; see `batched_nms`):
// key = score code, index.
__global__ void score_keys(const float* __restrict__ scores, u64* __restrict__ keys, int n,
                           int low_bits) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        keys[i] = make_key(0ull, 64, desc_code(scores[i]), low_bits, (u64)i);
    }
}
__global__ void gather_sorted(const u64* __restrict__ keys, const float4* __restrict__ boxes,
                              const int* __restrict__ labels, float4* __restrict__ sorted_boxes,
                              int* __restrict__ sorted_labels, int* __restrict__ order, int n,
                              int low_bits) {
    const u64 low_mask = (1ull << low_bits) - 1ull;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int k = (int)(keys[i] & low_mask);
        sorted_boxes[i] = boxes[k];
        sorted_labels[i] = labels[k];
        order[i] = k;
    }
}
// out[i] = the input index of the i-th box kept, -1 past the last.
__global__ void keep_to_index(const int* __restrict__ keep, const int* __restrict__ kept,
                              const int* __restrict__ order, int* __restrict__ out, int cap) {
    const int count = kept[0];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cap; i += gridDim.x * blockDim.x) {
        out[i] = i < count ? order[keep[i]] : -1;
    }
}
"""

KERNELS = ("nms_mask", "nms_walk", "score_keys", "gather_sorted", "keep_to_index")


def module(cp: Any, source: str = SOURCE, names: tuple[str, ...] = KERNELS) -> Any:
    """`source` (default: this module's kernels) compiled for the current device."""
    return compiled(source, names, cp.cuda.runtime.getDevice())


def launch_1d(cp: Any, kernel: Any, total: int, args: tuple[Any, ...]) -> None:
    """Launch a grid-stride `kernel` over `total` items (nothing to do when there are none)."""
    if total <= 0:
        return
    blocks = max(1, min(-(-total // THREADS), sm_count(cp.cuda.runtime.getDevice()) * 8))
    kernel((blocks,), (THREADS,), args)


def bits_for(count: int) -> int:
    """Bits that hold the values 0 .. count - 1."""
    return max(0, int(count) - 1).bit_length()


@dataclass(frozen=True)
class KeyLayout:
    """A 64-bit sort key: segment (high bits, when they fit), 32-bit score code, `low_bits` of
    tie-breaks. Keys that do not fit leave the segment out and are sorted one segment at a time."""

    segments: int
    low_bits: int

    @property
    def fits(self) -> bool:
        """Whether the segment fits in the key (one sort of everything)."""
        return bits_for(self.segments) + 32 + self.low_bits <= 64

    @property
    def seg_shift(self) -> np.int32:
        """Where the kernels put the segment; 64: not in the key."""
        return np.int32(32 + self.low_bits if self.fits else 64)

    @property
    def low(self) -> np.int32:
        """`low_bits` as a kernel argument."""
        return np.int32(self.low_bits)


def key_layout(plugin: str, segments: int, *tie_counts: int) -> KeyLayout:
    """The layout whose tie-break bits hold values below each of `tie_counts`, high to low."""
    low = sum(bits_for(c) for c in tie_counts)
    if low > 31:
        raise GpuKernelError(f"{plugin}: {' x '.join(map(str, tie_counts))} candidates per "
                             "segment are too many to sort (at most 2^31)")  # fmt: skip
    return KeyLayout(int(segments), low)


def sort_keys(keys: Any, layout: KeyLayout) -> None:
    """Sort `keys` ([segments * per] uint64) in place, each segment's run ascending."""
    if keys.size < 2:
        return
    if layout.fits:
        keys.sort()
    else:
        keys.reshape(layout.segments, -1).sort(axis=-1)


def suppress(cp: Any, plugin: str, boxes: Any, counts: Any, threshold: float, overlap: str,
             limit: int, labels: Any = None) -> tuple[Any, Any]:  # fmt: skip
    """Greedy NMS of every segment: boxes [S, L, 4] float32 sorted best first, counts [S] int32
    (the first counts[s] boxes take part), labels [S, L] int32 or None. Returns keep [S, cap]
    int32 (positions kept, in order; cap = min(L, limit)) and kept [S] int32 (how many)."""
    segments, length = int(boxes.shape[0]), int(boxes.shape[1])
    if length > MAX_CANDIDATES:
        raise GpuKernelError(f"{plugin}: NMS over {length} boxes per image/class; the GPU "
                             f"kernel takes at most {MAX_CANDIDATES}")  # fmt: skip
    cap = max(0, min(length, int(limit)))
    keep = cp.empty((segments, cap), dtype=cp.int32)
    kept = cp.zeros((segments,), dtype=cp.int32)
    if segments == 0 or length == 0 or limit < 1:
        return keep, kept
    words = -(-length // 64)
    mask = cp.empty((segments, length, words), dtype=cp.uint64)
    mod = module(cp)
    kind, thr = np.int32(OVERLAPS[overlap]), np.float32(threshold)
    null = np.uint64(0)
    for first in range(0, segments, 65535):
        last = min(segments, first + 65535)
        tagged = labels[first:last] if labels is not None else null
        mod.get_function("nms_mask")(
            (words, words, last - first), (64,),
            (boxes[first:last], tagged, counts[first:last], mask[first:last], np.int32(length),
             np.int32(words), thr, kind),
        )  # fmt: skip
    mod.get_function("nms_walk")(
        (segments,), (THREADS,),
        (mask, counts, np.int32(length), np.int32(words), np.int32(limit), np.int32(cap), keep,
         kept),
        shared_mem=words * 8,
    )  # fmt: skip
    return keep, kept


def batched_nms(cp: Any, boxes: Any, scores: Any, labels: Any, threshold: float,
                overlap: str = "iou") -> tuple[Any, Any]:  # fmt: skip
    """torchvision's `batched_nms` on the device, without a host round trip: boxes [n, 4]
    float32, scores [n] float32, labels [n] int32 (boxes of different labels never suppress each
    other). Returns (index [n] int32, kept [1] int32): the first kept[0] entries of index are the
    boxes kept, best first (ties by index), the rest -1."""
    n = int(boxes.shape[0])
    layout = key_layout("batched_nms", 1, n)
    mod = module(cp)
    keys = cp.empty((n,), dtype=cp.uint64)
    launch_1d(cp, mod.get_function("score_keys"), n, (scores, keys, np.int32(n), layout.low))
    sort_keys(keys, layout)
    sorted_boxes = cp.empty((1, n, 4), dtype=cp.float32)
    sorted_labels = cp.empty((1, n), dtype=cp.int32)
    order = cp.empty((n,), dtype=cp.int32)
    launch_1d(cp, mod.get_function("gather_sorted"), n,
              (keys, boxes, labels, sorted_boxes, sorted_labels, order, np.int32(n), layout.low))
    counts = cp.full((1,), n, dtype=cp.int32)
    keep, kept = suppress(cp, "batched_nms", sorted_boxes, counts, threshold, overlap, n,
                          sorted_labels)  # fmt: skip
    index = cp.empty((n,), dtype=cp.int32)
    launch_1d(cp, mod.get_function("keep_to_index"), n, (keep, kept, order, index, np.int32(n)))
    return index, kept
