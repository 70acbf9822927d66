"""Time PyramidROIAlign_TRT and CropAndResize (plugins.gpu.launch_io, the enqueue path) against
torchvision.ops.roi_align on the local GPU, on the same feature maps and boxes.

PyramidROIAlign: 1000 ROIs over Matterport's COCO pyramid (256 channels, P2..P5 of 256^2..32^2),
pooled 7 and 14, float32 and float16, in two field sets: `aligned` (the schema's defaults:
half-pixel aligned, adaptive samples per bin) against roi_align(aligned=True, sampling_ratio=0),
which computes the same values, and `matterport` (rules/maskrcnn.rules: align-corners grid, one
sample per bin) against roi_align(aligned=False, sampling_ratio=1), the same amount of work on
slightly different sample positions. torchvision gets our per-ROI level assignment: `tv kernels`
is its four roi_align launches on boxes already split by level (its lower bound), `tv full` adds
what MultiScaleRoIAlign does to put the ROIs back in order (index_copy_ into one output).
CropAndResize: 1000 boxes on one map against roi_align(aligned=True, sampling_ratio=1), one
bilinear sample per output in both. `max |ours - tv|` compares the aligned float32 outputs
(torchvision's float16 kernel rounds every intermediate to float16, ours computes in float32).
ROIAlign_TRT (ONNX RoiAlign, avg): 1000 ROIs of an 800 x 1088 image on a torchvision detector's
stride-4 map [1, 256, 200, 272] pooled 7x7 with 2 samples per bin side (the box head), and on a
stride-16 map [1, 256, 50, 68] pooled 14x14 (the mask head's size), against one
roi_align(sampling_ratio=2) call on the same map and boxes: `ohp` (output_half_pixel) is
aligned=False, what torchvision's detectors use, `hp` (half_pixel) aligned=True; both compute
the same values, so `max |ours - tv|` is reported for every row: against torchvision's float32
result on the same (float16-rounded, in float16 rows) map and boxes, with torchvision's own
float16 error beside it.
GPU times are CUDA-graph replays (launch overhead out);
`host us` is one launch_io call's Python time. Without CuPy or a GPU it says so and returns.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from plugins.gpu import gpu_unavailable_reason, launch_io

PYRAMID_SIZES = ((256, 256), (128, 128), (64, 64), (32, 32))
MATTERPORT = {"image_size": [1024, 2048], "fpn_scale": 224, "roi_coords_absolute": 0,
              "roi_coords_swap": 1, "roi_coords_transform": -1, "sampling_ratio": 1}  # fmt: skip
IMAGE = 1024
ROIS = 1000
PER_GRAPH = 10


def unit_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """[count, 4] normalised (y1, x1, y2, x2) boxes of 8..800 pixels of a 1024^2 image, clipped
    to it (as Mask R-CNN's proposals)."""
    centre = rng.uniform(0, 1, (count, 2))
    size = np.exp(rng.uniform(np.log(8 / IMAGE), np.log(800 / IMAGE), (count, 2)))
    return np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 0, 1)


def pyramid_levels(rois: np.ndarray, fields: dict[str, Any]) -> np.ndarray:
    """The level (0..3) the plugin picks for each ROI (the reference's rule)."""
    from plugins.reference.pyramid_roi_align import _box, _settings, level_of

    cfg = _settings(fields)
    return np.array([level_of(_box(r, cfg), cfg) for r in rois.reshape(-1, 4)])


def graph_seconds_cupy(cp: Any, call: Callable[[Any], None]) -> float:
    """GPU seconds per `call(stream)` from a replayed CUDA graph of PER_GRAPH calls."""
    stream = cp.cuda.Stream(non_blocking=True)
    call(stream)
    stream.synchronize()
    stream.begin_capture()
    for _ in range(PER_GRAPH):
        call(stream)
    graph = stream.end_capture()
    with stream:
        graph.launch()
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(10):
            graph.launch()
        stop.record()
        stop.synchronize()
    return cp.cuda.get_elapsed_time(start, stop) / 1e3 / (10 * PER_GRAPH)


