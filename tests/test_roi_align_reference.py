"""ROIAlign_TRT's NumPy reference (plugins/reference/roi_align.py) against onnxruntime's RoiAlign
(opset 16), the op it replaces and what `surgery validate` compares with: both coordinate modes,
avg and max, fixed and adaptive sampling, two spatial scales, ROIs outside, on the border and of
zero size, no ROIs, several images. Also its schema's shape and targets, and its field checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from plugins.registry import PluginReferenceError, reference
from surgery.ops.plugin_schema import load_catalog
from surgery.ops.targets import export_creator, provision
from tests.test_gpu_roi_align_trt import EDGE_ROIS, roi_case

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

NAME = "ROIAlign_TRT"
F32 = np.float32


def onnx_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The RoiAlign attributes that the plugin fields stand for."""
    return {
        "coordinate_transformation_mode": ("output_half_pixel", "half_pixel")[
            fields.get("coordinate_transformation_mode", 1)],
        "mode": ("max", "avg")[fields.get("mode", 1)],
        "output_height": fields.get("output_height", 1),
        "output_width": fields.get("output_width", 1),
        "sampling_ratio": fields.get("sampling_ratio", 0),
        "spatial_scale": float(fields.get("spatial_scale", 1.0)),
    }  # fmt: skip


