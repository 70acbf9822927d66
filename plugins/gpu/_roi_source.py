"""CUDA C++ source of the ROI kernels (PyramidROIAlign_TRT, CropAndResize), compiled by NVRTC.

Both are templates over the storage type `T` (`float`, or `half_t`: float16 bits converted with
PTX `cvt`, so no `cuda_fp16.h`) and share one launch shape and one bilinear gather: block row
`blockIdx.x` is one ROI (box), `blockIdx.y` splits that ROI's `C * out_h * out_w` outputs, and a
thread walks them in steps of the grid row, so consecutive threads write consecutive outputs and
read neighbouring pixels of one channel plane. Blending is written with `__f*_rn` so that NVRTC
cannot fuse it into FMAs: each operation rounds as the NumPy reference's does.
"""

from __future__ import annotations

from plugins.gpu._source import HALF, STORAGE

KERNEL_NAMES = ("pyramid_roi_align", "crop_and_resize")

SOURCE = HALF + r"""
// The four pixels around a sample of one [h, w] plane: rows y0, y1 and columns x0, x1.
struct Corners { float tl, tr, bl, br; };

template <typename T>
__device__ __forceinline__ Corners gather(const T* __restrict__ plane, int w, int y0, int y1,
                                          int x0, int x1) {
    const T* r0 = plane + (long long)y0 * w;
    const T* r1 = plane + (long long)y1 * w;
    return {to_f(r0[x0]), to_f(r0[x1]), to_f(r1[x0]), to_f(r1[x1])};
}

// One ROI's pooling geometry, in pixels of its level (computed once per block).
struct RoiGeometry {
    double y0, x0;          // start of bin (0, 0)
    double bin_h, bin_w;    // bin size
    double step_h, step_w;  // distance between samples in a bin (bin size / samples)
    double offset;          // position of sample 0 inside its step (0 or 0.5)
    int level, ry, rx;      // level 0..3 (P2..P5), samples per bin side
};

// Exactly the reference's double arithmetic (no fused multiply-adds) wherever a result is
// compared or rounded up: the level thresholds and the sample counts.
__device__ RoiGeometry roi_geometry(float a, float b, float c, float d, int swap, int absolute,
                                    int plusone, double image_h, double image_w,
                                    double threshold, int transform, int ratio, int pooled,
                                    int4 hs, int4 ws) {
    double y1, x1, y2, x2;
    if (swap) {
        y1 = fmin(a, c); x1 = fmin(b, d); y2 = fmax(a, c); x2 = fmax(b, d);
    } else {
        x1 = fmin(a, c); y1 = fmin(b, d); x2 = fmax(a, c); y2 = fmax(b, d);
    }
    if (absolute) {
        y1 = __ddiv_rn(fmax(0.0, fmin(image_h, y1)), image_h);
        y2 = __ddiv_rn(fmax(0.0, fmin(image_h, y2)), image_h);
        x1 = __ddiv_rn(fmax(0.0, fmin(image_w, x1)), image_w);
        x2 = __ddiv_rn(fmax(0.0, fmin(image_w, x2)), image_w);
    } else {
        y1 = fmax(0.0, fmin(1.0, y1)); y2 = fmax(0.0, fmin(1.0, y2));
        x1 = fmax(0.0, fmin(1.0, x1)); x2 = fmax(0.0, fmin(1.0, x2));
    }
    double area;
    if (plusone) {
        area = __dmul_rn(__dadd_rn(__dsub_rn(y2, y1), __ddiv_rn(1.0, image_h)),
                         __dadd_rn(__dsub_rn(x2, x1), __ddiv_rn(1.0, image_w)));
    } else {
        area = __dmul_rn(__dsub_rn(y2, y1), __dsub_rn(x2, x1));
    }
    RoiGeometry g;
    g.level = 0;
    double t = threshold;
    for (int i = 0; i < 3; ++i) {
        if (area > t) ++g.level;
        t *= 4.0;
    }
    const double h = g.level == 0 ? hs.x : g.level == 1 ? hs.y : g.level == 2 ? hs.z : hs.w;
    const double w = g.level == 0 ? ws.x : g.level == 1 ? ws.y : g.level == 2 ? ws.z : ws.w;
    double ys, xs, ye, xe;
    if (transform == -1) {
        ys = __dmul_rn(y1, h - 1.0); ye = __dmul_rn(y2, h - 1.0);
        xs = __dmul_rn(x1, w - 1.0); xe = __dmul_rn(x2, w - 1.0);
        g.bin_h = __ddiv_rn(__dsub_rn(ye, ys), (double)(pooled - 1));
        g.bin_w = __ddiv_rn(__dsub_rn(xe, xs), (double)(pooled - 1));
        g.offset = 0.0;
    } else {
        const double shift = transform == 2 ? 0.5 : 0.0;
        ys = __dsub_rn(__dmul_rn(y1, h), shift); ye = __dsub_rn(__dmul_rn(y2, h), shift);
        xs = __dsub_rn(__dmul_rn(x1, w), shift); xe = __dsub_rn(__dmul_rn(x2, w), shift);
        g.bin_h = __ddiv_rn(__dsub_rn(ye, ys), (double)pooled);
        g.bin_w = __ddiv_rn(__dsub_rn(xe, xs), (double)pooled);
        g.offset = transform == 0 ? 0.0 : 0.5;
    }
    g.ry = ratio > 0 ? ratio : max(1, (int)ceil(__ddiv_rn(__dsub_rn(ye, ys), (double)pooled)));
    g.rx = ratio > 0 ? ratio : max(1, (int)ceil(__ddiv_rn(__dsub_rn(xe, xs), (double)pooled)));
    g.y0 = ys;
    g.x0 = xs;
    g.step_h = g.bin_h / g.ry;
    g.step_w = g.bin_w / g.rx;
    return g;
}

// A sample coordinate clamped to [0, extent - 1]: its pixel, the next one (itself when the
// coordinate is whole) and the weight of the next one.
__device__ __forceinline__ void locate(double s, int extent, int& lo, int& hi, float& frac) {
    s = fmin(fmax(s, 0.0), extent - 1.0);
    lo = (int)s;
    frac = (float)(s - lo);
    hi = frac == 0.f ? lo : lo + 1;
}

// rois [N * R, 4]; levels P2..P5 [N, C, h_l, w_l]; out [N * R, C, pooled, pooled]. Each output
// averages ry * rx bilinear samples; sample positions are in double precision.
template <typename T>
__global__ void pyramid_roi_align(
        const T* __restrict__ rois, const T* __restrict__ p2, const T* __restrict__ p3,
        const T* __restrict__ p4, const T* __restrict__ p5, T* __restrict__ out,
        int rois_per_image, int channels, int pooled, int h2, int w2, int h3, int w3, int h4,
        int w4, int h5, int w5, double image_h, double image_w, double threshold,
        int transform, int plusone, int swap, int absolute, int ratio) {
    __shared__ RoiGeometry geo;
    const long long roi = blockIdx.x;
    if (threadIdx.x == 0) {
        const int4 hs = {h2, h3, h4, h5};
        const int4 ws = {w2, w3, w4, w5};
        const T* box = rois + roi * 4;
        geo = roi_geometry(to_f(box[0]), to_f(box[1]), to_f(box[2]), to_f(box[3]), swap,
                           absolute, plusone, image_h, image_w, threshold, transform, ratio,
                           pooled, hs, ws);
    }
    __syncthreads();
    const RoiGeometry g = geo;
    const T* level = g.level == 0 ? p2 : g.level == 1 ? p3 : g.level == 2 ? p4 : p5;
    const int h = g.level == 0 ? h2 : g.level == 1 ? h3 : g.level == 2 ? h4 : h5;
    const int w = g.level == 0 ? w2 : g.level == 1 ? w3 : g.level == 2 ? w4 : w5;
    const long long plane_size = (long long)h * w;
    const T* fmap = level + (roi / rois_per_image) * channels * plane_size;
    const int bins = pooled * pooled;
    const int per_roi = channels * bins;
    const float count = (float)(g.ry * g.rx);
    T* dst = out + roi * per_roi;
    for (int e = blockIdx.y * blockDim.x + threadIdx.x; e < per_roi;
         e += gridDim.y * blockDim.x) {
        const int c = e / bins;
        const int py = (e - c * bins) / pooled;
        const int px = e - c * bins - py * pooled;
        const T* plane = fmap + c * plane_size;
        const double by = g.y0 + g.bin_h * py;
        const double bx = g.x0 + g.bin_w * px;
        float total = 0.f;
        for (int iy = 0; iy < g.ry; ++iy) {
            int y0, y1;
            float ya;
            locate(by + g.step_h * (iy + g.offset), h, y0, y1, ya);
            const float yb = __fsub_rn(1.f, ya);
            for (int ix = 0; ix < g.rx; ++ix) {
                int x0, x1;
                float xa;
                locate(bx + g.step_w * (ix + g.offset), w, x0, x1, xa);
                const float xb = __fsub_rn(1.f, xa);
                const Corners q = gather(plane, w, y0, y1, x0, x1);
                const float top = __fadd_rn(__fmul_rn(q.tl, xb), __fmul_rn(q.tr, xa));
                const float bottom = __fadd_rn(__fmul_rn(q.bl, xb), __fmul_rn(q.br, xa));
                total = __fadd_rn(total, __fadd_rn(__fmul_rn(top, yb), __fmul_rn(bottom, ya)));
            }
        }
        dst[e] = from_f<T>(__fdiv_rn(total, count));
    }
}

// Start and step of one axis's sample positions: y1 * (H - 1) + i * (y2 - y1) * (H - 1) /
// (crop - 1), or the box centre when crop is 1 (as tf.image.crop_and_resize).
__device__ __forceinline__ void crop_axis(float lo, float hi, float span, int crop, float& start,
                                          float& step) {
    if (crop > 1) {
        start = __fmul_rn(lo, span);
        step = __fdiv_rn(__fmul_rn(__fsub_rn(hi, lo), span), (float)(crop - 1));
    } else {
        start = __fmul_rn(__fmul_rn(0.5f, __fadd_rn(lo, hi)), span);
        step = 0.f;
    }
}

// image [N, C, H, W]; rois [N * B, 4] normalised y1, x1, y2, x2 of image n = box / B;
// out [N * B, C, crop_h, crop_w]. Samples outside [0, H - 1] x [0, W - 1] give 0.
template <typename T>
__global__ void crop_and_resize(const T* __restrict__ image, const T* __restrict__ rois,
                                T* __restrict__ out, int boxes_per_image, int channels,
                                int height, int width, int crop_h, int crop_w) {
    const long long box = blockIdx.x;
    const T* b = rois + box * 4;
    const float span_h = (float)(height - 1), span_w = (float)(width - 1);
    float y_start, y_step, x_start, x_step;
    crop_axis(to_f(b[0]), to_f(b[2]), span_h, crop_h, y_start, y_step);
    crop_axis(to_f(b[1]), to_f(b[3]), span_w, crop_w, x_start, x_step);
    const long long plane_size = (long long)height * width;
    const T* img = image + (box / boxes_per_image) * channels * plane_size;
    const int pixels = crop_h * crop_w;
    const int per_box = channels * pixels;
    T* dst = out + box * per_box;
    for (int e = blockIdx.y * blockDim.x + threadIdx.x; e < per_box;
         e += gridDim.y * blockDim.x) {
        const int c = e / pixels;
        const int oy = (e - c * pixels) / crop_w;
        const int ox = e - c * pixels - oy * crop_w;
        const float ys = crop_h > 1 ? __fadd_rn(y_start, __fmul_rn((float)oy, y_step)) : y_start;
        const float xs = crop_w > 1 ? __fadd_rn(x_start, __fmul_rn((float)ox, x_step)) : x_start;
        float v = 0.f;
        if (ys >= 0.f && ys <= span_h && xs >= 0.f && xs <= span_w) {
            const float top = floorf(ys), left = floorf(xs);
            const float yl = __fsub_rn(ys, top), xl = __fsub_rn(xs, left);
            const Corners q = gather(img + c * plane_size, width, (int)top, (int)ceilf(ys),
                                     (int)left, (int)ceilf(xs));
            const float upper = __fadd_rn(q.tl, __fmul_rn(__fsub_rn(q.tr, q.tl), xl));
            const float lower = __fadd_rn(q.bl, __fmul_rn(__fsub_rn(q.br, q.bl), xl));
            v = __fadd_rn(upper, __fmul_rn(__fsub_rn(lower, upper), yl));
        }
        dst[e] = from_f<T>(v);
    }
}
"""


def name_expressions() -> list[str]:
    """Every template instance the module compiles, e.g. `crop_and_resize<float>`."""
    return [f"{kernel}<{arg}>" for kernel in KERNEL_NAMES for arg in STORAGE.values()]
