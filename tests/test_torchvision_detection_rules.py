"""rules/torchvision_detection.rules on torchvision's own detectors exported by PyTorch: the
batched-NMS `If`s become BatchedNMS_Surgery, RoiAlign becomes ROIAlign_TRT, every field read
from the graph, and `surgery validate` (onnxruntime, plugins by their references) passes.

The models lie in tests/data/onnx/ (made by make_detectors.py where torchvision imports; CI has
no torch). A field is proved to come from the graph by editing the graph and seeing it follow.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from surgery.cli import main

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules" / "torchvision_detection.rules"
DATA = REPO / "tests" / "data" / "onnx"
# file, (RPN and box-head NMS IoU), RoI align levels, pooled size, sampling ratio
MODELS = {
    "tv_fasterrcnn_fpn2_op17.onnx": ((0.7, 0.5), 2, 7, 2),
    "tv_fasterrcnn_fpn3_op16.onnx": ((0.7, 0.4), 3, 5, 0),
}


def attr(node: onnx.NodeProto, name: str) -> object:
    found = [a for a in node.attribute if a.name == name]
    return helper.get_attribute_value(found[0]) if found else None


def plugins(path: Path, op: str) -> list[onnx.NodeProto]:
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == op]


def rewrite(src: Path, out: Path) -> Path:
    assert main(["apply", str(RULES), str(src), "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_detector_becomes_plugins_that_validate(name: str, tmp_path: Path) -> None:
    ious, levels, pooled, sampling = MODELS[name]
    src, out, report = DATA / name, tmp_path / "out.onnx", tmp_path / "r.html"
    assert main(["apply", str(RULES), str(src), "-o", str(out), "--report", str(report)]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["If"] == 0 and ops["RoiAlign"] == 0
    nms = plugins(out, "BatchedNMS_Surgery")
    assert sorted(round(float(attr(n, "iou_threshold")), 6) for n in nms) == sorted(ious)
    align = plugins(out, "ROIAlign_TRT")
    assert len(align) == levels and all(n.domain == "trt.plugins" for n in nms + align)
    assert {(attr(n, "output_height"), attr(n, "sampling_ratio")) for n in align} == {
        (pooled, sampling)
    }
    # one FPN level each, finest first: 1/4, 1/8, ...
    assert sorted(float(attr(n, "spatial_scale")) for n in align) == sorted(
        0.25 / 2**k for k in range(levels)
    )
    assert "BatchedNMS_Surgery" in report.read_text()
    assert main(["validate", str(src), str(out)]) == 0


def test_a_wrong_plugin_field_fails_validate(tmp_path: Path) -> None:
    """validate is no formality: the box head's NMS at IoU 0.05 keeps other boxes."""
    src = DATA / "tv_fasterrcnn_fpn2_op17.onnx"
    out = rewrite(src, tmp_path / "out.onnx")
    model = onnx.load(str(out))
    (head,) = [n for n in model.graph.node if n.op_type == "BatchedNMS_Surgery"
               and abs(float(attr(n, "iou_threshold")) - 0.5) < 1e-6]  # fmt: skip
    (field,) = [a for a in head.attribute if a.name == "iou_threshold"]
    field.f = 0.05
    onnx.save(model, str(tmp_path / "wrong.onnx"))
    assert main(["validate", str(src), str(tmp_path / "wrong.onnx")]) == 1


def _edit_nms_iou(model: onnx.ModelProto, old: float, new: float) -> None:
    """Set the iou_threshold Constant inside the batched-NMS If whose value is `old`."""
    for node in model.graph.node:
        if node.op_type != "If":
            continue
        for branch in node.attribute:
            body = branch.g
            nms = [n for n in body.node if n.op_type == "NonMaxSuppression"]
            for const in body.node:
                if nms and const.op_type == "Constant" and const.output[0] == nms[0].input[3]:
                    value = numpy_helper.to_array(const.attribute[0].t)
                    if abs(float(value[0]) - old) < 1e-6:
                        const.attribute[0].t.CopyFrom(
                            numpy_helper.from_array(np.array([new], np.float32))
                        )


def test_fields_follow_the_graph(tmp_path: Path) -> None:
    """An NMS threshold inside an If branch and a RoiAlign attribute, edited in the model, are
    what the plugins get: the rules read them, they hold no literals of one configuration."""
    model = onnx.load(str(DATA / "tv_fasterrcnn_fpn2_op17.onnx"))
    _edit_nms_iou(model, 0.5, 0.33)
    for node in model.graph.node:
        if node.op_type == "RoiAlign":
            for a in node.attribute:
                if a.name == "sampling_ratio":
                    a.i = 3
            node.attribute.append(helper.make_attribute("mode", "max"))
    src = tmp_path / "edited.onnx"
    onnx.save(model, str(src))
    out = rewrite(src, tmp_path / "out.onnx")
    ious = sorted(round(float(attr(n, "iou_threshold")), 6)
                  for n in plugins(out, "BatchedNMS_Surgery"))  # fmt: skip
    assert ious == [0.33, 0.7]
    align = plugins(out, "ROIAlign_TRT")
    assert {(attr(n, "sampling_ratio"), attr(n, "mode")) for n in align} == {(3, 0)}
    assert main(["validate", str(src), str(out)]) == 0


def test_an_nms_with_a_cap_is_left_alone(tmp_path: Path) -> None:
    """A NonMaxSuppression that caps its boxes per class is not batched_nms: no rewrite."""
    model = onnx.load(str(DATA / "tv_fasterrcnn_fpn2_op17.onnx"))
    for node in model.graph.node:
        for branch in node.attribute if node.op_type == "If" else ():
            body = branch.g
            for nms in [n for n in body.node if n.op_type == "NonMaxSuppression"]:
                for const in body.node:
                    if const.op_type == "Constant" and const.output[0] == nms.input[2]:
                        const.attribute[0].t.CopyFrom(
                            numpy_helper.from_array(np.array([100], np.int64))
                        )
    src = tmp_path / "capped.onnx"
    onnx.save(model, str(src))
    out = rewrite(src, tmp_path / "out.onnx")
    assert not plugins(out, "BatchedNMS_Surgery") and len(plugins(out, "ROIAlign_TRT")) == 2
