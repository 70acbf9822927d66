"""GPU kernels of the ROI and layout plugins (plugins/gpu/roi_align.py, layout_ops.py) against
their NumPy references: PyramidROIAlign_TRT, CropAndResize, SpecialSlice_TRT, FlattenConcat_TRT,
GridAnchor_TRT and Normalize_TRT, in float32 and float16, through `run_arrays` and through the
IPluginV3 `enqueue`. The kernel tests need CuPy and a CUDA GPU and skip without them; the
build-time `check` tests run everywhere. Runnable as a script too.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pytest

from plugins.gpu import GpuKernelError, check, run_arrays
from plugins.reference.pyramid_roi_align import _box, _settings, level_of
from plugins.registry import reference
from plugins.trt.creators import _plugin_class
from surgery.ops.plugin_schema import load_catalog

F32, F16 = np.float32, np.float16
DTYPES = [F32, F16]
PYRAMID = "PyramidROIAlign_TRT"
CROP = "CropAndResize"
MATTERPORT = {"image_size": [1024, 2048], "fpn_scale": 224, "roi_coords_absolute": 0,
              "roi_coords_swap": 1, "roi_coords_transform": -1, "sampling_ratio": 1}  # fmt: skip
"""PyramidROIAlign_TRT's fields as rules/maskrcnn.rules sets them for Matterport's Mask R-CNN."""


def expected(name: str, fields: dict[str, Any], inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The reference's outputs for `inputs` (computed in float32 from their values)."""
    return reference(name)([x.astype(F32) for x in inputs], dict(fields))


def on_gpu(cp: Any, name: str, fields: dict[str, Any], inputs: Sequence[np.ndarray],
           out_shapes: Sequence[tuple[int, ...]],
           out_dtype: Any = None) -> list[np.ndarray]:  # fmt: skip
    """`run_arrays` on device copies; outputs start as NaN so that an unwritten one shows."""
    dtype = out_dtype or inputs[0].dtype
    xs = [cp.asarray(x) for x in inputs]
    ys = [cp.full(shape, np.nan, dtype=dtype) for shape in out_shapes]
    run_arrays(name, fields, xs, ys)
    return [cp.asnumpy(y) for y in ys]


def assert_matches(got: np.ndarray, want: np.ndarray, dtype: Any) -> None:
    """float32: to float32 rounding; float16: to one float16 step of the reference's value."""
    assert got.dtype == dtype and got.shape == want.shape
    assert not np.isnan(got).any(), "the kernel left outputs unwritten (NaN)"
    if dtype == F32:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(got.astype(F32), want.astype(F16).astype(F32), rtol=1e-3,
                                   atol=1e-3)  # fmt: skip


