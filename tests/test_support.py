"""`surgery support`: unsupported ops grouped, with the rules that would rewrite them."""

from __future__ import annotations

from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("tf2onnx")

from onnx import TensorProto, helper  # noqa: E402

from surgery import cli  # noqa: E402
from surgery.backends import trt_backend  # noqa: E402
from surgery.backends.support import check_support, rule_index  # noqa: E402
from surgery.engine.run import apply_rules  # noqa: E402
from surgery.ir import model_io  # noqa: E402
from surgery.lang.rule_parser import load_rules  # noqa: E402
from tests.test_export import GOLDEN, to_plugin, unet_with_resize_plugins  # noqa: E402

HAS_RTX = trt_backend.load_trt("tensorrt_rtx_bindings") is not None


def box3d_with_plugins(box3d_pb: Path):
    """box3d with LeakyRelu -> LReLU_TRT (rule) and l2_normalize -> L2Norm_Surgery (edit)."""
    graph = model_io.load(box3d_pb)
    apply_rules(graph, [load_rules(GOLDEN / "leaky_relu.rules")])
    mul = next(n for n in graph.nodes_by_op("Mul") if graph.node(n.inputs[1].node).op == "Rsqrt")
    chain, x = [], mul.inputs[0]
    node = graph.node(mul.inputs[1].node)
    while node.op in ("Rsqrt", "Maximum", "Sum", "Square"):
        chain.append(node.name)
        node = graph.node(node.inputs[0].node)
    to_plugin(graph, mul.name, "L2Norm_Surgery", [x], axis=-1)
    graph.remove_nodes(chain)
    return graph


def test_rule_index_anchors_on_match_roots():
    index = rule_index(GOLDEN)
    assert index["LeakyRelu"] == ["leaky_relu.rules:leaky_relu"]


@pytest.mark.skipif(not HAS_RTX, reason="TensorRT-RTX is not installed")
def test_plugin_ops_rtx_cannot_host(box3d_pb, tmp_path):
    pb = tmp_path / "box3d_plugins.pb"
    model_io.save(box3d_with_plugins(box3d_pb), pb)
    report = check_support(pb, "tensorrt-rtx", GOLDEN, python_plugins=False)
    found = {f.op: len(f.nodes) for f in report.findings}
    assert found == {"LReLU_TRT": 5, "L2Norm_Surgery": 1}
    assert report.findings[0].source_ops == ["LReLU_TRT"]
    assert check_support(pb, "tensorrt-rtx", GOLDEN).supported  # our Python creators host them


@pytest.mark.skipif(not HAS_RTX, reason="TensorRT-RTX is not installed")
def test_resize_plugin_on_the_cli(unet_pb, tmp_path, capsys):
    pb = tmp_path / "unet_plugins.pb"
    model_io.save(unet_with_resize_plugins(unet_pb), pb)
    code = cli.main(["support", str(pb), "--target", "tensorrt-rtx", "--no-python-plugins"])
    text = capsys.readouterr().out
    assert code == 3 and "ResizeNearest_TRT x3" in text


def test_static_table_for_tensorrt_without_library(tmp_path, monkeypatch):
    monkeypatch.setattr(trt_backend, "_import_module", lambda name: None)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Normalize_TRT", ["r"], ["n"], name="norm", domain="trt.plugins"),
        helper.make_node("Unique", ["n"], ["y"], name="uniq"),
        helper.make_node("Mystery_TRT", ["y"], ["z"], name="mystery", domain="trt.plugins"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )  # fmt: skip
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    report = check_support(path, "tensorrt-10", GOLDEN)
    assert report.checked_by == "static table"
    assert {f.op: f.nodes for f in report.findings} == {
        "Unique": ["uniq"], "Mystery_TRT": ["mystery"],
    }  # Normalize_TRT is in TensorRT's plugin library


@pytest.mark.skipif(not HAS_RTX, reason="TensorRT-RTX is not installed")
def test_resize_nearest_from_tensorflow_is_rejected_by_rtx(unet_pb):
    """tf2onnx exports ResizeNearestNeighbor as Resize(tf_half_pixel_for_nn, round_prefer_ceil),
    which TensorRT-RTX's parser refuses: the reason the ResizeNearest_TRT rewrite exists."""
    report = check_support(unet_pb, "tensorrt-rtx", GOLDEN)
    assert [f.op for f in report.findings] == ["Resize"]
    assert "round_prefer_floor" in report.findings[0].reason
