"""ROIAlign_TRT's GPU kernel (plugins/gpu/roi_align_trt.py) against its NumPy reference (which
matches onnxruntime's RoiAlign, tests/test_roi_align_reference.py): float32 and float16, both
coordinate modes, avg and max, fixed and adaptive sampling, two spatial scales, ROIs outside,
on the border and of zero size, R = 0, several images, through `run_arrays` and through the
IPluginV3 `enqueue` (int32 batch indices beside float tensors). The kernel tests need CuPy and a
CUDA GPU and skip without them; the build-time `check` and the creator's dtype/format choices
run everywhere. Runnable as a script too.
"""

from __future__ import annotations

import sys
import types
from functools import lru_cache
from typing import Any

import numpy as np
import pytest

from plugins.gpu import GpuKernelError, check, run_arrays
from plugins.registry import reference
from plugins.trt.creators import _plugin_class
from surgery.ops.plugin_schema import load_catalog
from tests.test_gpu_roi_family import assert_matches, fake_trt, on_gpu

F32, F16 = np.float32, np.float16
DTYPES = [F32, F16]
NAME = "ROIAlign_TRT"

EDGE_ROIS = [
    [0, 0, 0, 0],  # a point at the origin (zero size)
    [40, 40, 40, 40],  # a point inside
    [20, 30, 20, 70],  # zero width
    [-30, -20, 50, 40],  # partly outside, top left
    [60, 50, 160, 150],  # partly outside, bottom right
    [200, 200, 260, 240],  # wholly outside
    [-90, -90, -20, -10],  # wholly outside, negative
    [0, 0, 95, 79],  # the whole 96 x 80 image (at scale 1/4: a 24 x 20 map)
    [92, 0, 96, 80],  # a sliver on the right border
    [0, 76, 96, 80],  # a sliver on the bottom border
    [50, 40, 30, 10],  # corners the other way round (negative size)
    [10.25, 7.875, 11.125, 8.25],  # smaller than a map pixel
]
"""ROIs (x1, y1, x2, y2, image pixels) of a 96 x 80 image that exercise the edge cases."""


def roi_case(seed: int, batch: int, count: int, scale: float) -> tuple[np.ndarray, ...]:
    """X [batch, 5, 96 * scale, 80 * scale] (a 96 x 80 image's feature map), EDGE_ROIS then
    `count` random ROIs of 1..70 image pixels in and around the image, random batch indices
    (int64, as ONNX has them). X and rois hold float16-exact values, so that one float32
    reference serves both dtypes."""
    rng = np.random.default_rng(seed)
    height, width = round(96 * scale), round(80 * scale)
    x = rng.standard_normal((batch, 5, height, width)).astype(F16).astype(F32)
    start = rng.uniform(-20, [100, 110], (count, 2))
    rois = np.concatenate([start, start + rng.uniform(1, 70, (count, 2))], axis=1)
    rois = np.concatenate([np.asarray(EDGE_ROIS, dtype=np.float64), rois])
    return x, rois.astype(F16).astype(F32), rng.integers(0, batch, len(rois))


def fields_of(ctm: int, mode: int, ratio: int, scale: float, out: tuple[int, int] = (3, 4)
              ) -> dict[str, Any]:  # fmt: skip
    """The plugin's fields."""
    return {"coordinate_transformation_mode": ctm, "mode": mode, "output_height": out[0],
            "output_width": out[1], "sampling_ratio": ratio, "spatial_scale": scale}  # fmt: skip


def expected(fields: dict[str, Any], x: np.ndarray, rois: np.ndarray,
             indices: np.ndarray) -> np.ndarray:  # fmt: skip
    """The reference's Y, computed in float32 from the inputs' values."""
    (y,) = reference(NAME)([x.astype(F32), rois.astype(F32), indices.astype(np.int32)], fields)
    return y


