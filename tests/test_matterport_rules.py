"""rules/maskrcnn.rules on Matterport's own Mask R-CNN (PyPI mrcnn-colab), at several configs.

The user's workflow, through the CLI: `layout nchw --input`, then `apply --input`. Every plugin
field is compared with the Matterport config the fixture was built from (not with literals):
the rules must read them from the graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorflow", reason="the Matterport fixtures need TensorFlow")
pytest.importorskip("tf_keras", reason="the Matterport fixtures need tf-keras")
pytest.importorskip("mrcnn", reason="the Matterport fixtures need mrcnn-colab (make setup)")

pytestmark = pytest.mark.slow

RULES = str(Path(__file__).resolve().parent.parent / "rules" / "maskrcnn.rules")
NMS_LIMIT = 1024  # ProposalLayer_TRT's creator limit (plugins/catalog/ProposalLayer_TRT.json)


def _config(name: str) -> Any:
    from surgery.models.matterport import matterport_config

    return matterport_config(name.removeprefix("matterport_").removesuffix("_tf1cf"))


def _input(config: Any) -> str:
    side = int(config.IMAGE_MAX_DIM)
    return f"input_image=1,{side},{side},3"


def _workflow(name: str, tmp: Path, capsys: Any) -> tuple[Any, str]:
    """layout nchw + apply, as a user runs them; (the rewritten graph, apply's stderr)."""
    from surgery.cli import main
    from surgery.ir import model_io
    from surgery.models import fixture_path

    model = str(fixture_path(name))
    flag = _input(_config(name))
    nchw, out = str(tmp / "n.pb"), str(tmp / "t.pb")
    assert main(["layout", "nchw", model, "-o", nchw, "--input", flag]) == 0
    capsys.readouterr()
    assert main(["apply", RULES, nchw, "-o", out, "--input", flag]) == 0
    err = capsys.readouterr().err
    return model_io.load(out), err


def _plugins(graph: Any) -> dict[str, list[dict[str, Any]]]:
    """op -> the field values of each node of that plugin."""
    from surgery.ir.attrs import attr_value
    from surgery.ops.plugin_schema import load_catalog

    catalog = load_catalog()
    out: dict[str, list[dict[str, Any]]] = {}
    for node in graph:
        if node.op in catalog:
            fields = {k: attr_value(v) for k, v in node.attr.items() if not k.startswith("_")}
            out.setdefault(node.op, []).append(fields)
    return out


def _close(a: Any, b: float) -> bool:
    return abs(float(a) - float(b)) < 1e-6


CONFIGS = ["matterport_small", "matterport_small_tf1cf", "matterport_medium"]


@pytest.mark.parametrize("name", CONFIGS)
def test_eight_plugins_with_the_configs_fields(name: str, tmp_path: Path, capsys: Any) -> None:
    config = _config(name)
    graph, err = _workflow(name, tmp_path, capsys)
    plugins = _plugins(graph)
    side = int(config.IMAGE_MAX_DIM)
    assert sorted((op, len(nodes)) for op, nodes in plugins.items()) == [
        ("DetectionLayer_TRT", 1), ("ProposalLayer_TRT", 1), ("PyramidROIAlign_TRT", 2),
        ("ResizeNearest_TRT", 3), ("SpecialSlice_TRT", 1),
    ]  # fmt: skip
    assert all(_close(p["scale"], 2.0) for p in plugins["ResizeNearest_TRT"])
    (proposal,) = plugins["ProposalLayer_TRT"]
    assert proposal["prenms_topk"] == min(config.PRE_NMS_LIMIT, NMS_LIMIT)
    assert proposal["keep_topk"] == config.POST_NMS_ROIS_INFERENCE
    assert _close(proposal["iou_threshold"], config.RPN_NMS_THRESHOLD)
    assert list(proposal["image_size"]) == [3, side, side]
    (detection,) = plugins["DetectionLayer_TRT"]
    assert detection["num_classes"] == config.NUM_CLASSES
    assert detection["keep_topk"] == config.DETECTION_MAX_INSTANCES
    assert _close(detection["score_threshold"], config.DETECTION_MIN_CONFIDENCE)
    assert _close(detection["iou_threshold"], config.DETECTION_NMS_THRESHOLD)
    pooled = sorted(p["pooled_size"] for p in plugins["PyramidROIAlign_TRT"])
    assert pooled == sorted([config.POOL_SIZE, config.MASK_POOL_SIZE])
    assert all(list(p["image_size"]) == [side, 2 * side] for p in plugins["PyramidROIAlign_TRT"])
    # the side inputs are left without readers, and apply says so
    assert "'input_anchors' has no readers" in err and "'input_image_meta' has no readers" in err
    clamped = config.PRE_NMS_LIMIT > NMS_LIMIT
    assert ("rule 'proposals'" in err and "clamped to 1024" in err) == clamped
    for op in ("StatelessWhile", "Enter", "CropAndResize", "TopKV2", "ResizeNearestNeighbor"):
        assert not graph.nodes_by_op(op), op


def test_set_overrides_a_param_and_refuses_unknown_ones(tmp_path: Path, capsys: Any) -> None:
    from surgery.cli import main
    from surgery.models import fixture_path

    model = str(fixture_path("matterport_small"))
    flag = _input(_config("matterport_small"))
    out = str(tmp_path / "t.pb")
    code = main(["apply", RULES, model, "-o", out, "--input", flag, "--set", "image_inpt=x"])
    assert code == 2
    assert "did you mean 'image_input'" in capsys.readouterr().err
    assert not Path(out).exists()
    code = main(["apply", RULES, model, "-o", out, "--input", flag, "--set", "image_input=nope"])
    assert code == 1
    err = capsys.readouterr().err
    assert "input('nope')" in err and "input_image" in err and "rule 'proposals'" in err
    assert not Path(out).exists()


def test_apply_without_input_names_the_flag(tmp_path: Path, capsys: Any) -> None:
    """A dynamic image size cannot give image_size: the error says to pin it."""
    from surgery.cli import main
    from surgery.models import fixture_path

    model = str(fixture_path("matterport_small"))
    out = str(tmp_path / "t.pb")
    assert main(["apply", RULES, model, "-o", out]) == 1
    err = capsys.readouterr().err
    assert "--input input_image=D0,D1,..." in err and "rule 'proposals'" in err
    assert not Path(out).exists()


@pytest.mark.parametrize("size", [(128, 128), (128, 192)])
def test_validate_passes_on_the_small_config(
    size: tuple[int, int], tmp_path: Path, capsys: Any
) -> None:
    """The three commands at the config's size and at another (the graph's dims are dynamic):
    validate feeds the side inputs what the plugins imply, compares the detections by the
    padding contract (with real detections among them) and passes."""
    import re

    from surgery.cli import main
    from surgery.models import fixture_path

    model = str(fixture_path("matterport_small"))
    flag = f"input_image=1,{size[0]},{size[1]},3"
    nchw, out = str(tmp_path / "n.pb"), str(tmp_path / "t.pb")
    assert main(["layout", "nchw", model, "-o", nchw, "--input", flag]) == 0
    assert main(["apply", RULES, nchw, "-o", out, "--input", flag]) == 0
    capsys.readouterr()
    code = main(["validate", model, out, "--input", flag])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "implied feed: input_anchors" in printed and "implied feed: input_image_meta" in printed
    assert f"image_size [3, {size[0]}, {size[1]}]" in printed
    assert "the rewrite changed the layout" in printed
    valid = re.search(r"compared (\d+) valid rows; (\d+) padding rows", printed)
    assert valid is not None and int(valid.group(1)) >= 1, printed
