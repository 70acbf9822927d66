"""rules/ssd.rules and rules/faster_rcnn.rules on several configurations of their fixtures.

Every plugin field (and the SSD Input placeholder's shape) is compared with the configuration
the fixture was built from: the builder's defaults overridden by the FixtureSpec's params, not
literals. The rules read the fields from the graph; the anchor configurations, which the rule
language cannot read, are params: a fixture with other anchors is refused with the defaults and
rewritten right with `--set`.
"""

from __future__ import annotations

import importlib
import inspect
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorflow", reason="the detector fixtures need TensorFlow")

pytestmark = pytest.mark.slow

RULES = Path(__file__).resolve().parent.parent / "rules"
SSD_RULES = str(RULES / "ssd.rules")
FRCNN_RULES = str(RULES / "faster_rcnn.rules")


def _config(name: str) -> dict[str, Any]:
    """The arguments fixture `name` was built with: builder defaults, then the spec's params."""
    from surgery.models import FIXTURES

    spec = FIXTURES[name]
    module = importlib.import_module(spec.module)
    config = {
        key: p.default
        for key, p in inspect.signature(module.build).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    config.update(spec.params)
    return config


def _apply(
    rules: str, name: str, tmp: Path, capsys: Any, settings: tuple[str, ...] = ()
) -> tuple[int, Any, str]:
    """`surgery apply RULES MODEL -o OUT [--set ...]`: (exit code, rewritten graph, stderr)."""
    from surgery.cli import main
    from surgery.ir import model_io
    from surgery.models import fixture_path

    out = tmp / f"{name}.trt.pb"
    args = ["apply", rules, str(fixture_path(name)), "-o", str(out), "--log", str(tmp / "log.json")]
    for setting in settings:
        args += ["--set", setting]
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    return code, (model_io.load(out) if code == 0 else None), err


def _nodes(graph: Any, op: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, attribute values) of every node of `op`."""
    from surgery.ir.attrs import attr_value

    return [
        (node.name, {k: attr_value(v) for k, v in node.attr.items() if not k.startswith("_")})
        for node in graph
        if node.op == op
    ]


def _close(actual: Any, expected: Any) -> bool:
    """Float fields are float32 in the graph: equal to 1e-6."""
    if isinstance(expected, list | tuple):
        return len(actual) == len(expected) and all(map(_close, actual, expected))
    return math.isclose(float(actual), float(expected), rel_tol=1e-6, abs_tol=1e-7)


# ----------------------------------------------------------------------------------------- SSD
def _ssd_settings(config: dict[str, Any]) -> tuple[str, ...]:
    """--set for ssd.rules' anchor params, from a fixture's config."""
    ratios = ",".join(str(float(a)) for a in config["aspect_ratios"])
    return (f"anchor_min_scale={config['min_scale']}", f"anchor_max_scale={config['max_scale']}",
            f"anchor_aspect_ratios={ratios}")  # fmt: skip


def _check_ssd(graph: Any, config: dict[str, Any]) -> None:
    from surgery.models import ssd_like

    side = config["input_size"]
    ((_, placeholder),) = [n for n in _nodes(graph, "Placeholder") if n[0] == "Input"]
    assert list(placeholder["shape"]) == [1, side, side, 3]
    assert placeholder["dtype"] == "float32"
    ((_, anchors),) = _nodes(graph, "GridAnchor_TRT")
    # The backbone's feature maps are at strides 8 and 16 (SAME convolutions: ceil).
    assert anchors["numLayers"] == ssd_like.LAYERS
    assert anchors["featureMapShapes"] == [math.ceil(side / 8), math.ceil(side / 16)]
    assert _close(anchors["minSize"], config["min_scale"])
    assert _close(anchors["maxSize"], config["max_scale"])
    assert _close(anchors["aspectRatios"], config["aspect_ratios"])
    assert _close(anchors["variance"], ssd_like.VARIANCE)
    ((name, nms),) = _nodes(graph, "NMS_TRT")
    assert name == "NMS"
    assert nms["numClasses"] == config["num_classes"] + 1  # with the background
    assert nms["topK"] == config["max_per_class"]
    assert nms["keepTopK"] == config["max_total"]
    assert _close(nms["confidenceThreshold"], config["score_threshold"])
    assert _close(nms["nmsThreshold"], config["iou_threshold"])
    assert len(_nodes(graph, "FlattenConcat_TRT")) == 2


@pytest.mark.parametrize("name", ["ssd_like", "ssd_like_b"])
def test_ssd_fields_are_the_configs(name: str, tmp_path: Path, capsys: Any) -> None:
    code, graph, err = _apply(SSD_RULES, name, tmp_path, capsys)
    assert code == 0, err
    _check_ssd(graph, _config(name))


def test_ssd_configs_differ_where_the_fields_do() -> None:
    """The variant changes every field the rules read from the graph."""
    a, b = _config("ssd_like"), _config("ssd_like_b")
    for key in ("input_size", "num_classes", "max_per_class", "max_total", "iou_threshold",
                "score_threshold"):  # fmt: skip
        assert a[key] != b[key], key


def test_ssd_other_anchors_need_the_params(tmp_path: Path, capsys: Any) -> None:
    """Anchors other than the params' defaults: the graph's boxes per cell (5) disagree with the
    default aspect ratios (3 + 1), so `anchors` does not match and the NMS rule cannot find its
    priors; with the config's anchors given by --set, every field is the config's."""
    config = _config("ssd_like_anchors")
    code, _, err = _apply(SSD_RULES, "ssd_like_anchors", tmp_path, capsys)
    assert code == 1
    assert "concat_priorbox" in err and "rule 'postprocessor'" in err
    code, graph, err = _apply(SSD_RULES, "ssd_like_anchors", tmp_path, capsys,
                              _ssd_settings(config))  # fmt: skip
    assert code == 0, err
    _check_ssd(graph, config)


# ------------------------------------------------------------------------------- Faster R-CNN
def _frcnn_settings(config: dict[str, Any]) -> tuple[str, ...]:
    """--set for faster_rcnn.rules' anchor params, from a fixture's config."""
    sizes = ",".join(str(float(s)) for s in config["anchor_sizes"])
    ratios = ",".join(str(float(r)) for r in config["anchor_ratios"])
    return (f"anchor_sizes={sizes}", f"anchor_ratios={ratios}")


def _check_frcnn(graph: Any, config: dict[str, Any]) -> None:
    from surgery.models import faster_rcnn_like

    side = config["input_size"]
    ((name, proposal),) = _nodes(graph, "Proposal")
    assert name == "proposal"
    assert proposal["input_height"] == side and proposal["input_width"] == side
    assert proposal["rpn_stride"] == faster_rcnn_like.STRIDE
    assert _close(proposal["roi_min_size"], config["roi_min_size"])
    assert _close(proposal["nms_iou_threshold"], config["iou_threshold"])
    assert proposal["pre_nms_top_n"] == config["pre_nms"]
    assert proposal["post_nms_top_n"] == config["post_nms"]
    assert _close(proposal["anchor_sizes"], config["anchor_sizes"])
    assert _close(proposal["anchor_ratios"], config["anchor_ratios"])
    ((_, crop),) = _nodes(graph, "CropAndResize")
    assert crop["crop_height"] == config["pool"] and crop["crop_width"] == config["pool"]


def _validate(name: str, graph: Any) -> None:
    """The rewrite computes what the fixture computes (Proposal's reference on the plugin)."""
    from surgery.backends.validate import validate
    from surgery.ir.model_io import load
    from surgery.models import fixture_path

    report = validate(load(fixture_path(name)), graph, rtol=1e-4, atol=1e-5)
    assert report.passed, report.format()


@pytest.mark.parametrize("name", ["faster_rcnn_like", "faster_rcnn_like_b"])
def test_faster_rcnn_fields_are_the_configs(name: str, tmp_path: Path, capsys: Any) -> None:
    code, graph, err = _apply(FRCNN_RULES, name, tmp_path, capsys)
    assert code == 0, err
    _check_frcnn(graph, _config(name))


def test_faster_rcnn_configs_differ_where_the_fields_do() -> None:
    a, b = _config("faster_rcnn_like"), _config("faster_rcnn_like_b")
    for key in ("input_size", "pre_nms", "post_nms", "iou_threshold", "roi_min_size", "pool",
                "classes"):  # fmt: skip
        assert a[key] != b[key], key


def test_faster_rcnn_other_anchors_need_the_params(tmp_path: Path, capsys: Any) -> None:
    """9 anchors a cell against the defaults' 2 x 3: `proposal` does not match (a warning);
    with --set the fields are the config's and the rewrite validates numerically."""
    name = "faster_rcnn_like_anchors"
    config = _config(name)
    code, graph, err = _apply(FRCNN_RULES, name, tmp_path, capsys)
    assert code == 0 and "rule 'proposal' matched nothing" in err
    assert not _nodes(graph, "Proposal")
    code, graph, err = _apply(FRCNN_RULES, name, tmp_path, capsys, _frcnn_settings(config))
    assert code == 0, err
    _check_frcnn(graph, config)
    _validate(name, graph)
