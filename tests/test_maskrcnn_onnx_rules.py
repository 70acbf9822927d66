"""rules/maskrcnn_onnx.rules on real tf2onnx exports of Matterport's Mask R-CNN.

The models are Matterport's own code (the `matterport_small` and `matterport_medium` fixtures,
two configurations: image size, class count, NMS limits and thresholds, pool sizes), frozen and
exported to ONNX by tf2onnx with the image dims pinned (the regression cases' cached exports).
The rewrite is applied through the command line, checked by ONNX's checker, and validated
against the original with onnxruntime, the plugins run by their NumPy references.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from surgery.cli import main
from surgery.regression_cases import Case, load_cases

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow", reason="the fixtures are TensorFlow models")
pytest.importorskip("tf2onnx", reason="the ONNX models are made by tf2onnx")
pytest.importorskip("onnxruntime", reason="validate runs the ONNX models with onnxruntime")

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules" / "maskrcnn_onnx.rules"
CASES = REPO / "rules" / "cases" / "maskrcnn_onnx.toml"
PLUGINS = {"ResizeNearest_TRT": 3, "ProposalLayer_TRT": 1, "PyramidROIAlign_TRT": 2,
           "DetectionLayer_TRT": 1, "SpecialSlice_TRT": 1}  # fmt: skip
# what tf2onnx made of the ROI pipeline, all gone after the rewrite
REPLACED_OPS = {"TopK", "NonMaxSuppression", "Loop", "Resize", "Unique", "GatherND", "NonZero"}


Rewrite = tuple[Case, Path, Path]


def _case(name: str) -> Case:
    return next(c for c in load_cases(CASES) if c.name == name)


@pytest.fixture(scope="module", params=["small", "medium"])
def rewrite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rewrite:
    """(case, exported model, rewritten model) for one configuration."""
    from surgery.regression import exported_model

    case = _case(request.param)
    model = exported_model(case)
    out = tmp_path_factory.mktemp(f"maskrcnn_onnx_{case.name}") / "rewritten.onnx"
    settings = [arg for k, v in case.settings.items() for arg in ("--set", f"{k}={v}")]
    report = out.with_name("report.html")
    argv = ["apply", str(RULES), str(model), "-o", str(out), "--report", str(report), *settings]
    assert main(argv) == 0
    return case, model, out


def test_the_report_draws_every_section(rewrite: Rewrite) -> None:
    """The detection layer's rewrite removes ~90 helper nodes tf2onnx names outside any scope
    (nothing to collapse): its picture shows the first nodes and says so, the report is made."""
    text = rewrite[2].with_name("report.html").read_text()
    assert text.count('class="app"') >= 8 and "<svg" in text


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_the_export_holds_the_roi_pipeline_as_onnx_ops(rewrite: Rewrite) -> None:
    _, model, _ = rewrite
    ops = {n.op_type for n in onnx.load(str(model), load_external_data=False).graph.node}
    assert REPLACED_OPS <= ops


def test_rewrite_gives_the_plugins_with_fields_from_the_graph(rewrite: Rewrite) -> None:
    case, model, out = rewrite
    before = onnx.load(str(model), load_external_data=False)
    after = onnx.load(str(out))
    onnx.checker.check_model(after)
    counts: dict[str, int] = {}
    for node in after.graph.node:
        assert node.op_type not in REPLACED_OPS, node.name
        if node.domain == "trt.plugins":
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    assert counts == PLUGINS
    plugins = {n.name: _attrs(n) for n in after.graph.node if n.domain == "trt.plugins"}
    for expect in case.plugins:  # the configuration's values, as the case file states them
        if expect.name is None:
            continue
        fields = plugins[expect.name]
        for key, want in expect.fields.items():
            assert np.allclose(fields[key], want, rtol=1e-6), (expect.name, key)
    # the model's interface is kept: same inputs and outputs by name, type and shape
    assert after.graph.input == before.graph.input
    assert after.graph.output == before.graph.output


def test_rewrite_validates_against_the_original(
    rewrite: Rewrite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`surgery validate`, fed what the plugins imply for the anchors and the image meta."""
    from surgery.ir.model_io import load
    from surgery.regression import onnx_feeds

    case, model, out = rewrite
    feeds = onnx_feeds(case, load(model), load(out))
    np.savez(tmp_path / "feeds.npz", **feeds)
    capsys.readouterr()
    code = main(["validate", str(model), str(out), "--inputs", str(tmp_path / "feeds.npz")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "plugins run by reference: 8" in text and "PASS" in text
    assert "padding rows (class -1 vs 0) by DetectionLayer_TRT's contract" in text


def test_other_anchors_are_not_what_the_plugin_computes(rewrite: Rewrite) -> None:
    """Fed other anchors than ProposalLayer_TRT's, the models differ: the check is not vacuous."""
    from surgery.backends.validate_onnx import validate_onnx
    from surgery.ir.model_io import load
    from surgery.regression import onnx_feeds

    case, model, out = rewrite
    feeds = onnx_feeds(case, load(model), load(out))
    anchors = feeds["input_anchors:0"]
    feeds["input_anchors:0"] = np.ascontiguousarray(anchors[:, ::-1])  # the same, reordered
    assert not validate_onnx(model, out, feeds).passed


def test_a_wrong_detection_threshold_is_a_param(tmp_path: Path) -> None:
    """The detection NMS threshold is the one field rules cannot read (it lies in a Loop body):
    `--set` gives it, and the plugin carries it."""
    from surgery.regression import exported_model

    model = exported_model(_case("small"))
    out = tmp_path / "set.onnx"
    assert main(["apply", str(RULES), str(model), "-o", str(out),
                 "--set", "detection_nms_threshold=0.45"]) == 0  # fmt: skip
    detection = next(n for n in onnx.load(str(out)).graph.node
                     if n.op_type == "DetectionLayer_TRT")  # fmt: skip
    assert _attrs(detection)["iou_threshold"] == pytest.approx(0.45)
