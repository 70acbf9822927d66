"""CUDA C++ source of the plugin kernels, compiled at first use by CuPy's NVRTC (no headers needed).

Every kernel is a template over the storage type `T`: `float` (float32) or `half_t` (float16 bits
as `unsigned short`, converted with PTX `cvt`, so no `cuda_fp16.h` is needed). Arithmetic is in
float32 with IEEE division and square root (NVRTC's defaults), as the NumPy references compute.
The memory-bound fast paths move 16-byte vectors (`uint4`) so that every warp-wide load and store
fills whole 32-byte sectors; element-wise kernels are the fallback for odd shapes and alignments.
"""

from __future__ import annotations

STORAGE = {"float32": "float", "float16": "half_t"}
"""dtype name -> the template argument of the kernels."""

KERNEL_NAMES = ("lrelu", "resize_nearest", "l2norm", "l2norm_cached")
INT_SCALES = (2, 4)
"""Integer resize factors with a vectorised kernel (`resize_nearest_int<T, S>`)."""
L2NORM_CACHE = 16
"""Values of x per thread that `l2norm_cached` keeps in registers."""
COLS_CACHE = 8
"""16-byte vectors of x per thread that `l2norm_cols` keeps in registers."""
COLS_THREADS = 512
"""The most threads of an `l2norm_cols` block (its `__launch_bounds__` is 1024: at most 64
registers a thread, which the launch-shape sweep on the H100 found fastest)."""
ROWS_CACHE = (1, 2, 4, 8)
"""Instances `l2norm_rows<T, N>`: at most N 16-byte vectors of a row per thread."""
ROWS_THREADS = 1024
"""The most threads of an `l2norm_rows` block (its `__launch_bounds__`) and per row."""

HALF = r"""
typedef unsigned short half_t;

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(half_t v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
    return f;
}
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ half_t from_f<half_t>(float v) {
    half_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
"""
"""float16 as `half_t` bits with `to_f`/`from_f<T>` conversions (PTX `cvt`), so no kernel
needs `cuda_fp16.h`; the start of every kernel source that has a float16 path."""

