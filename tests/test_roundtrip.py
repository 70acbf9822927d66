"""Every fixture survives load -> save byte-identically (.pb and .pbtxt), and the detector's ports
and control edges mean what the Graph IR says they mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from surgery import models
from surgery.ir import model_io
from surgery.ir.ports import TensorRef
from surgery.ops import opdefs

SCOPE = "detector/detections"


@pytest.mark.parametrize("name", models.TEST_FIXTURES)
def test_roundtrip_pb_and_pbtxt(name: str, fixture_info, tmp_path: Path) -> None:
    source = fixture_info[name].path
    original = source.read_bytes()
    graph = model_io.load(source)
    out_pb = model_io.save(graph, tmp_path / "same.pb", inputs=(source,))
    assert out_pb.read_bytes() == original
    out_txt = model_io.save(graph, tmp_path / "same.pbtxt", inputs=(source,))
    from_txt = model_io.load(out_txt)
    again_txt = model_io.save(from_txt, tmp_path / "again.pbtxt", inputs=(out_txt,))
    assert again_txt.read_bytes() == out_txt.read_bytes()
    back_pb = model_io.save(from_txt, tmp_path / "back.pb", inputs=(out_txt,))
    assert back_pb.read_bytes() == original
    assert source.read_bytes() == original  # the input is never touched


def test_multi_output_consumers_by_port(detector_pb: Path) -> None:
    graph = model_io.load(detector_pb)
    split = f"{SCOPE}/split_head/split"
    assert graph.node(split).op == "Split"
    by_port = {p: [(n.name, s) for n, s in graph.consumers(f"{split}:{p}")] for p in (0, 1, 2)}
    assert by_port[1] == [(f"{SCOPE}/decode/unstack_1", 0)]
    assert by_port[2] == [(f"{SCOPE}/decode/clip_by_value/Minimum", 0)]
    assert by_port[0] == [(f"{SCOPE}/scores/Softmax", 0)]
    assert graph.consumers(split) == graph.consumers(f"{split}:0")
    assert graph.consumers(TensorRef(split, 0)) == graph.consumers(f"{split}:0")
    assert graph.used_ports(split) == [0, 1, 2]
    assert graph.node(f"{SCOPE}/decode/unstack_1").inputs == (TensorRef(split, 1),)
    # TopKV2:1 (indices) feeds GatherV2 at its `indices` slot; TopKV2:0 feeds the scores.
    topk = f"{SCOPE}/top_k/TopKV2"
    (gather, slot), = graph.consumers(f"{topk}:1")
    assert gather.op == "GatherV2" and opdefs.node_input_roles(gather)[slot] == "indices"
    assert opdefs.output_roles("TopKV2") == ["values", "indices"]
    assert {n.name for n, _ in graph.consumers(topk)} >= {f"{SCOPE}/scores_1"}
    # Unpack of the softmax is read at :1 only (foreground), Unpack of anchors at :0..:3.
    assert graph.used_ports(f"{SCOPE}/scores/unstack") == [1]
    assert graph.used_ports(f"{SCOPE}/decode/unstack") == [0, 1, 2, 3]


def test_control_edges_are_their_own_kind(detector_pb: Path) -> None:
    graph = model_io.load(detector_pb)
    checks = f"{SCOPE}/checks/all_checks"
    assert graph.node(checks).op == "NoOp"
    assert graph.consumers(checks) == []  # a NoOp has no data outputs
    users = {n.name for n in graph.control_consumers(checks)}
    assert users == {f"{SCOPE}/boxes", f"{SCOPE}/scores_1"}
    boxes = graph.node(f"{SCOPE}/boxes")
    assert boxes.controls == (checks,)
    assert boxes.inputs == (TensorRef(f"{SCOPE}/top_k/GatherV2", 0),)
    assert graph.node("Identity").controls == ("NoOp",)
    assert graph.nodes_by_op("Assert")
    assert set(graph.consumer_names(checks)) == users


def test_conv2d_backprop_input_operand_roles(detector_pb: Path) -> None:
    graph = model_io.load(detector_pb)
    (deconv,) = graph.nodes_by_op("Conv2DBackpropInput")
    roles = dict(zip(opdefs.node_input_roles(deconv), deconv.inputs, strict=True))
    assert list(roles) == ["input_sizes", "filter", "out_backprop"]
    assert graph.node(roles["input_sizes"].node).op == "Pack"
    assert roles["out_backprop"].node == "detector/backbone/conv3/Relu"
    weights = graph.node(roles["filter"].node)
    assert weights.op == "Identity" and graph.node(weights.inputs[0].node).op == "Const"