def maps_of(rng: np.random.Generator, batch: int, channels: int,
            sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:  # fmt: skip
    """Standard-normal feature maps [batch, channels, h, w], float16-exact values."""
    return [rng.standard_normal((batch, channels, h, w)).astype(F16).astype(F32) for h, w in sizes]


def pixel_rois(rng: np.random.Generator, batch: int, count: int, height: int = 1024,
               width: int = 1024) -> np.ndarray:  # fmt: skip
    """[batch, count, 4] (x1, y1, x2, y2) pixel boxes of 4..800 pixels, some reaching outside
    the image; the first row of each image all zero (padding)."""
    centre = rng.uniform(-40, [width + 40, height + 40], (batch, count, 2))
    size = np.exp(rng.uniform(np.log(4), np.log(800), (batch, count, 2)))
    rois = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    rois[:, 0] = 0
    return rois.astype(F16).astype(F32)


def unit_rois(rng: np.random.Generator, batch: int, count: int) -> np.ndarray:
    """[batch, count, 4] normalised boxes in [-0.2, 1.2] in any corner order; row 0 zero."""
    rois = rng.uniform(-0.2, 1.2, (batch, count, 4))
    rois[:, 0] = 0
    return rois.astype(F16).astype(F32)


def levels(rois: np.ndarray, fields: dict[str, Any]) -> np.ndarray:
    """The reference's pyramid level (0..3) of every ROI."""
    cfg = _settings({"pooled_size": 2, **fields})
    return np.array([level_of(_box(r, cfg), cfg) for r in rois.reshape(-1, 4)])


def run_pyramid(cp: Any, fields: dict[str, Any], rois: np.ndarray, maps: list[np.ndarray],
                dtype: Any, want: np.ndarray | None = None) -> None:  # fmt: skip
    """Pool on the GPU in `dtype` and compare with the reference (or with `want`)."""
    inputs = [rois.astype(dtype), *(m.astype(dtype) for m in maps)]
    if want is None:
        (want,) = expected(PYRAMID, fields, inputs)
    pooled = fields["pooled_size"]
    shape = (maps[0].shape[0], rois.shape[1], maps[0].shape[1], pooled, pooled)
    (got,) = on_gpu(cp, PYRAMID, fields, inputs, [shape])
    assert_matches(got, want, dtype)


# --- PyramidROIAlign_TRT -------------------------------------------------------------------------

FIELD_SETS = {
    "aligned": {"pooled_size": 7},
    "legacy-mrcnn": {"pooled_size": 3, "roi_coords_transform": 0},
    "half-pixel-ratio2": {"pooled_size": 4, "roi_coords_transform": 1, "sampling_ratio": 2},
    "corners-swap": {"pooled_size": 5, "roi_coords_transform": -1, "roi_coords_swap": 1},
    "legacy-preset": {"pooled_size": 2, "legacy": 1},
    "unit-plusone": {"pooled_size": 3, "roi_coords_absolute": 0, "roi_coords_plusone": 1,
                     "image_size": [300, 500]},
    "matterport": {"pooled_size": 7, **MATTERPORT},
    "pooled1": {"pooled_size": 1},
}  # fmt: skip
MAP_SETS = {"small": (5, [(40, 60), (20, 30), (10, 15), (5, 8)]),
            "square": (3, [(64, 64), (32, 32), (16, 16), (8, 8)])}  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("maps", MAP_SETS)
@pytest.mark.parametrize("mode", FIELD_SETS)
def test_pyramid_matches_reference(cp: Any, mode: str, maps: str, batch: int, dtype: Any) -> None:
    fields = FIELD_SETS[mode]
    rng = np.random.default_rng(len(mode) + batch)
    channels, sizes = MAP_SETS[maps]
    absolute = fields.get("roi_coords_absolute", 1) and not fields.get("legacy")
    if absolute:
        image = fields.get("image_size", [1024, 1024])
        rois = pixel_rois(rng, batch, 17, image[0], image[1])
    else:
        rois = unit_rois(rng, batch, 17)
    run_pyramid(cp, fields, rois, maps_of(rng, batch, channels, sizes), dtype)


EDGE_BOXES = [
    [0, 0, 1024, 1024],  # the whole image, on its border
    [-100, -50, 300, 200],  # partly outside
    [1100, 1100, 1300, 1200],  # wholly outside: clipped to the corner
    [-300, 400, -10, 600],  # wholly outside on the left
    [500, 500, 500, 500],  # a point
    [100, 200, 100, 400],  # zero width
    [300, 300, 100, 100],  # corners given the other way round
    [1023.5, 0, 1024, 1024],  # a sliver on the right border
    [0, 0, 0, 0],  # padding rows, as Mask R-CNN sends
    [0, 0, 0, 0],
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["aligned", "legacy-mrcnn", "corners-swap", "pooled1"])
def test_pyramid_edge_boxes(cp: Any, mode: str, dtype: Any) -> None:
    rng = np.random.default_rng(3)
    rois = np.array([EDGE_BOXES, EDGE_BOXES[::-1]], dtype=F32)
    maps = maps_of(rng, 2, 4, [(64, 64), (32, 32), (16, 16), (8, 8)])
    run_pyramid(cp, FIELD_SETS[mode], rois, maps, dtype)


def boxes_on_level(rng: np.random.Generator, level: int, count: int) -> np.ndarray:
    """[count, 4] pixel boxes inside a 1024x1024 image whose area puts them on `level`
    (default fields: sides below 112 pixels P2, then up to 224, 448, and above P5)."""
    low, high = [(6, 100), (120, 210), (240, 430), (470, 1000)][level]
    side = rng.uniform(low, high, (count, 2))
    centre = rng.uniform(side / 2, 1024 - side / 2)
    return np.concatenate([centre - side / 2, centre + side / 2], axis=-1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spread", ["P2", "P3", "P4", "P5", "all"])
def test_pyramid_level_choice(cp: Any, spread: str, dtype: Any) -> None:
    rng = np.random.default_rng(5)
    if spread == "all":
        parts = [boxes_on_level(rng, level, 6) for level in range(4)]
        rois = np.concatenate(parts)[rng.permutation(24)][None].astype(F32)
        assert set(levels(rois, {})) == {0, 1, 2, 3}
    else:
        level = int(spread[1]) - 2
        rois = boxes_on_level(rng, level, 20)[None].astype(F32)
        assert set(levels(rois, {})) == {level}
    maps = maps_of(rng, 1, 6, [(256, 256), (128, 128), (64, 64), (32, 32)])
    run_pyramid(cp, {"pooled_size": 7}, rois, maps, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("channels", "sizes"),
    [(3, [(1, 1), (1, 2), (2, 1), (1, 1)]), (2, [(512, 384), (256, 192), (128, 96), (64, 48)]),
     (1, [(3, 700), (2, 350), (1, 175), (1, 88)])],  # fmt: skip
    ids=["tiny", "large", "one-row"],
)
def test_pyramid_tiny_and_large_maps(cp: Any, channels: int, sizes: list, dtype: Any) -> None:
    rng = np.random.default_rng(7)
    maps = maps_of(rng, 3, channels, sizes)
    for fields in ({"pooled_size": 7}, {"pooled_size": 2, **MATTERPORT}):
        rois = unit_rois(rng, 3, 12) if "image_size" in fields else pixel_rois(rng, 3, 12)
        run_pyramid(cp, fields, rois, maps, dtype)


@lru_cache(maxsize=4)
def coco_case(mode: str, pooled: int) -> tuple[dict[str, Any], np.ndarray, list[np.ndarray],
                                                np.ndarray]:  # fmt: skip
    """Matterport's COCO shapes: 1000 ROIs (the last 100 padding rows), 256 channels, P2..P5 of
    256^2..32^2; float16-exact inputs, so that one float32 reference serves both dtypes."""
    rng = np.random.default_rng(pooled)
    fields = {"pooled_size": pooled, **(MATTERPORT if mode == "matterport" else {})}
    centre = rng.uniform(0, 1, (1000, 2))
    size = np.exp(rng.uniform(np.log(8 / 1024), np.log(0.8), (1000, 2)))
    corners = np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=-1), 0, 1)
    if mode != "matterport":
        corners = corners[:, [1, 0, 3, 2]] * 1024  # x1, y1, x2, y2 pixels
    corners[900:] = 0
    rois = np.ascontiguousarray(corners[None]).astype(F16).astype(F32)
    maps = maps_of(rng, 1, 256, [(256, 256), (128, 128), (64, 64), (32, 32)])
    (want,) = expected(PYRAMID, fields, [rois, *maps])
    return fields, rois, maps, want


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pooled", [7, 14])
@pytest.mark.parametrize("mode", ["matterport", "aligned"])
def test_pyramid_matterport_coco_shapes(cp: Any, mode: str, pooled: int, dtype: Any) -> None:
    fields, rois, maps, want = coco_case(mode, pooled)
    assert len(set(levels(rois, fields))) >= 3
    run_pyramid(cp, fields, rois, maps, dtype, want=want)


