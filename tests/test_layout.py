"""NHWC -> NCHW on real fixtures, validated against TensorFlow; Transpose pairs cancelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from surgery.cli import main
from surgery.ir import model_io
from surgery.passes import layout
from surgery.passes.tf_reference import random_feeds, run_graph_def


def data_formats(path: Path) -> set[str]:
    graph = model_io.load(path)
    return {
        n.attr["data_format"].s.decode()
        for n in graph.nodes_by_op("Conv2D", "MaxPool", "FusedBatchNormV3", "Conv2DBackpropInput")
    }


@pytest.mark.parametrize(
    ("fixture", "max_transposes"),
    # what may legitimately remain: the input's Transpose, one before each shape-dependent
    # reader (Flatten, a non-keep-dims reduction) and a pair around each NHWC-only op
    [("resnet50", 2), ("box3d", 2), ("unet", 8), ("detector", 4)],
)
def test_to_nchw_matches_tensorflow(fixture, max_transposes, fixture_info, tmp_path) -> None:
    info = fixture_info[fixture]
    out = tmp_path / f"{fixture}.nchw.pb"
    assert main(["layout", "nchw", str(info.path), "-o", str(out)]) == 0
    assert data_formats(out) == {"NCHW"}
    graph = model_io.load(out)
    assert len(graph.nodes_by_op("Transpose")) <= max_transposes
    feeds = random_feeds(info, seed=1)
    want = run_graph_def(info.path, feeds, info.outputs)
    got = run_graph_def(out, feeds, info.outputs)
    for name in info.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_nchw_inputs_take_transposed_feeds(fixture_info, tmp_path) -> None:
    info = fixture_info["resnet50"]
    graph = model_io.load(info.path)
    report = layout.to_nchw(graph, nchw_inputs=True)
    assert report.transposes_after <= 1  # only before the final non-keep-dims Mean
    out = tmp_path / "r.pb"
    model_io.save(graph, out)
    feeds = random_feeds(info, seed=2)
    want = run_graph_def(info.path, feeds, info.outputs)
    nchw = {k: v.transpose(0, 3, 1, 2) for k, v in feeds.items()}
    got = run_graph_def(out, nchw, info.outputs)
    for name in info.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_cpu_transpose_pairs_around_nhwc_convs_cancel(tmp_path) -> None:
    """The shape TF on CPU gives an NCHW model: Transpose -> Conv2D(NHWC) -> Transpose."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 3, 16, 16], name="x")
        h = x
        for i in range(3):
            w = tf.constant(rng.standard_normal((3, 3, h.shape[1], 8)).astype("float32"))
            t = tf.transpose(h, [0, 2, 3, 1], name=f"to_nhwc_{i}")
            c = tf.nn.conv2d(t, w, 1, "SAME", data_format="NHWC", name=f"conv_{i}")
            h = tf.nn.relu(tf.transpose(c, [0, 3, 1, 2], name=f"to_nchw_{i}"))
        tf.identity(h, name="out")
    src = tmp_path / "cpu.pb"
    src.write_bytes(graph.as_graph_def().SerializeToString(deterministic=True))
    loaded = model_io.load(src)
    report = layout.to_nchw(loaded)
    assert report.transposes_before == 6 and report.transposes_after == 0
    out = tmp_path / "cpu.nchw.pb"
    model_io.save(loaded, out)
    feeds = {"x": rng.standard_normal((1, 3, 16, 16)).astype("float32")}
    want = run_graph_def(src, feeds, ["out"])["out"]
    np.testing.assert_allclose(run_graph_def(out, feeds, ["out"])["out"], want, rtol=1e-4,
                               atol=1e-4)


def test_unknown_data_format_is_refused_naming_the_node(fixture_info, tmp_path) -> None:
    graph = model_io.load(fixture_info["box3d"].path)
    conv = graph.nodes_by_op("Conv2D")[0]
    conv.attr["data_format"].s = b"NWHC"
    with pytest.raises(layout.LayoutError, match=f"{conv.name}: data_format 'NWHC'"):
        layout.to_nchw(graph)


def test_maskrcnn_nhwc_to_nchw_matches_tensorflow(tmp_path) -> None:
    """The NHWC Mask R-CNN: crop_and_resize and the FPN resizes stay NHWC inside Transpose pairs."""
    from surgery.models import fixture_info as build_info

    info = build_info("maskrcnn_small_nhwc")
    graph = model_io.load(info.path)
    report = layout.to_nchw(graph)
    out = tmp_path / "maskrcnn.nchw.pb"
    model_io.save(graph, out)
    for node in graph.nodes_by_op("CropAndResize", "ResizeNearestNeighbor"):
        producer = graph.node(node.inputs[0].node)
        assert producer.op == "Transpose", node.name  # reads NHWC made from the NCHW flow
    assert report.converted and data_formats(out) == {"NCHW"}
    feeds = random_feeds(info, seed=4)
    # the RPN heads (rank 3 after their reshapes: same layout in both graphs) must agree closely;
    # detections pass through top-k and NMS, where float re-association can swap near-ties, so
    # the top-scoring rows must agree and the rest is only checked for shape
    boundaries = ["rpn_class/concat:0", "rpn_bbox/concat:0"]
    want = run_graph_def(info.path, feeds, [*info.outputs, *boundaries])
    got = run_graph_def(out, feeds, [*info.outputs, *boundaries])
    for name in boundaries:  # ~50 convolutions deep: NCHW kernels sum in another order
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-3)
    detections = info.outputs[0]
    assert got[detections].shape == want[detections].shape
    np.testing.assert_allclose(got[detections][0, :8], want[detections][0, :8], atol=1e-3)
