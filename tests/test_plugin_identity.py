"""A plugin node is recognised per node, never by its op name alone: TensorFlow's own
`CropAndResize` (tf.image.crop_and_resize, every ROI-align model) shares its name with the
catalog plugin, and export, validate, support, the views and `set` must tell them apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from surgery.engine.run import apply_rules
from surgery.errors import RuleError
from surgery.ir import model_io
from surgery.ir.attrs import make_attr
from surgery.ir.graph import Graph
from surgery.ir.protos import GraphDef, NodeDef
from surgery.lang.rule_parser import load_rules, parse_rules
from surgery.ops.plugin_identity import is_plugin_node, plugin_schema_of
from surgery.ops.plugin_schema import field_attr, load_catalog
from surgery.views import node_style
from surgery.views import visualize as viz

RULES = Path(__file__).resolve().parent.parent / "rules"
CATALOG = load_catalog()
SCHEMA = CATALOG.get("CropAndResize")


def tf_crop_and_resize(name: str = "roi/CropAndResize", *, defaults: bool = True) -> NodeDef:
    """TensorFlow's CropAndResize as a frozen graph holds it (`defaults=False`: stripped)."""
    node = NodeDef(name=name, op="CropAndResize", input=["image", "boxes", "ind", "size"])
    node.attr["T"].CopyFrom(make_attr("float32", "type"))
    if defaults:
        node.attr["method"].CopyFrom(make_attr("bilinear", "string"))
        node.attr["extrapolation_value"].CopyFrom(make_attr(0.0, "float"))
    return node


def plugin_crop_and_resize(name: str = "crops", **fields: int) -> NodeDef:
    """The catalog plugin as a rule creates it: fields only, besides `_` attrs."""
    node = NodeDef(name=name, op="CropAndResize", input=["fmap", "rois"])
    for key, value in (fields or {"crop_height": 7, "crop_width": 7}).items():
        node.attr[key].CopyFrom(field_attr(SCHEMA, key, value))
    node.attr["_output_shapes"].CopyFrom(make_attr([[1, 3, 4, 7, 7]], "list(shape)"))
    return node


@pytest.mark.parametrize("use_tf", [True, False])
def test_tf_op_and_plugin_of_one_name_are_told_apart(use_tf: bool) -> None:
    assert plugin_schema_of(tf_crop_and_resize(), CATALOG, use_tf=use_tf) is None
    assert plugin_schema_of(tf_crop_and_resize(defaults=False), CATALOG, use_tf=use_tf) is None
    assert plugin_schema_of(plugin_crop_and_resize(), CATALOG, use_tf=use_tf) is SCHEMA
    # a plugin node lacking a required field is still the plugin (export then names the field)
    assert plugin_schema_of(plugin_crop_and_resize(crop_height=7), CATALOG, use_tf=use_tf) is SCHEMA
    lrelu = NodeDef(name="l", op="LReLU_TRT", input=["x"])
    assert is_plugin_node(lrelu, CATALOG, use_tf=use_tf)  # no TF op: the name is enough
    lrelu.attr["alpha"].CopyFrom(make_attr(0.1, "float"))
    assert is_plugin_node(lrelu, CATALOG, use_tf=use_tf)  # ... and export names the bad attr
    assert not is_plugin_node(NodeDef(name="r", op="Relu"), CATALOG, use_tf=use_tf)


def mixed_graph() -> Graph:
    """TensorFlow's CropAndResize and the plugin of that name side by side (NodeDefs only)."""
    graph_def = GraphDef()
    for name in ("image", "boxes", "ind", "size", "fmap", "rois"):
        graph_def.node.add(name=name, op="Placeholder")
    graph_def.node.append(tf_crop_and_resize())
    graph_def.node.append(plugin_crop_and_resize())
    return Graph(graph_def)


def test_set_on_a_plugin_field_needs_the_plugin_node() -> None:
    graph = mixed_graph()
    text = (
        'use plugins "trt-8.6"\nrule r:\n'
        "    match y = CropAndResize(a, b) where y.crop_width != 3\n    set y.crop_width = 3\n"
    )
    apply_rules(graph, [parse_rules(text, "t.rules")], CATALOG)
    assert graph.node("crops").attr["crop_width"].i == 3
    text = 'rule r:\n    match y = CropAndResize(a, b, c, d)\n    set y.crop_width = 3\n'
    with pytest.raises(RuleError) as err:
        apply_rules(graph, [parse_rules(text, "t.rules")], CATALOG)
    assert str(err.value) == (
        "t.rules:3:5: rule 'r' at 'roi/CropAndResize': set y.crop_width: node "
        "'roi/CropAndResize' is TensorFlow's CropAndResize (attrs T, extrapolation_value, "
        "method), not the catalog plugin of that name, so give the kind: "
        "`set y.crop_width: int = ...`"
    )


def test_view_colours_tf_op_as_tf_and_plugin_as_plugin() -> None:
    graph = mixed_graph()
    assert node_style.node_info(graph.node("roi/CropAndResize"))["cat"] == "pool"
    assert node_style.node_info(graph.node("crops"))["cat"] == "plugin"
    view, _caption = viz.view_graph(graph)
    assert view.nodes["roi/CropAndResize"]["cat"] == "pool"
    assert view.nodes["crops"]["cat"] == "plugin"