# --- CropAndResize -------------------------------------------------------------------------------

CROP_EDGES = [
    [0, 0, 1, 1],  # the whole map, corner to corner
    [-0.5, -0.2, 0.5, 0.7],  # partly outside: zeros there
    [1.1, 1.2, 1.5, 1.9],  # wholly outside
    [0.3, 0.3, 0.3, 0.3],  # a point
    [0.2, 0.1, 0.2, 0.9],  # zero height
    [0.9, 0.8, 0.1, 0.2],  # flipped
    [1, 1, 1, 1],  # the last pixel exactly
    [0, 0, 0, 0],  # padding
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("crop", [(7, 7), (1, 1), (3, 1), (1, 5), (14, 9)])
@pytest.mark.parametrize("shape", [(4, 13, 17), (16, 64, 48)])
def test_crop_and_resize_matches_reference(cp: Any, shape: tuple, crop: tuple, batch: int,
                                           dtype: Any) -> None:  # fmt: skip
    rng = np.random.default_rng(sum(crop) + batch)
    image = rng.standard_normal((batch, *shape)).astype(dtype)
    rois = rng.uniform(-0.3, 1.3, (batch, 11, 4, 1))
    rois[:, : len(CROP_EDGES), :, 0] = CROP_EDGES
    rois = rois.astype(dtype)
    fields = {"crop_height": crop[0], "crop_width": crop[1]}
    (want,) = expected(CROP, fields, [image, rois])
    (got,) = on_gpu(cp, CROP, fields, [image, rois], [want.shape])
    assert_matches(got, want, dtype)
    assert np.all(got[:, 2] == 0)  # the box wholly outside


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 1, 1), (3, 1, 9), (2, 600, 700)], ids=["1x1", "1x9", "big"])
def test_crop_and_resize_tiny_and_large_maps(cp: Any, shape: tuple, dtype: Any) -> None:
    rng = np.random.default_rng(11)
    image = rng.standard_normal((2, *shape)).astype(dtype)
    rois = np.concatenate([np.tile(CROP_EDGES, (2, 1, 1)), rng.uniform(0, 1, (2, 5, 4))], axis=1)
    rois = rois.astype(dtype)  # [N, B, 4]: the rank-3 form
    fields = {"crop_height": 6, "crop_width": 4}
    (want,) = expected(CROP, fields, [image, rois])
    (got,) = on_gpu(cp, CROP, fields, [image, rois], [want.shape])
    assert_matches(got, want, dtype)