def onnxruntime_roi_align(x: np.ndarray, rois: np.ndarray, indices: np.ndarray,
                          fields: dict[str, Any]) -> np.ndarray:  # fmt: skip
    """Y of one RoiAlign node run by onnxruntime's CPU provider."""
    node = helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["Y"],
                            **onnx_fields(fields))  # fmt: skip
    graph = helper.make_graph(
        [node], "roi_align",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("rois", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("batch_indices", TensorProto.INT64, None)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # its max-mode notice on every session
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    feeds = {"X": x, "rois": rois, "batch_indices": indices.astype(np.int64)}
    return session.run(None, feeds)[0]


def ours(x: np.ndarray, rois: np.ndarray, indices: np.ndarray,
         fields: dict[str, Any]) -> np.ndarray:  # fmt: skip
    """Y of the plugin's reference, batch_indices as the rewrite feeds them (int32)."""
    (y,) = reference(NAME)([x, rois, indices.astype(np.int32)], fields)
    return y


SAMPLES = [0, 1, 2]
SCALES = [0.25, 1 / 16]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("ratio", SAMPLES)
@pytest.mark.parametrize("mode", [1, 0], ids=["avg", "max"])
@pytest.mark.parametrize("ctm", [1, 0], ids=["half_pixel", "output_half_pixel"])
def test_matches_onnxruntime(ctm: int, mode: int, ratio: int, scale: float) -> None:
    x, rois, indices = roi_case(ratio + 3 * mode + 7 * ctm, 2, 24, scale)
    fields = {"coordinate_transformation_mode": ctm, "mode": mode, "output_height": 3,
              "output_width": 4, "sampling_ratio": ratio, "spatial_scale": scale}  # fmt: skip
    want = onnxruntime_roi_align(x, rois, indices, fields)
    got = ours(x, rois, indices, fields)
    assert got.shape == want.shape == (len(EDGE_ROIS) + 24, 5, 3, 4) and got.dtype == F32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.all(want[5] == 0) and np.all(want[6] == 0)  # the ROIs wholly outside
    assert np.abs(want).max() > 0.5


@pytest.mark.parametrize(("out", "ratio"), [((7, 7), 2), ((1, 1), 0), ((2, 5), 3), ((14, 14), 0)])
def test_output_sizes_and_large_maps(out: tuple[int, int], ratio: int) -> None:
    """Square, single-bin and non-square outputs; adaptive sampling of large ROIs (many samples
    per bin, grids of several sizes in one call) on a larger map, default fields otherwise."""
    rng = np.random.default_rng(sum(out) + ratio)
    x = rng.standard_normal((3, 4, 50, 68)).astype(F32)
    start = rng.uniform(-50, [1000, 1000], (40, 2))
    rois = np.concatenate([start, start + rng.uniform(4, 700, (40, 2))], axis=1).astype(F32)
    indices = np.repeat([2, 0, 1, 2], 10)
    fields = {"output_height": out[0], "output_width": out[1], "sampling_ratio": ratio,
              "spatial_scale": 1 / 16}  # fmt: skip
    want = onnxruntime_roi_align(x, rois, indices, fields)
    np.testing.assert_allclose(ours(x, rois, indices, fields), want, rtol=1e-6, atol=1e-7)


def test_defaults_are_onnx_defaults() -> None:
    """Fields left out mean what RoiAlign's attributes left out mean (1x1 avg, half_pixel,
    adaptive, scale 1)."""
    x, rois, indices = roi_case(1, 2, 6, 0.25)
    (got,) = reference(NAME)([x, rois, indices.astype(np.int32)], {})
    want = onnxruntime_roi_align(x, rois, indices, {})
    assert got.shape == (len(rois), 5, 1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", [1, 0], ids=["avg", "max"])
def test_no_rois(mode: int) -> None:
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 9)).astype(F32)
    rois, indices = np.zeros((0, 4), F32), np.zeros(0, np.int64)
    fields = {"mode": mode, "output_height": 2, "output_width": 3}
    want = onnxruntime_roi_align(x, rois, indices, fields)
    got = ours(x, rois, indices, fields)
    assert got.shape == want.shape == (0, 3, 2, 3)


def test_batch_indices_pick_the_image() -> None:
    """Each ROI pools its own image: every image constant, so its bins are that constant."""
    x = np.broadcast_to(np.array([1.5, -2.0, 7.0], F32)[:, None, None, None], (3, 2, 6, 6))
    rois = np.tile(np.array([[1, 1, 4, 5]], F32), (5, 1))
    indices = np.array([2, 0, 1, 1, 0])
    got = ours(np.ascontiguousarray(x), rois, indices, {"output_height": 2, "output_width": 2})
    np.testing.assert_allclose(got, np.broadcast_to(x[indices][:, :, :2, :2], got.shape),
                               rtol=1e-6)  # fmt: skip


def test_max_mode_takes_weighted_corner_terms() -> None:
    """onnxruntime's max: the largest *weighted* corner term, so one sample halfway between four
    pixels of 4 gives 4 * 0.5 * 0.5 = 1 (the interpolated value, and the avg, is 4)."""
    x = np.full((1, 1, 2, 2), 4.0, F32)
    rois = np.array([[0, 0, 1, 1]], F32)  # output_half_pixel: one sample at (0.5, 0.5)
    fields = {"mode": 0, "sampling_ratio": 1, "coordinate_transformation_mode": 0}
    want = onnxruntime_roi_align(x, rois, np.zeros(1, np.int64), fields)
    got = ours(x, rois, np.zeros(1, np.int64), fields)
    assert float(want[0, 0, 0, 0]) == pytest.approx(1.0)
    np.testing.assert_array_equal(got, want)
    fields["mode"] = 1
    assert float(ours(x, rois, np.zeros(1, np.int64), fields)[0, 0, 0, 0]) == pytest.approx(4.0)


@pytest.mark.parametrize(("fields", "inputs", "message"), [
    ({"mode": 2}, None, "mode must be 0 \\(max\\) or 1 \\(avg\\), got 2"),
    ({"coordinate_transformation_mode": 3}, None, "coordinate_transformation_mode must be 0"),
    ({"output_height": 0}, None, "output size must be at least 1x1, got 0x1"),
    ({"sampling_ratio": -1}, None, "sampling_ratio must be >= 0"),
    ({"spatial_scale": 0.0}, None, "spatial_scale must be a positive number"),
    ({}, "batch", r"batch_indices\[1\] = 2 is not an image of the batch of 2"),
    ({}, "rois", r"rois have shape \(3, 5\); expected \[R, 4\]"),
    ({}, "count", r"batch_indices have shape \(2,\); expected \[3\]"),
])  # fmt: skip
def test_refuses_bad_fields_and_inputs(fields: dict, inputs: str | None, message: str) -> None:
    x = np.zeros((2, 3, 8, 8), F32)
    rois = np.zeros((3, 4), F32)
    indices = np.zeros(3, np.int32)
    if inputs == "batch":
        indices[1] = 2
    elif inputs == "rois":
        rois = np.zeros((3, 5), F32)
    elif inputs == "count":
        indices = np.zeros(2, np.int32)
    with pytest.raises(PluginReferenceError, match=f"ROIAlign_TRT: {message}"):
        reference(NAME)([x, rois, indices], fields)


def test_schema_shape_dtypes_and_targets() -> None:
    schema = load_catalog().get(NAME)
    assert schema.input_names() == ["X", "rois", "batch_indices"]
    assert [schema.input_dtype(k) for k in range(3)] == ["float32", "float32", "int32"]
    assert schema.output_shapes([(2, 256, 50, 68), (1000, 4), (1000,)],
                                {"output_height": 7, "output_width": 5}) == [(1000, 256, 7, 5)]
    assert schema.output_shapes([(2, 8, 5, 5), (0, 4), (0,)], {}) == [(0, 8, 1, 1)]
    assert schema.precisions == ("float32", "float16")
    targets = dict(schema.targets)
    assert (targets["tensorrt-8.6"].version, targets["tensorrt-8.6"].interface) == (
        "1", "IPluginV2DynamicExt")  # fmt: skip
    for target in ("tensorrt-10", "tensorrt-11"):
        assert (targets[target].version, targets[target].interface) == ("2", "IPluginV3")
        assert export_creator(schema, target) == (NAME, "2")
    assert export_creator(schema, "tensorrt-8.6") == (NAME, "1")
    assert "RoiAlign" in (targets["tensorrt-11"].native or "")
    rtx = provision(schema, "tensorrt-rtx")
    assert rtx.provider == "surgery" and "RoiAlign" in (rtx.entry.native or "")
