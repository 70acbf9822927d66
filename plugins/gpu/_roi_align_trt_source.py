"""CUDA C++ source of ROIAlign_TRT's kernel (ONNX RoiAlign as onnxruntime computes it), for NVRTC.

A template over the storage type `T` of X, rois and Y (`float`, or `half_t` from `_source.HALF`);
batch indices are int32 and arithmetic is float32. One launch: block row `blockIdx.x` is one ROI,
`blockIdx.y` splits its `C * out_h * out_w` outputs, a thread walks them in steps of the grid
row, so consecutive threads write consecutive outputs and read neighbouring pixels of one
channel plane. Every thread derives the ROI's geometry itself (a dozen float operations on four
values all threads of the block read), so there is no shared memory or barrier. Operations are
written with `__f*_rn` so that NVRTC cannot fuse them into FMAs: each rounds as the NumPy
reference's (and onnxruntime's) does, in the same order.
"""

from __future__ import annotations

from plugins.gpu._source import HALF, STORAGE

KERNEL_NAMES = ("roi_align_trt",)

SOURCE = HALF + r"""
// One sample coordinate along an axis of `extent` pixels: whether it counts (within one pixel
// of the map), its two neighbouring pixels (the same one at the far edge) and their weights.
struct AxisSample { bool valid; int lo, hi; float w_lo, w_hi; };

__device__ __forceinline__ AxisSample axis_sample(float pos, int extent) {
    AxisSample s;
    s.valid = pos >= -1.f && pos <= (float)extent;  // false for NaN, as in the reference
    if (!s.valid) {
        s.lo = s.hi = 0;
        s.w_lo = s.w_hi = 0.f;
        return s;
    }
    if (pos <= 0.f) pos = 0.f;
    s.lo = (int)pos;
    if (s.lo >= extent - 1) {
        s.lo = s.hi = extent - 1;
        pos = (float)s.lo;
    } else {
        s.hi = s.lo + 1;
    }
    s.w_hi = __fsub_rn(pos, (float)s.lo);
    s.w_lo = __fsub_rn(1.f, s.w_hi);
    return s;
}

// Samples per bin along one axis: `ratio`, or ceil(bin size) (adaptive; none when that is not
// positive or the size is not finite).
__device__ __forceinline__ int bin_samples(int ratio, float bin) {
    if (ratio > 0) return ratio;
    if (!(fabsf(bin) <= 3.402823466e38f)) return 0;  // NaN or infinite
    const int n = (int)ceilf(bin);
    return n > 0 ? n : 0;
}

// x [N, C, H, W]; rois [R, 4] (x1, y1, x2, y2); batch [R] int32; out [R, C, out_h, out_w].
// half_pixel: 1 shifts ROIs by -0.5 pixel, 0 grows ROIs under a pixel to one; max_mode: 1 takes
// the largest weighted corner term of any sample (onnxruntime's max), 0 averages the samples.
// A batch index outside [0, N) leaves its ROI's outputs 0.
template <typename T>
__global__ void roi_align_trt(const T* __restrict__ x, const T* __restrict__ rois,
                              const int* __restrict__ batch, T* __restrict__ out, int images,
                              int channels, int height, int width, int out_h, int out_w,
                              int ratio, float scale, int half_pixel, int max_mode) {
    const long long roi = blockIdx.x;
    const int bins = out_h * out_w;
    const int per_roi = channels * bins;
    T* dst = out + roi * per_roi;
    const int image = batch[roi];
    if (image < 0 || image >= images) {
        for (int e = blockIdx.y * blockDim.x + threadIdx.x; e < per_roi;
             e += gridDim.y * blockDim.x) {
            dst[e] = from_f<T>(0.f);
        }
        return;
    }
    const T* box = rois + roi * 4;
    const float offset = half_pixel ? 0.5f : 0.f;
    const float start_w = __fsub_rn(__fmul_rn(to_f(box[0]), scale), offset);
    const float start_h = __fsub_rn(__fmul_rn(to_f(box[1]), scale), offset);
    float size_w = __fsub_rn(__fsub_rn(__fmul_rn(to_f(box[2]), scale), offset), start_w);
    float size_h = __fsub_rn(__fsub_rn(__fmul_rn(to_f(box[3]), scale), offset), start_h);
    if (!half_pixel) {
        size_w = fmaxf(size_w, 1.f);
        size_h = fmaxf(size_h, 1.f);
    }
    const float bin_h = __fdiv_rn(size_h, (float)out_h);
    const float bin_w = __fdiv_rn(size_w, (float)out_w);
    const int grid_h = bin_samples(ratio, bin_h);
    const int grid_w = bin_samples(ratio, bin_w);
    const float grid_hf = (float)grid_h, grid_wf = (float)grid_w;
    const float count = (float)max(grid_h * grid_w, 1);
    const long long plane_size = (long long)height * width;
    const T* fmap = x + (long long)image * channels * plane_size;
    for (int e = blockIdx.y * blockDim.x + threadIdx.x; e < per_roi;
         e += gridDim.y * blockDim.x) {
        const int c = e / bins;
        const int py = (e - c * bins) / out_w;
        const int px = e - c * bins - py * out_w;
        const T* plane = fmap + c * plane_size;
        const float y_bin = __fadd_rn(start_h, __fmul_rn((float)py, bin_h));
        const float x_bin = __fadd_rn(start_w, __fmul_rn((float)px, bin_w));
        float acc = 0.f;
        bool first = true;
        for (int iy = 0; iy < grid_h; ++iy) {
            const AxisSample ys = axis_sample(
                __fadd_rn(y_bin, __fdiv_rn(__fmul_rn((float)iy + 0.5f, bin_h), grid_hf)), height);
            const T* row_lo = plane + (long long)ys.lo * width;
            const T* row_hi = plane + (long long)ys.hi * width;
            for (int ix = 0; ix < grid_w; ++ix) {
                const AxisSample xs = axis_sample(
                    __fadd_rn(x_bin, __fdiv_rn(__fmul_rn((float)ix + 0.5f, bin_w), grid_wf)),
                    width);
                float value = 0.f;  // a sample outside counts as 0
                if (ys.valid && xs.valid) {
                    const float t1 = __fmul_rn(__fmul_rn(ys.w_lo, xs.w_lo), to_f(row_lo[xs.lo]));
                    const float t2 = __fmul_rn(__fmul_rn(ys.w_lo, xs.w_hi), to_f(row_lo[xs.hi]));
                    const float t3 = __fmul_rn(__fmul_rn(ys.w_hi, xs.w_lo), to_f(row_hi[xs.lo]));
                    const float t4 = __fmul_rn(__fmul_rn(ys.w_hi, xs.w_hi), to_f(row_hi[xs.hi]));
                    value = max_mode ? fmaxf(fmaxf(fmaxf(t1, t2), t3), t4)
                                     : __fadd_rn(__fadd_rn(__fadd_rn(t1, t2), t3), t4);
                }
                if (max_mode) {
                    acc = first ? value : fmaxf(acc, value);
                    first = false;
                } else {
                    acc = __fadd_rn(acc, value);
                }
            }
        }
        dst[e] = from_f<T>(max_mode ? acc : __fdiv_rn(acc, count));
    }
}
"""


def name_expressions() -> list[str]:
    """Every template instance the module compiles: `roi_align_trt<float>`, `<half_t>`."""
    return [f"{kernel}<{arg}>" for kernel in KERNEL_NAMES for arg in STORAGE.values()]