def graph_seconds_torch(torch: Any, fn: Callable[[], Any]) -> float:
    """GPU seconds per `fn()` from a replayed torch CUDA graph of PER_GRAPH calls."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(PER_GRAPH):
            fn()
    graph.replay()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        graph.replay()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / 1e3 / (10 * PER_GRAPH)


def ours(cp: Any, name: str, fields: dict[str, Any], inputs: list[Any], out: Any,
         dtype: str, in_dtypes: list[str] | None = None) -> tuple[float, float]:  # fmt: skip
    """(GPU seconds, host seconds) of one launch_io of plugin `name` on torch tensors (inputs of
    `dtype`, or of `in_dtypes` one each; the output of `dtype`)."""
    kinds = in_dtypes if in_dtypes is not None else [dtype] * len(inputs)
    ins = [(tuple(x.shape), kind, x.data_ptr()) for x, kind in zip(inputs, kinds, strict=True)]
    outs = [(tuple(out.shape), dtype, out.data_ptr())]

    def call(stream: Any) -> None:
        launch_io(name, fields, ins, outs, stream.ptr)

    gpu = graph_seconds_cupy(cp, call)
    stream = cp.cuda.Stream(non_blocking=True)
    t0 = time.perf_counter()
    for _ in range(50):
        call(stream)
    host = (time.perf_counter() - t0) / 50
    stream.synchronize()
    return gpu, host


def bench_pyramid(cp: Any, torch: Any, tv: Any, mode: str, pooled: int, dtype: str) -> dict:
    """One PyramidROIAlign row."""
    rng = np.random.default_rng(pooled)
    tdt = getattr(torch, dtype)
    maps = [torch.randn(1, 256, h, w, device="cuda", dtype=tdt) for h, w in PYRAMID_SIZES]
    unit = unit_boxes(rng, ROIS)
    if mode == "aligned":
        fields: dict[str, Any] = {"pooled_size": pooled}
        rois_np = unit[:, [1, 0, 3, 2]] * IMAGE  # x1, y1, x2, y2 pixels
        aligned, ratio = True, 0
    else:
        fields = {"pooled_size": pooled, **MATTERPORT}
        rois_np = unit  # y1, x1, y2, x2 normalised
        aligned, ratio = False, 1
    rois_np = np.ascontiguousarray(rois_np).astype(np.dtype(dtype))
    level = pyramid_levels(rois_np.astype(np.float32), fields)
    rois = torch.from_numpy(rois_np).to("cuda")[None]
    out = torch.empty(1, ROIS, 256, pooled, pooled, device="cuda", dtype=tdt)
    gpu, host = ours(cp, "PyramidROIAlign_TRT", fields, [rois, *maps], out, dtype)
    row = {"case": f"PyramidROIAlign {mode} P{pooled} {dtype}", "ours_us": gpu * 1e6,
           "host_us": host * 1e6, "levels": np.bincount(level, minlength=4).tolist(),
           "out_gb_per_s": out.numel() * out.element_size() / gpu / 1e9}  # fmt: skip
    pixels = unit[:, [1, 0, 3, 2]] * IMAGE if mode != "aligned" else rois_np.astype(np.float64)
    boxes = torch.from_numpy(np.concatenate([np.zeros((ROIS, 1)), pixels], axis=1)).to(
        "cuda", tdt)  # fmt: skip
    index = [torch.from_numpy(np.flatnonzero(level == k)).to("cuda") for k in range(4)]
    split = [boxes[i].contiguous() for i in index]
    scales = [h / IMAGE for h, _ in PYRAMID_SIZES]

    def per_level(k: int) -> Any:
        return tv.ops.roi_align(maps[k], split[k], pooled, scales[k], ratio, aligned)

    def kernels() -> None:
        for k in range(4):
            per_level(k)

    def full() -> Any:
        result = torch.empty(ROIS, 256, pooled, pooled, device="cuda", dtype=tdt)
        for k in range(4):
            result.index_copy_(0, index[k], per_level(k))
        return result

    row["tv_kernels_us"] = graph_seconds_torch(torch, kernels) * 1e6
    row["tv_full_us"] = graph_seconds_torch(torch, full) * 1e6
    if mode == "aligned" and dtype == "float32":  # torchvision's half path rounds each step
        torch.cuda.synchronize()
        row["max_abs_diff"] = float((full() - out[0]).abs().max())
    return row


def bench_crop(cp: Any, torch: Any, tv: Any, shape: tuple[int, int, int], crop: int,
               dtype: str) -> dict:  # fmt: skip
    """One CropAndResize row."""
    channels, height, width = shape
    rng = np.random.default_rng(crop)
    tdt = getattr(torch, dtype)
    image = torch.randn(1, channels, height, width, device="cuda", dtype=tdt)
    unit = unit_boxes(rng, ROIS).astype(np.dtype(dtype))
    rois = torch.from_numpy(np.ascontiguousarray(unit)).to("cuda")[None]
    out = torch.empty(1, ROIS, channels, crop, crop, device="cuda", dtype=tdt)
    fields = {"crop_height": crop, "crop_width": crop}
    gpu, host = ours(cp, "CropAndResize", fields, [image, rois], out, dtype)
    row = {"case": f"CropAndResize [{channels},{height},{width}] {crop}x{crop} {dtype}",
           "ours_us": gpu * 1e6, "host_us": host * 1e6,
           "out_gb_per_s": out.numel() * out.element_size() / gpu / 1e9}  # fmt: skip
    scale = np.array([width - 1, height - 1, width - 1, height - 1])
    pixels = unit.astype(np.float64)[:, [1, 0, 3, 2]] * scale
    boxes = torch.from_numpy(np.concatenate([np.zeros((ROIS, 1)), pixels], axis=1)).to(
        "cuda", tdt)  # fmt: skip
    row["tv_kernels_us"] = graph_seconds_torch(
        torch, lambda: tv.ops.roi_align(image, boxes, crop, 1.0, 1, True)) * 1e6  # fmt: skip
    row["tv_full_us"] = row["tv_kernels_us"]
    return row


def detector_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """[count, 4] (x1, y1, x2, y2) boxes of 8..600 pixels of an 800 x 1088 image, clipped to it
    (as a torchvision detector's proposals)."""
    centre = rng.uniform(0, [1088, 800], (count, 2))
    size = np.exp(rng.uniform(np.log(8), np.log(600), (count, 2)))
    corners = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return np.clip(corners, 0, [1088, 800, 1088, 800])


def bench_roi_align_trt(cp: Any, torch: Any, tv: Any, shape: tuple[int, int, int], pooled: int,
                        aligned: bool, dtype: str) -> dict:  # fmt: skip
    """One ROIAlign_TRT row: one launch against one torchvision roi_align call."""
    channels, height, width = shape
    scale = height / 800
    rng = np.random.default_rng(pooled + aligned)
    tdt = getattr(torch, dtype)
    image = torch.randn(1, channels, height, width, device="cuda", dtype=tdt)
    pixels = detector_boxes(rng, ROIS)
    rois = torch.from_numpy(np.ascontiguousarray(pixels)).to("cuda", tdt)
    indices = torch.zeros(ROIS, device="cuda", dtype=torch.int32)
    out = torch.empty(ROIS, channels, pooled, pooled, device="cuda", dtype=tdt)
    fields = {"coordinate_transformation_mode": int(aligned), "mode": 1, "output_height": pooled,
              "output_width": pooled, "sampling_ratio": 2, "spatial_scale": scale}  # fmt: skip
    gpu, host = ours(cp, "ROIAlign_TRT", fields, [image, rois, indices], out, dtype,
                     [dtype, dtype, "int32"])  # fmt: skip
    mode = "hp" if aligned else "ohp"
    row = {"case": f"ROIAlign_TRT {height}x{width} {pooled}x{pooled} s2 {mode} {dtype}",
           "ours_us": gpu * 1e6, "host_us": host * 1e6,
           "out_gb_per_s": out.numel() * out.element_size() / gpu / 1e9}  # fmt: skip
    boxes = torch.cat([torch.zeros(ROIS, 1, device="cuda", dtype=tdt), rois], dim=1)

    def theirs() -> Any:
        return tv.ops.roi_align(image, boxes, pooled, scale, 2, aligned)

    row["tv_kernels_us"] = graph_seconds_torch(torch, theirs) * 1e6
    row["tv_full_us"] = row["tv_kernels_us"]
    torch.cuda.synchronize()
    exact = tv.ops.roi_align(image.float(), boxes.float(), pooled, scale, 2, aligned)
    row["max_abs_diff"] = float((exact - out.float()).abs().max())
    if dtype != "float32":  # torchvision's own half-precision error, beside ours
        row["tv_max_abs_diff"] = float((exact - theirs().float()).abs().max())
    row["aligned"] = aligned
    return row


def main(argv: list[str] | None = None) -> int:
    """Print the table (and write JSON when asked); a message and 0 without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv if argv is not None else [])
    reason = gpu_unavailable_reason()
    if reason is not None:
        print(f"bench_gpu_roi: skipped, no CUDA GPU / CuPy on this machine ({reason})")
        return 0
    try:
        import torch
        import torchvision as tv
    except ImportError as exc:
        print(f"bench_gpu_roi: skipped, needs PyTorch and torchvision for the inputs ({exc})")
        return 0
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"device: {name}, CuPy {cp.__version__}, torch {torch.__version__}, "
          f"torchvision {tv.__version__}")  # fmt: skip
    print("GPU us per call from replayed CUDA graphs; ratio = torchvision full / ours (> 1: ours "
          "faster); GB/s counts the output written once.")  # fmt: skip
    head = (f"{'case':44} {'ours us':>8} {'tv kern':>8} {'tv full':>8} {'ratio':>6} "
            f"{'out GB/s':>8} {'host us':>7}  notes")  # fmt: skip
    print(head)
    print("-" * len(head))
    rows = []
    jobs: list[Callable[[], dict]] = []
    for mode in ("aligned", "matterport"):
        for pooled in (7, 14):
            for dtype in ("float32", "float16"):
                jobs.append(lambda m=mode, p=pooled, d=dtype: bench_pyramid(cp, torch, tv, m, p, d))
    for shape, crop in (((256, 128, 128), 7), ((1024, 64, 64), 14)):
        for dtype in ("float32", "float16"):
            jobs.append(lambda s=shape, c=crop, d=dtype: bench_crop(cp, torch, tv, s, c, d))
    for shape, pooled in (((256, 200, 272), 7), ((256, 50, 68), 14)):
        for aligned in (False, True):
            for dtype in ("float32", "float16"):
                jobs.append(lambda s=shape, p=pooled, a=aligned, d=dtype: bench_roi_align_trt(
                    cp, torch, tv, s, p, a, d))  # fmt: skip
    for job in jobs:
        row = job()
        rows.append(row)
        notes = []
        if "levels" in row:
            notes.append(f"ROIs per level {row['levels']}")
        if "aligned" in row:
            notes.append(f"vs roi_align(aligned={row['aligned']})")
        if "max_abs_diff" in row:
            notes.append(f"max |ours - tv| {row['max_abs_diff']:.1e}")
        if "tv_max_abs_diff" in row:
            notes.append(f"torchvision's own float16: {row['tv_max_abs_diff']:.1e}")
        print(f"{row['case']:44} {row['ours_us']:8.1f} {row['tv_kernels_us']:8.1f} "
              f"{row['tv_full_us']:8.1f} {row['tv_full_us'] / row['ours_us']:6.2f} "
              f"{row['out_gb_per_s']:8.0f} {row['host_us']:7.1f}  {'; '.join(notes)}",
              flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