SOURCE = HALF + r"""
// y = x > 0 ? x : x * slope. With vec != 0 (both pointers 16-byte aligned) the body moves
// 16-byte chunks; the tail (and everything when vec == 0) goes element by element.
template <typename T>
__global__ void lrelu(const T* x, T* y, long long n, float slope, int vec) {
    constexpr int V = 16 / sizeof(T);
    const long long tid = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long nvec = vec ? n / V : 0;
    const uint4* xv = reinterpret_cast<const uint4*>(x);
    uint4* yv = reinterpret_cast<uint4*>(y);
    for (long long i = tid; i < nvec; i += stride) {
        uint4 raw = __ldg(xv + i);
        T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
        for (int k = 0; k < V; ++k) {
            const float v = to_f(e[k]);
            e[k] = from_f<T>(v > 0.f ? v : v * slope);
        }
        yv[i] = raw;
    }
    for (long long i = nvec * V + tid; i < n; i += stride) {
        const float v = to_f(x[i]);
        y[i] = from_f<T>(v > 0.f ? v : v * slope);
    }
}

// NCHW (any leading dims folded into `rows / OH` planes): output pixel (oy, ox) reads input
// (min(int(oy / scale), H - 1), min(int(ox / scale), W - 1)), the division in float32.
// threadIdx.y/blockIdx.y walk output rows, threadIdx.x/blockIdx.x walk columns.
template <typename T>
__global__ void resize_nearest(const T* __restrict__ x, T* __restrict__ y, long long rows,
                               int H, int W, int OH, int OW, float scale) {
    const long long row_stride = (long long)gridDim.y * blockDim.y;
    for (long long row = blockIdx.y * (long long)blockDim.y + threadIdx.y; row < rows;
         row += row_stride) {
        const long long plane = row / OH;
        const int oy = (int)(row - plane * OH);
        const int iy = min((int)((float)oy / scale), H - 1);
        const T* src = x + (plane * H + iy) * (long long)W;
        T* dst = y + row * (long long)OW;
        for (int ox = blockIdx.x * blockDim.x + threadIdx.x; ox < OW;
             ox += gridDim.x * blockDim.x) {
            const int ix = min((int)((float)ox / scale), W - 1);
            dst[ox] = src[ix];
        }
    }
}

// 16 bytes of T <-> V = 16 / sizeof(T) float32 values (element 0 in the low bits).
template <typename T> __device__ __forceinline__ void unpack(uint4 v, float* f);
template <> __device__ __forceinline__ void unpack<float>(uint4 v, float* f) {
    f[0] = __uint_as_float(v.x);
    f[1] = __uint_as_float(v.y);
    f[2] = __uint_as_float(v.z);
    f[3] = __uint_as_float(v.w);
}
template <> __device__ __forceinline__ void unpack<half_t>(uint4 v, float* f) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[2 * i] = to_f((half_t)(w[i] & 0xffffu));
        f[2 * i + 1] = to_f((half_t)(w[i] >> 16));
    }
}
template <typename T> __device__ __forceinline__ uint4 pack(const float* f);
template <> __device__ __forceinline__ uint4 pack<float>(const float* f) {
    uint4 v;
    v.x = __float_as_uint(f[0]);
    v.y = __float_as_uint(f[1]);
    v.z = __float_as_uint(f[2]);
    v.w = __float_as_uint(f[3]);
    return v;
}
template <> __device__ __forceinline__ uint4 pack<half_t>(const float* f) {
    unsigned w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
        w[i] = (unsigned)from_f<half_t>(f[2 * i]) | ((unsigned)from_f<half_t>(f[2 * i + 1]) << 16);
    uint4 v;
    v.x = w[0];
    v.y = w[1];
    v.z = w[2];
    v.w = w[3];
    return v;
}

// The 16-byte output vector i of resize_nearest_int: input chunk i (V / S values of T, 16 / S
// bytes) with each value repeated S times. Half values are moved as bits (__byte_perm copies
// the low or the high 16 bits into both halves of a word), so the copy is exact.
template <typename T, int S>
__device__ __forceinline__ uint4 repeat_chunk(const T* __restrict__ x, long long i) {
    static_assert(S == 2 || S == 4, "vectorised resize for scale 2 and 4 only");
    uint4 o;
    if constexpr (S == 2) {
        const uint2 v = __ldg(reinterpret_cast<const uint2*>(x) + i);
        if constexpr (sizeof(T) == 4) {
            o.x = v.x; o.y = v.x; o.z = v.y; o.w = v.y;
        } else {
            o.x = __byte_perm(v.x, 0u, 0x1010); o.y = __byte_perm(v.x, 0u, 0x3232);
            o.z = __byte_perm(v.y, 0u, 0x1010); o.w = __byte_perm(v.y, 0u, 0x3232);
        }
    } else {
        const unsigned v = __ldg(reinterpret_cast<const unsigned*>(x) + i);
        if constexpr (sizeof(T) == 4) {
            o.x = v; o.y = v; o.z = v; o.w = v;
        } else {
            o.x = __byte_perm(v, 0u, 0x1010); o.y = o.x;
            o.z = __byte_perm(v, 0u, 0x3232); o.w = o.z;
        }
    }
    return o;
}

// Integer scale S (2 or 4), W a multiple of V / S (V = 16 / sizeof(T)), x aligned to 16 / S
// bytes and y to 16. Item i is output vector q = i % owv (owv = S * W / V vectors per output
// row) of input row r = i / owv: it reads the V / S inputs that vector repeats, which are input
// chunk i (so the reads are one linear sweep), and stores the vector in output rows r*S ..
// r*S+S-1 (OH = H*S, so no plane arithmetic). Consecutive threads thus store consecutive 16-byte
// vectors: every store instruction of a warp fills whole 32-byte sectors, none half of one.
// Output column o repeats input floor(o / S) = int(float(o) / S) for o < 2^24 (S a power of 2).
template <typename T, int S>
__global__ void resize_nearest_int(const T* __restrict__ x, T* __restrict__ y, long long n,
                                   int owv) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    uint4* yv = reinterpret_cast<uint4*>(y);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += stride) {
        const long long r = i / owv;
        const uint4 out = repeat_chunk<T, S>(x, i);
        uint4* dst = yv + i + r * (S - 1) * (long long)owv;  // row r*S, column vector i - r*owv
#pragma unroll
        for (int dy = 0; dy < S; ++dy) dst[dy * (long long)owv] = out;
    }
}

// As l2norm below, for K <= 16 * blockDim.y: each thread keeps its (at most 16) values of x in
// registers between the sum and the scaling, so x is read from memory once.
template <typename T>
__global__ void l2norm_cached(const T* __restrict__ x, T* __restrict__ y, long long outer, int K,
                              long long inner, float eps) {
    constexpr int CACHE = 16;
    extern __shared__ float partial[];
    const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
    const long long tiles = (inner + TX - 1) / TX;
    const long long o = blockIdx.x / tiles;
    const long long i = (blockIdx.x - o * tiles) * TX + tx;
    const bool live = i < inner;
    const long long base = o * (long long)K * inner + i;
    float v[CACHE];
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < CACHE; ++j) {
        const int k = ty + j * TY;
        v[j] = (live && k < K) ? to_f(x[base + k * inner]) : 0.f;
    }
#pragma unroll
    for (int j = 0; j < CACHE; ++j) acc = fmaf(v[j], v[j], acc);
    partial[ty * TX + tx] = acc;
    __syncthreads();
    for (int s = TY / 2; s > 0; s >>= 1) {
        if (ty < s) partial[ty * TX + tx] += partial[(ty + s) * TX + tx];
        __syncthreads();
    }
    const float total = partial[tx];
    const float denom = sqrtf(total < eps ? eps : total);  // NaN stays NaN, as np.maximum
#pragma unroll
    for (int j = 0; j < CACHE; ++j) {
        const int k = ty + j * TY;
        if (live && k < K) y[base + k * inner] = from_f<T>(v[j] / denom);
    }
}

// x viewed as [outer, K, inner]; y = x / sqrt(max(sum_k x^2, eps)). A block owns blockDim.x
// adjacent inner columns of one outer index; its blockDim.y thread rows split K, then a
// shared-memory tree (blockDim.y a power of two) adds the partial sums.
template <typename T>
__global__ void l2norm(const T* __restrict__ x, T* __restrict__ y, long long outer, int K,
                       long long inner, float eps) {
    extern __shared__ float partial[];
    const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
    const long long tiles = (inner + TX - 1) / TX;
    const long long o = blockIdx.x / tiles;
    const long long i = (blockIdx.x - o * tiles) * TX + tx;
    const bool live = i < inner;
    const long long base = o * (long long)K * inner + i;
    float acc = 0.f;
    if (live) {
#pragma unroll 4
        for (int k = ty; k < K; k += TY) {
            const float v = to_f(x[base + k * inner]);
            acc = fmaf(v, v, acc);
        }
    }
    partial[ty * TX + tx] = acc;
    __syncthreads();
    for (int s = TY / 2; s > 0; s >>= 1) {
        if (ty < s) partial[ty * TX + tx] += partial[(ty + s) * TX + tx];
        __syncthreads();
    }
    const float total = partial[tx];
    const float denom = sqrtf(total < eps ? eps : total);  // NaN stays NaN, as np.maximum
    if (live) {
#pragma unroll 4
        for (int k = ty; k < K; k += TY) {
            const long long at = base + k * inner;
            y[at] = from_f<T>(to_f(x[at]) / denom);
        }
    }
}

// x viewed as [outer, K, inner], inner = innerv * V (V = 16 / sizeof(T)), x and y 16-byte
// aligned, K <= R * blockDim.y: a block owns TX = blockDim.x adjacent 16-byte column vectors
// of one outer index (TX * V columns), its TY = blockDim.y thread rows split K, and each thread
// keeps its (at most R) vectors of x in registers between the sum and the scaling, so x is read
// once with 16-byte loads. The per-column partial sums meet in shared memory ([TY][TX * V]), and
// one thread per column adds its TY partials.
template <typename T, int R>
__global__ void __launch_bounds__(1024) l2norm_cols(const T* __restrict__ x, T* __restrict__ y,
                                                   int K, long long innerv, float eps) {
    constexpr int V = 16 / sizeof(T);
    extern __shared__ float partial[];
    const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
    const int C = TX * V;
    const long long tiles = (innerv + TX - 1) / TX;
    const long long o = blockIdx.x / tiles;
    const long long c = (blockIdx.x - o * tiles) * TX + tx;
    const bool live = c < innerv;
    const long long base = o * K * innerv + c;
    const uint4* xv = reinterpret_cast<const uint4*>(x) + base;
    uint4 v[R];
#pragma unroll
    for (int j = 0; j < R; ++j) {
        const int k = ty + j * TY;
        if (live && k < K) {
            v[j] = __ldg(xv + k * innerv);
        } else {
            v[j].x = 0u; v[j].y = 0u; v[j].z = 0u; v[j].w = 0u;  // 0 bits: 0.0 in both dtypes
        }
    }
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = 0.f;
#pragma unroll
    for (int j = 0; j < R; ++j) {
        float f[V];
        unpack<T>(v[j], f);
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] = fmaf(f[e], f[e], acc[e]);
    }
#pragma unroll
    for (int e = 0; e < V; ++e) partial[ty * C + tx * V + e] = acc[e];
    __syncthreads();
    for (int col = ty * TX + tx; col < C; col += TX * TY) {  // only this thread reads `col`
        float total = 0.f;
        for (int r = 0; r < TY; ++r) total += partial[r * C + col];
        partial[col] = total;
    }
    __syncthreads();
    float denom[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
        const float total = partial[tx * V + e];
        denom[e] = sqrtf(total < eps ? eps : total);  // NaN stays NaN, as np.maximum
    }
    if (!live) return;
    uint4* yv = reinterpret_cast<uint4*>(y) + base;
#pragma unroll
    for (int j = 0; j < R; ++j) {
        const int k = ty + j * TY;
        if (k < K) {
            float f[V];
            unpack<T>(v[j], f);
#pragma unroll
            for (int e = 0; e < V; ++e) f[e] = f[e] / denom[e];
            yv[k * innerv] = pack<T>(f);
        }
    }
}

// Rows of K = nvec * V contiguous values (the last axis; x and y 16-byte aligned): TPR =
// blockDim.x threads (a multiple of 32, at most 1024) own a row, threadIdx.y picks the block's
// row. Thread t keeps the row's vectors t, t + TPR, ... (at most N) in registers, so x is read
// once with 16-byte loads; warp shuffles add the row's sum, and shared memory adds the warps'
// sums when a row has several warps.
template <typename T, int N>
__global__ void __launch_bounds__(1024) l2norm_rows(const T* __restrict__ x, T* __restrict__ y,
                                                    long long rows, int nvec, float eps) {
    constexpr int V = 16 / sizeof(T);
    __shared__ float warp_sums[32];
    const int t = threadIdx.x, TPR = blockDim.x;
    const long long row = blockIdx.x * (long long)blockDim.y + threadIdx.y;
    const bool live = row < rows;
    const uint4* xr = reinterpret_cast<const uint4*>(x) + row * nvec;
    uint4 v[N];
#pragma unroll
    for (int j = 0; j < N; ++j) {
        const int c = t + j * TPR;
        if (live && c < nvec) {
            v[j] = __ldg(xr + c);
        } else {
            v[j].x = 0u; v[j].y = 0u; v[j].z = 0u; v[j].w = 0u;
        }
    }
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
        float f[V];
        unpack<T>(v[j], f);
#pragma unroll
        for (int e = 0; e < V; ++e) acc = fmaf(f[e], f[e], acc);
    }
#pragma unroll
    for (int s = 16; s > 0; s >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, s);
    if (TPR > 32) {  // the same for the whole block, so every thread meets the barrier
        const int first = (threadIdx.y * TPR) >> 5;  // the row's first warp in the block
        if ((t & 31) == 0) warp_sums[first + (t >> 5)] = acc;
        __syncthreads();
        acc = 0.f;
        for (int w = 0; w < (TPR >> 5); ++w) acc += warp_sums[first + w];
    }
    if (!live) return;
    const float denom = sqrtf(acc < eps ? eps : acc);  // NaN stays NaN, as np.maximum
    uint4* yr = reinterpret_cast<uint4*>(y) + row * nvec;
#pragma unroll
    for (int j = 0; j < N; ++j) {
        const int c = t + j * TPR;
        if (c < nvec) {
            float f[V];
            unpack<T>(v[j], f);
#pragma unroll
            for (int e = 0; e < V; ++e) f[e] = f[e] / denom;
            yr[c] = pack<T>(f);
        }
    }
}
"""


def name_expressions() -> list[str]:
    """Every template instance the module compiles, e.g. `lrelu<float>`."""
    names = [f"{kernel}<{arg}>" for kernel in KERNEL_NAMES for arg in STORAGE.values()]
    for arg in STORAGE.values():
        names += [f"resize_nearest_int<{arg}, {s}>" for s in INT_SCALES]
        names.append(f"l2norm_cols<{arg}, {COLS_CACHE}>")
        names += [f"l2norm_rows<{arg}, {n}>" for n in ROWS_CACHE]
    return names