# --- SpecialSlice_TRT, FlattenConcat_TRT, GridAnchor_TRT, Normalize_TRT ---------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 100, 6), (3, 7, 6), (2, 1, 6)])
def test_special_slice_copies_the_boxes(cp: Any, shape: tuple, dtype: Any) -> None:
    det = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    (want,) = expected("SpecialSlice_TRT", {}, [det])
    (got,) = on_gpu(cp, "SpecialSlice_TRT", {}, [det], [want.shape])
    np.testing.assert_array_equal(got, want.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("axis", [1, 2, 3])
@pytest.mark.parametrize("ignore_batch", [0, 1])
def test_flatten_concat_joins_the_inputs(cp: Any, ignore_batch: int, axis: int, batch: int,
                                         dtype: Any) -> None:  # fmt: skip
    rng = np.random.default_rng(axis)
    shapes = [(batch, 24, 19, 19), (batch, 5), (batch, 1, 7, 3, 2), (batch, 16, 1, 1)]
    inputs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    fields = {"axis": axis, "ignoreBatch": ignore_batch}
    (want,) = expected("FlattenConcat_TRT", fields, inputs)
    (got,) = on_gpu(cp, "FlattenConcat_TRT", fields, inputs, [want.shape])
    np.testing.assert_array_equal(got, want.astype(dtype))


ANCHOR_FIELDS = {
    "ssd300": {"numLayers": 6, "minSize": 0.2, "maxSize": 0.95, "variance": [0.1, 0.1, 0.2, 0.2],
               "aspectRatios": [1.0, 2.0, 0.5, 3.0, 0.33],
               "featureMapShapes": [19, 10, 5, 3, 2, 1]},
    "one-layer": {"numLayers": 1, "minSize": 0.3, "maxSize": 0.9, "variance": [0.1, 0.1, 0.2, 0.2],
                  "aspectRatios": [1.0, 2.0, 0.5], "featureMapShapes": [64]},
}  # fmt: skip


@pytest.mark.parametrize("config", ANCHOR_FIELDS)
def test_grid_anchor_writes_the_priors(cp: Any, config: str) -> None:
    fields = ANCHOR_FIELDS[config]
    want = expected("GridAnchor_TRT", fields, [])
    got = on_gpu(cp, "GridAnchor_TRT", fields, [], [w.shape for w in want], out_dtype=F32)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("across", "shared"), [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("shape", [(512, 38, 38), (6, 5, 4)])
def test_normalize_matches_reference(cp: Any, shape: tuple, across: int, shared: int, batch: int,
                                     dtype: Any) -> None:  # fmt: skip
    rng = np.random.default_rng(batch + 2 * across + shared)
    x = rng.standard_normal((batch, *shape)).astype(dtype)
    x[0, :, 0, 0] = 0  # a zero channel vector: eps keeps it finite
    weights = [2.5] if shared else rng.uniform(0.5, 20, shape[0]).tolist()
    fields = {"weights": weights, "acrossSpatial": across, "channelShared": shared,
              "nbWeights": 1, "eps": 1e-10}  # fmt: skip
    (want,) = expected("Normalize_TRT", fields, [x])
    (got,) = on_gpu(cp, "Normalize_TRT", fields, [x], [x.shape])
    assert_matches(got, want, dtype)


def test_wrong_output_shape_is_refused(cp: Any) -> None:
    x = cp.zeros((1, 4, 8, 8), dtype=cp.float32)
    rois = cp.zeros((1, 3, 4), dtype=cp.float32)
    out = cp.zeros((1, 3, 4, 5, 5), dtype=cp.float32)
    with pytest.raises(GpuKernelError, match=r"CropAndResize: output is float32 \[1, 3, 4, 5, 5\]"):
        run_arrays(CROP, {"crop_height": 5, "crop_width": 6}, [x, rois], [out])
    with pytest.raises(GpuKernelError, match="PyramidROIAlign_TRT: output"):
        run_arrays(PYRAMID, {"pooled_size": 7}, [rois, x, x, x, x], [out])


# --- the IPluginV3 enqueue path, with a stand-in for the TensorRT module ------------------------


def fake_trt() -> types.ModuleType:
    """What SchemaPlugin reads from TensorRT: its base classes and DataType."""
    trt = types.ModuleType("fake_tensorrt")
    for base in ("IPluginV3", "IPluginV3OneCore", "IPluginV3OneBuild", "IPluginV3OneRuntime"):
        setattr(trt, base, type(base, (), {"__init__": lambda self: None}))
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT32="INT32")
    return trt


def enqueue_case(name: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Fields and inputs (several where the plugin takes several) for the enqueue test."""
    rng = np.random.default_rng(2)
    if name == PYRAMID:
        maps = maps_of(rng, 2, 3, [(32, 32), (16, 16), (8, 8), (4, 4)])
        return {"pooled_size": 7}, [pixel_rois(rng, 2, 9), *maps]
    if name == CROP:
        return {"crop_height": 5, "crop_width": 3}, [
            rng.standard_normal((2, 3, 9, 11)).astype(F32), rng.uniform(0, 1, (2, 6, 4, 1))]
    if name == "SpecialSlice_TRT":
        return {}, [rng.standard_normal((2, 10, 6))]
    if name == "FlattenConcat_TRT":
        return {"axis": 1, "ignoreBatch": 0}, [rng.standard_normal((2, 8, 3, 3)),
                                               rng.standard_normal((2, 4, 2, 2))]  # fmt: skip
    if name == "GridAnchor_TRT":
        return ANCHOR_FIELDS["ssd300"], []
    return {"weights": [1.0, 2.0, 3.0], "acrossSpatial": 0, "channelShared": 0, "nbWeights": 1,
            "eps": 1e-10}, [rng.standard_normal((2, 3, 5, 5))]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [PYRAMID, CROP, "SpecialSlice_TRT", "FlattenConcat_TRT",
                                  "GridAnchor_TRT", "Normalize_TRT"])  # fmt: skip
def test_enqueue_runs_the_kernel(cp: Any, name: str, dtype: Any) -> None:
    schema = load_catalog().get(name)
    if np.dtype(dtype).name not in schema.precisions:
        pytest.skip(f"{name} takes {schema.precisions} only (its schema's precisions)")
    fields, inputs = enqueue_case(name)
    inputs = [x.astype(dtype) for x in inputs]
    wants = expected(name, fields, inputs)
    plugin = _plugin_class(fake_trt())(schema, fields)
    kind = {F32: "FLOAT", F16: "HALF"}
    xs = [cp.asarray(x) for x in inputs]
    ys = [cp.full(w.shape, np.nan, dtype=dtype) for w in wants]
    stream = cp.cuda.Stream(non_blocking=True)
    cp.cuda.Device().synchronize()
    plugin.enqueue([types.SimpleNamespace(dims=x.shape, type=kind[dtype]) for x in xs],
                   [types.SimpleNamespace(dims=y.shape, type=kind[dtype]) for y in ys],
                   [x.data.ptr for x in xs], [y.data.ptr for y in ys], 0, stream.ptr)  # fmt: skip
    stream.synchronize()
    for y, want in zip(ys, wants, strict=True):
        assert_matches(cp.asnumpy(y), want, dtype)


# --- build-time checks (no GPU needed) ----------------------------------------------------------

MAP = (2, 256, 64, 64)
REFUSED = [
    (PYRAMID, {"pooled_size": 7}, [(2, 10, 4), MAP, MAP, MAP], ["float32"] * 4,
     "expected rois and 4 feature maps, got 4 inputs"),
    (PYRAMID, {"pooled_size": 7}, [(20, 4), MAP, MAP, MAP, MAP], ["float32"] * 5,
     r"rois has shape \[20, 4\]; expected rank 3"),
    (PYRAMID, {"pooled_size": 7}, [(2, 10, 5), MAP, MAP, MAP, MAP], ["float32"] * 5,
     r"rois has shape \[2, 10, 5\]; dim 2 must be 4"),
    (PYRAMID, {"pooled_size": 7}, [(2, 10, 4), MAP, MAP, (2, 256, 8), MAP], ["float32"] * 5,
     r"feature map P4 has shape \[2, 256, 8\]; expected rank 4"),
    (PYRAMID, {"pooled_size": 7}, [(2, 10, 4), MAP, MAP, MAP, (2, 128, 8, 8)], ["float32"] * 5,
     r"feature map P5 has shape \[2, 128, 8, 8\]; dim 1 must be 256"),
    (PYRAMID, {"pooled_size": 7}, [(3, 10, 4), MAP, MAP, MAP, MAP], ["float32"] * 5,
     r"feature map P2 has shape \[2, 256, 64, 64\]; dim 0 must be 3"),
    (PYRAMID, {"pooled_size": 7}, [(2, 10, 4), MAP, MAP, MAP, MAP], ["float32"] * 4 + ["float16"],
     "all inputs must be float32 or all float16, got float32, float32, float32, float32, float16"),
    (PYRAMID, {"pooled_size": 7}, [(2, 10, 4), MAP, MAP, MAP, MAP], ["int32"] * 5,
     "all inputs must be float32 or all float16"),
    (PYRAMID, {"pooled_size": 7, "roi_coords_transform": 5}, [(2, 10, 4), MAP, MAP, MAP, MAP],
     ["float32"] * 5, "roi_coords_transform must be -1..2, got 5"),
    (PYRAMID, {"pooled_size": 1, "roi_coords_transform": -1}, [(2, 10, 4), MAP, MAP, MAP, MAP],
     ["float32"] * 5, "pooled_size 1 is too small"),
    (CROP, {"crop_height": 7, "crop_width": 7}, [(2, 8, 9), (2, 5, 4, 1)], ["float32"] * 2,
     r"feature_map has shape \[2, 8, 9\]; expected rank 4"),
    (CROP, {"crop_height": 7, "crop_width": 7}, [MAP, (2, 5, 2, 2)], ["float32"] * 2,
     r"rois has shape \[2, 5, 2, 2\]; dim 2 must be 4"),
    (CROP, {"crop_height": 0, "crop_width": 7}, [MAP, (2, 5, 4)], ["float32"] * 2,
     "crop size must be positive, got 0x7"),
    (CROP, {"crop_height": 7, "crop_width": 7}, [MAP, (2, 5, 4)], ["float16", "float32"],
     "all inputs must be float32 or all float16"),
    ("SpecialSlice_TRT", {}, [(2, 100, 5)], ["float32"],
     r"detections has shape \[2, 100, 5\]; dim 2 must be 6"),
    ("SpecialSlice_TRT", {}, [(6,)], ["float32"], r"detections have shape \[6\]"),
    ("FlattenConcat_TRT", {"axis": 0, "ignoreBatch": 0}, [MAP], ["float32"],
     "axis must be 1, 2 or 3, got 0"),
    ("FlattenConcat_TRT", {"axis": 1, "ignoreBatch": 0}, [MAP, (3, 5)], ["float32"] * 2,
     r"input 1 has shape \[3, 5\]; dim 0 must be 2"),
    ("GridAnchor_TRT", {**ANCHOR_FIELDS["ssd300"], "featureMapShapes": [19, 10]}, [], [],
     r"featureMapShapes \[19, 10\] must give one positive side per layer \(6\)"),
    ("Normalize_TRT", {"weights": [1.0, 2.0], "acrossSpatial": 0, "channelShared": 0,
                       "nbWeights": 1, "eps": 1e-10}, [MAP], ["float32"],
     "expected 256 weights \\(one per channel\\), got 2"),
    ("Normalize_TRT", {"weights": [1.0], "acrossSpatial": 0, "channelShared": 1, "nbWeights": 1,
                       "eps": 1e-10}, [(2, 256, 64)], ["float32"],
     r"x has shape \[2, 256, 64\]; expected rank 4"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fields", "shapes", "dtypes", "message"), REFUSED,
                         ids=[f"{case[0]}-{i}" for i, case in enumerate(REFUSED)])  # fmt: skip
def test_check_refuses_what_the_kernel_cannot_take(name: str, fields: dict, shapes: list,
                                                   dtypes: list, message: str) -> None:  # fmt: skip
    with pytest.raises(GpuKernelError, match=f"{name}: {message}"):
        check(name, shapes, dtypes, fields)


@pytest.mark.parametrize(
    ("name", "fields", "shapes", "dtypes"),
    [(PYRAMID, {"pooled_size": 14, **MATTERPORT}, [(-1, 1000, 4), (-1, 256, -1, -1),
      (-1, 256, -1, -1), (-1, 256, -1, -1), (-1, 256, -1, -1)], ["float16"] * 5),
     (CROP, {"crop_height": 7, "crop_width": 7}, [(-1, 1024, -1, -1), (-1, 300, 4, 1)],
      ["float32"] * 2),
     ("FlattenConcat_TRT", {"axis": 1, "ignoreBatch": 0}, [(-1, 24, 19, 19), (-1, 5)],
      ["float32"] * 2),
     ("Normalize_TRT", {"weights": [20.0] * 512, "acrossSpatial": 0, "channelShared": 0,
                        "nbWeights": 1, "eps": 1e-10}, [(-1, 512, -1, -1)], ["float16"]),
     ("GridAnchor_TRT", ANCHOR_FIELDS["ssd300"], [], [])],
    ids=[PYRAMID, CROP, "FlattenConcat_TRT", "Normalize_TRT", "GridAnchor_TRT"],
)  # fmt: skip
def test_check_accepts_unknown_dims(name: str, fields: dict, shapes: list, dtypes: list) -> None:
    check(name, shapes, dtypes, fields)  # raises GpuKernelError if refused


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-rs"]))
