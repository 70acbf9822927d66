"""`surgery export`: fixtures to ONNX (checked, run in onnxruntime vs TF), plugin ops, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tf2onnx")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from surgery.backends.export.plugin_nodes import PluginFieldError  # noqa: E402
from surgery.backends.onnx_export import ExportError, export_onnx  # noqa: E402
from surgery.engine.run import apply_rules  # noqa: E402
from surgery.ir import model_io  # noqa: E402
from surgery.ir.onnx_io import PLUGIN_DOMAIN  # noqa: E402
from surgery.lang.rule_parser import load_rules  # noqa: E402
from surgery.ops.plugin_schema import field_attr, load_catalog  # noqa: E402
from surgery.passes.tf_reference import random_feeds, run_graph_def  # noqa: E402

GOLDEN = Path(__file__).parent / "rules_golden"
TOLERANCE = {"box3d": 1e-4, "unet": 1e-4, "resnet50": 1e-3, "detector": 1e-4}


def _run_onnx(path: Path, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(outputs, feeds)


def to_plugin(graph, node_name: str, creator: str, inputs, **fields) -> None:
    """Turn node `node_name` into a plugin node by direct Graph edits."""
    schema = load_catalog().get(creator)
    node = graph.node(node_name)
    graph.set_inputs(node_name, inputs)
    graph.set_op(node_name, creator)
    for key in list(node.proto.attr):
        del node.proto.attr[key]
    for key, value in fields.items():
        node.proto.attr[key].CopyFrom(field_attr(schema, key, value))


def unet_with_resize_plugins(unet_pb: Path):
    graph = model_io.load(unet_pb)
    for node in graph.nodes_by_op("ResizeNearestNeighbor"):
        to_plugin(graph, node.name, "ResizeNearest_TRT", [node.inputs[0]], scale=2.0)
    return graph


@pytest.mark.parametrize("name", ["box3d", "unet", "resnet50", "detector"])
def test_fixture_exports_and_matches_tensorflow(name, fixture_info, tmp_path):
    info = fixture_info[name]
    out = tmp_path / f"{name}.onnx"
    result = export_onnx(info.path, out, outputs=list(info.outputs))
    assert result.plugins == {}
    onnx.checker.check_model(str(out))
    feeds = random_feeds(info, seed=1)
    expected = run_graph_def(info.path, feeds, info.outputs)
    got = _run_onnx(out, feeds, list(info.outputs))
    for tensor, value in zip(info.outputs, got, strict=True):
        np.testing.assert_allclose(value, expected[tensor], rtol=1e-3, atol=TOLERANCE[name])


def test_plugin_nodes_become_custom_ops_with_nchw_inputs(unet_pb, tmp_path):
    out = tmp_path / "unet_plugins.onnx"
    result = export_onnx(unet_with_resize_plugins(unet_pb), out)
    model = onnx.load(str(out))
    assert any(o.domain == PLUGIN_DOMAIN for o in model.opset_import)
    plugins = [n for n in model.graph.node if n.domain == PLUGIN_DOMAIN]
    assert [n.op_type for n in plugins] == ["ResizeNearest_TRT"] * 3
    assert sorted(result.nchw_plugins) == sorted(n.name for n in plugins)
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in plugins:
        attrs = {a.name: a for a in node.attribute}
        assert attrs["scale"].type == onnx.AttributeProto.FLOAT and attrs["scale"].f == 2.0
        assert attrs["plugin_version"].s == b"1" and attrs["plugin_namespace"].s == b""
        assert producers[node.input[0]].op_type != "Transpose"  # reads the conv's NCHW output
    transposes = [n for n in model.graph.node if n.op_type == "Transpose"]
    assert len(transposes) == 1  # only the graph input's NHWC -> NCHW


def test_export_after_rules_and_external_data(box3d_pb, fixture_info, tmp_path):
    graph = model_io.load(box3d_pb)
    apply_rules(graph, [load_rules(GOLDEN / "leaky_relu.rules")])
    out = tmp_path / "box3d_rules.onnx"
    result = export_onnx(graph, out, outputs=list(fixture_info["box3d"].outputs), large_model=True)
    assert result.external_data == tmp_path / "box3d_rules.onnx.data"
    assert out.stat().st_size < 100_000 < result.external_data.stat().st_size
    model = onnx.load(str(out))
    lrelu = [n for n in model.graph.node if n.op_type == "LReLU_TRT"]
    assert len(lrelu) == 5 and all(n.domain == PLUGIN_DOMAIN for n in lrelu)
    slope = next(a for a in lrelu[0].attribute if a.name == "negSlope")
    assert slope.type == onnx.AttributeProto.FLOAT and slope.f == pytest.approx(0.1)


def test_external_data_model_runs(box3d_pb, fixture_info, tmp_path):
    info = fixture_info["box3d"]
    out = tmp_path / "box3d_ext.onnx"
    export_onnx(box3d_pb, out, outputs=list(info.outputs), large_model=True)
    feeds = random_feeds(info, seed=2)
    expected = run_graph_def(box3d_pb, feeds, info.outputs)
    got = _run_onnx(out, feeds, list(info.outputs))
    np.testing.assert_allclose(got[0], expected[info.outputs[0]], rtol=1e-3, atol=1e-4)


def test_wrong_field_type_names_node_and_field(box3d_pb, tmp_path):
    graph = model_io.load(box3d_pb)
    apply_rules(graph, [load_rules(GOLDEN / "leaky_relu.rules")])
    node = graph.nodes_by_op("LReLU_TRT")[0]
    node.proto.attr["negSlope"].s = b"steep"
    with pytest.raises(PluginFieldError, match=rf"{node.name}.*negSlope"):
        export_onnx(graph, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_tf2onnx_errors_fail_the_export(box3d_pb, tmp_path):
    graph = model_io.load(box3d_pb)
    relu = graph.nodes_by_op("Relu")[0]
    graph.add_node("foreign_pyfunc", "PyFunc", [relu.output(0)], attrs={})
    proto = graph.node("foreign_pyfunc").proto
    proto.attr["token"].s = b"pyfunc_0"
    proto.attr["Tin"].list.type.append(1)
    proto.attr["Tout"].list.type.append(1)
    with pytest.raises(ExportError, match="foreign_pyfunc"):
        export_onnx(graph, tmp_path / "partial.onnx")
    assert not (tmp_path / "partial.onnx").exists()