def run_case(cp: Any, fields: dict[str, Any], x: np.ndarray, rois: np.ndarray, indices: np.ndarray,
             dtype: Any, want: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Pool on the GPU in `dtype` (batch indices int32) and compare with the reference."""
    inputs = [x.astype(dtype), rois.astype(dtype), indices.astype(np.int32)]
    if want is None:
        want = expected(fields, *inputs)
    (got,) = on_gpu(cp, NAME, fields, inputs, [want.shape])
    assert_matches(got, want, dtype)
    return got


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [0.25, 1 / 16])
@pytest.mark.parametrize("ratio", [0, 1, 2])
@pytest.mark.parametrize("mode", [1, 0], ids=["avg", "max"])
@pytest.mark.parametrize("ctm", [1, 0], ids=["half_pixel", "output_half_pixel"])
def test_matches_reference(cp: Any, ctm: int, mode: int, ratio: int, scale: float,
                           dtype: Any) -> None:  # fmt: skip
    x, rois, indices = roi_case(ratio + 3 * mode + 7 * ctm, 2, 40, scale)
    got = run_case(cp, fields_of(ctm, mode, ratio, scale), x, rois, indices, dtype)
    assert np.all(got[5] == 0) and np.all(got[6] == 0)  # the ROIs wholly outside


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("out", "ratio"), [((7, 7), 2), ((1, 1), 0), ((2, 5), 3), ((14, 14), 0)])
@pytest.mark.parametrize("mode", [1, 0], ids=["avg", "max"])
def test_output_sizes_and_adaptive_large_rois(cp: Any, mode: int, out: tuple[int, int],
                                              ratio: int, dtype: Any) -> None:  # fmt: skip
    """Square, single-bin and non-square outputs; adaptive sampling of ROIs up to 700 pixels
    at scale 1/16 (up to 44 map pixels: grids of many sizes in one launch), three images."""
    rng = np.random.default_rng(sum(out) + ratio + mode)
    x = rng.standard_normal((3, 6, 50, 68)).astype(F16).astype(F32)
    start = rng.uniform(-50, [1000, 1000], (40, 2))
    rois = np.concatenate([start, start + rng.uniform(4, 700, (40, 2))], axis=1)
    fields = {**fields_of(1, mode, ratio, 1 / 16, out), "coordinate_transformation_mode": 0}
    run_case(cp, fields, x, rois.astype(F16).astype(F32), np.repeat([2, 0, 1, 2], 10), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 2, 1, 9), (1, 1, 300, 2)],
                         ids=["1x1", "1x9", "300x2"])  # fmt: skip
def test_tiny_maps(cp: Any, shape: tuple[int, ...], dtype: Any) -> None:
    rng = np.random.default_rng(len(shape) + shape[2])
    x = rng.standard_normal(shape).astype(F16).astype(F32)
    rois = rng.uniform(-3, 12, (9, 4)).astype(F16).astype(F32)
    for ctm in (0, 1):
        for mode in (0, 1):
            fields = fields_of(ctm, mode, 0, 1.0, (2, 2))
            run_case(cp, fields, x, rois, rng.integers(0, shape[0], 9), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_defaults(cp: Any, dtype: Any) -> None:
    """Fields left out take the schema's defaults (1x1 avg, half_pixel, adaptive, scale 1)."""
    x, rois, indices = roi_case(4, 3, 10, 0.25)
    got = run_case(cp, {}, x, rois, indices, dtype)
    assert got.shape == (len(rois), 5, 1, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_rois(cp: Any, dtype: Any) -> None:
    x = np.ones((2, 3, 8, 8), dtype)
    rois, indices = cp.zeros((0, 4), dtype), cp.zeros(0, np.int32)
    out = cp.zeros((0, 3, 7, 7), dtype)
    run_arrays(NAME, {"output_height": 7, "output_width": 7}, [cp.asarray(x), rois, indices], [out])
    cp.cuda.get_current_stream().synchronize()
    assert out.shape == (0, 3, 7, 7)


def test_batch_index_outside_the_batch_gives_zeros(cp: Any) -> None:
    """The kernel cannot raise from the device: such a ROI's outputs are 0, the rest pooled."""
    x, rois, _ = roi_case(5, 2, 4, 0.25)
    indices = np.array([0, 1, 2, -1] + [1] * (len(rois) - 4), np.int32)
    fields = fields_of(1, 1, 2, 0.25)
    (got,) = on_gpu(cp, NAME, fields, [x, rois, indices], [(len(rois), 5, 3, 4)])
    assert np.all(got[2:4] == 0)
    keep = np.r_[0:2, 4:len(rois)]
    assert_matches(got[keep], expected(fields, x, rois[keep], indices[keep]), F32)


@lru_cache(maxsize=2)
def detector_case(out: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray,
                                     np.ndarray]:  # fmt: skip
    """A torchvision detector's shapes, smaller: 300 ROIs of an 800 x 1088 image on a stride-4
    map of 64 channels [2, 64, 200, 272], sampling 2 (`out` 7) or adaptive (14)."""
    rng = np.random.default_rng(out)
    x = rng.standard_normal((2, 64, 200, 272)).astype(F16).astype(F32)
    centre = rng.uniform(0, [1088, 800], (300, 2))
    size = np.exp(rng.uniform(np.log(8), np.log(600), (300, 2)))
    rois = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(F16).astype(F32)
    indices = rng.integers(0, 2, 300)
    fields = fields_of(0, 1, 2 if out == 7 else 0, 0.25, (out, out))
    return fields, x, rois, indices, expected(fields, x, rois, indices)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out", [7, 14])
def test_detector_shapes(cp: Any, out: int, dtype: Any) -> None:
    fields, x, rois, indices, want = detector_case(out)
    run_case(cp, fields, x, rois, indices, dtype, want=want)


def test_wrong_output_and_layout_are_refused(cp: Any) -> None:
    x = cp.zeros((1, 4, 8, 8), dtype=cp.float32)
    rois = cp.zeros((3, 4), dtype=cp.float32)
    indices = cp.zeros(3, dtype=cp.int32)
    with pytest.raises(GpuKernelError, match=r"ROIAlign_TRT: output is float32 \[3, 4, 2, 2\]"):
        run_arrays(NAME, {"output_height": 3, "output_width": 2}, [x, rois, indices],
                   [cp.zeros((3, 4, 2, 2), dtype=cp.float32)])  # fmt: skip
    with pytest.raises(GpuKernelError, match="ROIAlign_TRT: tensors must be C-contiguous"):
        run_arrays(NAME, {}, [x, cp.zeros((4, 3), dtype=cp.float32).T, indices],
                   [cp.zeros((3, 4, 1, 1), dtype=cp.float32)])  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
def test_enqueue_runs_the_kernel(cp: Any, dtype: Any) -> None:
    """The IPluginV3 enqueue path: TensorRT's pointers, int32 indices, a stream of its own."""
    schema = load_catalog().get(NAME)
    fields = fields_of(0, 1, 2, 1 / 16, (7, 7))
    x, rois, indices = roi_case(6, 3, 20, 1 / 16)
    inputs = [x.astype(dtype), rois.astype(dtype), indices.astype(np.int32)]
    want = expected(fields, *inputs)
    plugin = _plugin_class(fake_trt())(schema, fields)
    kind = {F32: "FLOAT", F16: "HALF"}[dtype]
    xs = [cp.asarray(a) for a in inputs]
    y = cp.full(want.shape, np.nan, dtype=dtype)
    stream = cp.cuda.Stream(non_blocking=True)
    cp.cuda.Device().synchronize()
    descs = [types.SimpleNamespace(dims=a.shape, type=k)
             for a, k in zip(xs, [kind, kind, "INT32"], strict=True)]  # fmt: skip
    plugin.enqueue(descs, [types.SimpleNamespace(dims=y.shape, type=kind)],
                   [a.data.ptr for a in xs], [y.data.ptr], 0, stream.ptr)  # fmt: skip
    stream.synchronize()
    assert_matches(cp.asnumpy(y), want, dtype)


# --- build-time checks and the creator's formats (no GPU needed) --------------------------------

X = (2, 256, 50, 68)
REFUSED = [
    ({}, [X, (10, 4)], ["float32"] * 2, "expected X, rois and batch_indices, got 2 inputs"),
    ({}, [X, (10, 4), (10,)], ["float32", "float32", "float32"],
     "X and rois must both be float32 or both float16 and batch_indices int32, got float32, "
     "float32, float32"),
    ({}, [X, (10, 4), (10,)], ["float16", "float32", "int32"], "X and rois must both be"),
    ({}, [X, (10, 4), (10,)], ["int32"] * 3, "X and rois must both be"),
    ({}, [(2, 256, 50), (10, 4), (10,)], ["float32", "float32", "int32"],
     r"X has shape \[2, 256, 50\]; expected rank 4"),
    ({}, [X, (10, 5), (10,)], ["float32", "float32", "int32"],
     r"rois has shape \[10, 5\]; dim 1 must be 4"),
    ({}, [X, (2, 10, 4), (10,)], ["float32", "float32", "int32"],
     r"rois has shape \[2, 10, 4\]; expected rank 2"),
    ({}, [X, (10, 4), (9,)], ["float32", "float32", "int32"],
     r"batch_indices has shape \[9\]; dim 0 must be 10"),
    ({}, [(2, 256, 0, 68), (10, 4), (10,)], ["float32", "float32", "int32"],
     r"X has shape \[2, 256, 0, 68\]; no pixels to sample"),
    ({"mode": 2}, [X, (10, 4), (10,)], ["float32", "float32", "int32"],
     r"mode must be 0 \(max\) or 1 \(avg\), got 2"),
    ({"coordinate_transformation_mode": -1}, [X, (10, 4), (10,)], ["float32", "float32", "int32"],
     "coordinate_transformation_mode must be 0"),
    ({"output_width": 0}, [X, (10, 4), (10,)], ["float16", "float16", "int32"],
     "output size must be at least 1x1, got 1x0"),
    ({"sampling_ratio": -2}, [X, (10, 4), (10,)], ["float32", "float32", "int32"],
     "sampling_ratio must be >= 0"),
    ({"spatial_scale": -0.25}, [X, (10, 4), (10,)], ["float32", "float32", "int32"],
     "spatial_scale must be a positive number, got -0.25"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "shapes", "dtypes", "message"), REFUSED)
def test_check_refuses_what_the_kernel_cannot_take(fields: dict, shapes: list, dtypes: list,
                                                   message: str) -> None:  # fmt: skip
    with pytest.raises(GpuKernelError, match=f"{NAME}: {message}"):
        check(NAME, shapes, dtypes, fields)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_check_accepts_unknown_dims(dtype: str) -> None:
    fields = fields_of(0, 1, 2, 0.25, (7, 7))
    check(NAME, [(-1, 256, -1, -1), (-1, 4), (-1,)], [dtype, dtype, "int32"], fields)
    check(NAME, [(1, 256, 200, 272), (0, 4), (0,)], [dtype, dtype, "int32"], fields)


def format_trt() -> types.ModuleType:
    """`fake_trt` with what supports_format_combination reads: TensorFormat, distinct types."""
    trt = fake_trt()
    trt.TensorFormat = types.SimpleNamespace(LINEAR="LINEAR", CHW32="CHW32")
    return trt


def test_creator_takes_int32_indices_beside_float_tensors() -> None:
    """The generic IPluginV3 plugin offers X, rois and Y in one float dtype (float32 or float16)
    and batch_indices as int32 only."""
    trt = format_trt()
    plugin = _plugin_class(trt)(load_catalog().get(NAME), fields_of(1, 1, 0, 0.25))

    def ok(*types_: str, fmt: str = "LINEAR") -> list[bool]:
        tensors = [types.SimpleNamespace(desc=types.SimpleNamespace(type=t, format=fmt))
                   for t in types_]  # fmt: skip
        return [plugin.supports_format_combination(pos, tensors, 3) for pos in range(4)]

    assert ok("FLOAT", "FLOAT", "INT32", "FLOAT") == [True] * 4
    assert ok("HALF", "HALF", "INT32", "HALF") == [True] * 4
    assert ok("HALF", "FLOAT", "FLOAT", "FLOAT") == [True, False, False, False]
    assert ok("FLOAT", "FLOAT", "INT32", "FLOAT", fmt="CHW32") == [False] * 4
    assert plugin.get_output_data_types(["FLOAT", "FLOAT", "INT32"]) == ["FLOAT"]
    assert plugin.get_output_data_types(["HALF", "HALF", "INT32"]) == ["HALF"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-rs"]))