# --------------------------------------------------------------------------- real TF graphs
def crop_and_resize_pb(path: Path) -> Path:
    """A frozen TF graph whose ROI align is tf.image.crop_and_resize, as Matterport's is."""
    tf = pytest.importorskip("tensorflow")
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, 16, 16, 4], name="image")
        boxes = tf.constant([[0.1, 0.1, 0.6, 0.7], [0.0, 0.2, 1.0, 0.9], [0.3, 0.3, 0.5, 0.5]],
                            name="roi_align_classifier/boxes")  # fmt: skip
        box_ind = tf.zeros([3], tf.int32, name="roi_align_classifier/box_ind")
        crops = tf.image.crop_and_resize(image, boxes, box_ind, [5, 5],
                                         name="roi_align_classifier/CropAndResize")  # fmt: skip
        tf.identity(crops * 2.0, name="output")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def test_tf_crop_and_resize_exports_and_validates(tmp_path: Path) -> None:
    pytest.importorskip("tf2onnx")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from surgery.backends.onnx_export import export_onnx
    from surgery.backends.validate import plugin_nodes, validate
    from surgery.passes.tf_reference import run_graph_def

    pb = crop_and_resize_pb(tmp_path / "roi_align.pb")
    graph = model_io.load(pb)
    node = graph.node("roi_align_classifier/CropAndResize")
    assert {"T", "method", "extrapolation_value"} <= set(node.attr)
    out = tmp_path / "roi_align.onnx"
    result = export_onnx(pb, out)
    assert out.is_file() and result.plugins == {}  # no custom op
    model = onnx.load(str(out))
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    feeds = {"image:0": np.random.default_rng(0).random((1, 16, 16, 4), dtype=np.float32)}
    expected = run_graph_def(pb, feeds, ["output:0"])["output:0"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["output:0"], feeds)[0], expected, atol=1e-5)

    assert plugin_nodes(graph) == []
    report = validate(graph, model_io.load(pb))
    assert report.passed and report.plugins == []


def test_support_and_view_treat_the_tf_op_as_tf(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnx")
    from surgery.backends import trt_backend
    from surgery.backends.support import check_support

    pb = crop_and_resize_pb(tmp_path / "roi_align.pb")
    node = model_io.load(pb).node("roi_align_classifier/CropAndResize")
    assert node_style.node_info(node)["cat"] == "pool"
    if trt_backend.load_trt("tensorrt_rtx_bindings") is not None:
        # tf2onnx writes a Loop of Resize(tf_crop_and_resize), which TensorRT refuses; the
        # RTX 1.7 parser crashes on it, in a child process now, so that support still answers
        report = check_support(pb, "tensorrt-rtx")
        assert "CropAndResize" not in report.build_only
        assert [(f.op, f.nodes, f.source_ops) for f in report.findings] == [
            ("Loop", ["roi_align_classifier/CropAndResize"], ["CropAndResize"])
        ]
        assert "faster_rcnn.rules:crop_and_resize" in report.findings[0].rules
        assert "custom op" not in report.findings[0].reason
    monkeypatch.setattr(trt_backend, "_import_module", lambda name: None)
    report = check_support(pb, "tensorrt-10")  # static table: no custom op anywhere
    assert report.checked_by == "static table" and report.supported


def test_faster_rcnn_rewrite_exports_the_plugin(fixture_info, tmp_path: Path) -> None:
    pytest.importorskip("tf2onnx")
    onnx = pytest.importorskip("onnx")
    from surgery.backends.export.plugin_nodes import find_plugin_nodes
    from surgery.backends.onnx_export import export_onnx
    from surgery.ir.onnx_io import PLUGIN_DOMAIN
    from surgery.passes.prepare import drop_inferred_shapes
    from surgery.passes.shapes import annotate_shapes

    info = fixture_info["faster_rcnn_like"]
    original = model_io.load(info.path)
    assert [p.name for p in find_plugin_nodes(original, CATALOG)] == []
    out = tmp_path / "frcnn.onnx"
    export_onnx(original, out)  # the TF CropAndResize, before any rewrite
    graph = model_io.load(info.path)
    annotate_shapes(graph)
    apply_rules(graph, [load_rules(RULES / "faster_rcnn.rules")], CATALOG)
    drop_inferred_shapes(graph)  # as `surgery apply` does before writing
    plugins = {p.schema.name: p for p in find_plugin_nodes(graph, CATALOG)}
    assert sorted(plugins) == ["CropAndResize", "Proposal"]
    assert plugins["CropAndResize"].fields == {"crop_height": 7, "crop_width": 7}
    crop = graph.node(plugins["CropAndResize"].name)
    assert node_style.node_info(crop)["cat"] == "plugin"
    result = export_onnx(graph, out)
    assert sorted(result.plugins.values()) == ["CropAndResize", "Proposal"]
    model = onnx.load(str(out))
    custom = [n for n in model.graph.node if n.domain == PLUGIN_DOMAIN]
    assert sorted(n.op_type for n in custom) == ["CropAndResize", "Proposal"]
    attrs = {a.name for a in next(n for n in custom if n.op_type == "CropAndResize").attribute}
    assert {"crop_height", "crop_width"} <= attrs
