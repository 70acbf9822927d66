"""CUDA C++ source of the plugin kernels, compiled at first use by CuPy's NVRTC (no headers needed).

Every kernel is a template over the storage type `T`: `float` (float32) or `half_t` (float16 bits
as `unsigned short`, converted with PTX `cvt`, so no `cuda_fp16.h` is needed). Arithmetic is in
float32 with IEEE division and square root (NVRTC's defaults), as the NumPy references compute.
"""

from __future__ import annotations

STORAGE = {"float32": "float", "float16": "half_t"}
"""dtype name -> the template argument of the kernels."""

KERNEL_NAMES = ("lrelu", "resize_nearest", "l2norm", "l2norm_cached")
INT_SCALES = (2, 4)
"""Integer resize factors with a vectorised kernel (`resize_nearest_int<T, S>`)."""
L2NORM_CACHE = 16
"""Values of x per thread that `l2norm_cached` keeps in registers."""

SOURCE = r"""
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

// Integer scale S, W a multiple of V = 16 / sizeof(T), both pointers 16-byte aligned: a thread
// reads V adjacent inputs of input row r (one 16-byte load) and writes their S*V outputs (S
// 16-byte stores) to each of output rows r*S .. r*S+S-1 (OH = H*S, so no plane arithmetic).
// Output column o reads input floor(o / S), which is int(float(o) / S) for o < 2^24.
template <typename T, int S>
__global__ void resize_nearest_int(const T* __restrict__ x, T* __restrict__ y, long long nvec,
                                   int wv) {
    constexpr int V = 16 / sizeof(T);
    const long long stride = (long long)gridDim.x * blockDim.x;
    const uint4* xv = reinterpret_cast<const uint4*>(x);
    uint4* yv = reinterpret_cast<uint4*>(y);
    const long long out_row = (long long)wv * S;  // output row length in vectors
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nvec; i += stride) {
        const long long r = i / wv;
        const int c = (int)(i - r * wv);
        uint4 in = __ldg(xv + i);
        const T* e = reinterpret_cast<const T*>(&in);
        uint4* dst = yv + r * S * out_row + (long long)c * S;
#pragma unroll
        for (int j = 0; j < S; ++j) {
            uint4 out;
            T* o = reinterpret_cast<T*>(&out);
#pragma unroll
            for (int k = 0; k < V; ++k) o[k] = e[(j * V + k) / S];
#pragma unroll
            for (int dy = 0; dy < S; ++dy) dst[dy * out_row + j] = out;
        }
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
"""


def name_expressions() -> list[str]:
    """Every template instance the module compiles, e.g. `lrelu<float>`."""
    names = [f"{kernel}<{arg}>" for kernel in KERNEL_NAMES for arg in STORAGE.values()]
    names += [f"resize_nearest_int<{arg}, {s}>" for arg in STORAGE.values() for s in INT_SCALES]
    return names
