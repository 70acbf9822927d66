"""SSD- and Mask R-CNN-style graphsurgeon scripts, unmodified, on small frozen TF graphs."""

from __future__ import annotations

from pathlib import Path

import pytest

from surgery.compat import graphsurgeon as gs
from surgery.compat.preprocess import run_script
from surgery.ir.protos import GraphDef

pytest.importorskip("tensorflow")
from gs_scripts import tf_graphs  # noqa: E402

SCRIPTS = Path(__file__).parent / "gs_scripts"


def _run(builder, script: str) -> gs.DynamicGraph:
    graph_def = GraphDef()
    graph_def.ParseFromString(builder())
    graph = gs.DynamicGraph(graph_def)
    run_script(SCRIPTS / script, graph)
    graph.graph.check()
    return graph


def inputs(graph: gs.DynamicGraph, name: str) -> list[str]:
    return list(graph.node_map[name].input)


@pytest.fixture(scope="module")
def ssd() -> gs.DynamicGraph:
    return _run(tf_graphs.ssd_graph, "ssd_config.py")


@pytest.fixture(scope="module")
def maskrcnn() -> gs.DynamicGraph:
    return _run(tf_graphs.maskrcnn_graph, "maskrcnn_config.py")


def test_ssd_plugins_and_their_inputs(ssd):
    assert not ssd.find_nodes_by_path(
        ["Postprocessor/(?!keep_me).*", "MultipleGridAnchorGenerator/.*"]
    )
    assert inputs(ssd, "NMS") == ["concat_box_loc", "concat_priorbox", "concat_box_conf"]
    assert inputs(ssd, "concat_priorbox") == ["GridAnchor"]
    assert inputs(ssd, "concat_box_loc") == ["BoxPredictor_0/Reshape", "BoxPredictor_1/Reshape"]
    assert inputs(ssd, "concat_box_conf") == [
        "BoxPredictor_0/Reshape_1",
        "BoxPredictor_1/Reshape_1",
    ]
    assert inputs(ssd, "GridAnchor") == []
    assert ssd.node_map["Input"].op == "Placeholder" and gs.shape(ssd.node_map["Input"]) == (
        1,
        3,
        32,
        32,
    )
    assert "image_tensor" not in ssd.node_map
    assert inputs(ssd, "FeatureExtractor/conv1/Conv2D") == [
        "Input",
        "FeatureExtractor/conv1/kernel",
    ]


def test_ssd_typed_fields(ssd):
    nms = ssd.node_map["NMS"].attr
    assert nms["shareLocation_u_bool"].b is True  # a bool, not the int graphsurgeon wrote
    assert nms["varianceEncodedInTarget_u_bool"].WhichOneof("value") == "b"
    assert nms["topK_u_int"].i == 10
    assert nms["nmsThreshold_u_float"].f == pytest.approx(0.6)
    assert list(nms["inputOrder_u_ilist"].list.i) == [0, 2, 1]
    anchors = ssd.node_map["GridAnchor"].attr
    assert list(anchors["featureMapShapes_u_ilist"].list.i) == [16, 8]
    assert list(anchors["aspectRatios_u_flist"].list.f) == pytest.approx([1.0, 2.0, 0.5])
    assert ssd.node_map["concat_priorbox"].attr["axis"].i == 2  # create_node: no suffix


def test_ssd_ports_and_excluded_nodes(ssd):
    assert inputs(ssd, "detection_classes") == ["NMS:1"]  # was Postprocessor/TopKV2:1
    assert inputs(ssd, "detection_scores") == ["NMS"]
    assert inputs(ssd, "Postprocessor/keep_me") == [
        "NMS",
        "Postprocessor/keep_me/reduction_indices",
    ]
    assert inputs(ssd, "num_detections") == ["Postprocessor/keep_me"]
    assert not ssd.find_nodes_by_name("read")


def test_maskrcnn_plugins(maskrcnn):
    assert inputs(maskrcnn, "fpn_p5upsampled") == ["activation_2/Relu"]
    assert inputs(maskrcnn, "ROI") == ["rpn_class/concat", "rpn_bbox/concat"]
    assert inputs(maskrcnn, "roi_align_classifier") == [
        "input_image_meta",
        "activation_1/Relu",
        "fpn_p5upsampled",
        "ROI",
    ]
    assert inputs(maskrcnn, "mrcnn_detection") == ["mrcnn_class/Softmax", "ROI", "input_image_meta"]
    attrs = maskrcnn.node_map["ROI"].attr
    assert list(attrs["image_size_u_ilist"].list.i) == [3, 16, 16]
    assert attrs["iou_threshold_u_float"].f == pytest.approx(0.7)
    assert maskrcnn.node_map["roi_align_classifier"].attr["pooled_size_u_int"].i == 7


def test_maskrcnn_remove_connect_and_ports(maskrcnn):
    conv = "mrcnn_class_conv1/inner/Conv2D"
    assert inputs(maskrcnn, conv) == ["roi_align_classifier", "mrcnn_class_conv1/inner/kernel"]
    assert inputs(maskrcnn, "mrcnn_class/Softmax") == [conv]
    assert not maskrcnn.find_nodes_by_path("mrcnn_class_conv1/Reshape.*")
    assert inputs(maskrcnn, "output_roi_x") == ["ROI:1"]  # was ROI/unstack:1
    assert [n.name for n in maskrcnn.graph_outputs] == ["output_roi_x", "mrcnn_detection"]
    assert [n.name for n in maskrcnn.node_outputs["ROI"]] == [
        "output_roi_x",
        "roi_align_classifier",
        "mrcnn_detection",
    ]


def test_output_remap_on_a_real_graph():
    graph_def = GraphDef()
    graph_def.ParseFromString(tf_graphs.maskrcnn_graph())
    graph = gs.DynamicGraph(graph_def)
    roi = gs.create_plugin_node("ROI", op="ProposalLayer_TRT", keep_topk=8)
    graph.collapse_namespaces({"ROI": roi}, outputs={"ROI/TopKV2:1": 2, "ROI/unstack:1": 1})
    assert inputs(graph, "output_roi_indices") == ["ROI:2"]
    assert inputs(graph, "output_roi_x") == ["ROI:1"]
    assert inputs(graph, "output_rois") == ["ROI"]
    graph.graph.check()
