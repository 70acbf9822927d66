"""Matterport's own Mask R-CNN code (mrcnn-colab) as fixtures: builds, caches, keeps its three
dynamic inputs, detects on its own feeds, and its frozen graphs answer what Keras does."""

from __future__ import annotations

import collections
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from surgery import models
from surgery.ir.model_io import read_graph_def
from surgery.ir.protos import GraphDef
from surgery.ir.tensor_values import to_numpy

pytest.importorskip("tensorflow", reason="the Matterport fixtures are built with TensorFlow")
if importlib.util.find_spec("mrcnn") is None:
    pytest.skip(
        "mrcnn-colab is not installed (`pip install --no-deps mrcnn-colab==2.1`)",
        allow_module_level=True,
    )

from surgery.models import matterport  # noqa: E402  (after the skips)

REPO = Path(__file__).resolve().parent.parent
SMALL, TF1, MEDIUM = "matterport_small", "matterport_small_tf1cf", "matterport_medium"
OUTPUT_KEYS = ("mrcnn_detection", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "ROI", "rpn_class",
               "rpn_bbox")


def _config_name(fixture: str) -> str:
    return models.FIXTURES[fixture].params["config"]


@pytest.fixture(scope="session")
def matterport_built() -> dict[str, tuple[models.FixtureInfo, GraphDef]]:
    """Every test fixture, built (or found in the cache) once per session."""
    built = {}
    for name in models.MATTERPORT_TEST_FIXTURES:
        info = models.fixture_info(name)
        built[name] = (info, read_graph_def(info.path))
        print(f"{name}: {info.nodes} nodes, {info.size} bytes, built in {info.build_seconds} s")
    return built


@pytest.fixture(scope="session")
def frozen_outputs(matterport_built: dict) -> dict[str, list[np.ndarray]]:
    """Each fixture's outputs on its config's feeds, run in TensorFlow."""
    from surgery.passes.tf_reference import run_graph_def

    out = {}
    for name, (info, graph_def) in matterport_built.items():
        feeds = {f"{k}:0": v for k, v in matterport.matterport_inputs(_config_name(name)).items()}
        got = run_graph_def(graph_def, feeds, info.outputs)
        out[name] = [got[t] for t in info.outputs]
    return out


def _ops(graph_def: GraphDef) -> collections.Counter:
    return collections.Counter(node.op for node in graph_def.node)


def _const(nodes: dict, name: str) -> np.ndarray:
    node = nodes[name]
    assert node.op == "Const", f"{name} is a {node.op}"
    return to_numpy(node.attr["value"].tensor)


# ---- quick: the shims and the feeds (imports mrcnn, builds nothing) ----


def test_shims_stay_inside_mrcnn() -> None:
    modellib, config_class = matterport.import_mrcnn()
    assert matterport.import_mrcnn() == (modellib, config_class)
    proxy = modellib.keras
    assert sys.modules.get("keras") is not proxy and "keras.engine" not in sys.modules
    for name in ("scipy", "skimage", "skimage.color", "skimage.io", "skimage.transform"):
        module = sys.modules.get(name)
        assert module is None or getattr(module, "__file__", None), f"stand-in {name} left over"
    for layer in (modellib.ProposalLayer, modellib.PyramidROIAlign, modellib.DetectionLayer):
        assert list(inspect.signature(layer.call).parameters) == ["self", "inputs"]
    import tensorflow as tf

    assert tf.log is not None and tf.sets.set_intersection is not None


def test_configs_keep_matterport_defaults() -> None:
    _, config_class = matterport.import_mrcnn()
    for name in matterport.CONFIGS:
        cfg = matterport.matterport_config(name)
        assert cfg.IMAGES_PER_GPU == cfg.GPU_COUNT == cfg.BATCH_SIZE == 1
        for key in ("RPN_ANCHOR_SCALES", "RPN_ANCHOR_RATIOS", "BACKBONE_STRIDES"):
            assert getattr(cfg, key) == getattr(config_class, key)
        for key in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            assert (getattr(cfg, key) == getattr(config_class, key)).all()
        assert cfg.IMAGE_MAX_DIM % 64 == 0
    small, coco = matterport.matterport_config("small"), matterport.matterport_config("coco")
    assert (small.PRE_NMS_LIMIT, small.POST_NMS_ROIS_INFERENCE, small.NUM_CLASSES) == (256, 64, 4)
    assert matterport.matterport_config("medium").PRE_NMS_LIMIT == 1500
    assert (coco.BACKBONE, coco.IMAGE_MAX_DIM, coco.NUM_CLASSES) == ("resnet101", 1024, 81)
    with pytest.raises(ValueError, match="unknown Matterport config"):
        matterport.matterport_config("huge")


def test_inputs_are_matterports_own_feeds() -> None:
    feeds = matterport.matterport_inputs("small")
    assert list(feeds) == ["input_image", "input_image_meta", "input_anchors"]
    image, meta, anchors = feeds.values()
    assert image.shape == (1, 128, 128, 3) and image.dtype == np.float32
    assert meta.shape == (1, 16)
    assert meta[0, :12].tolist() == [0, 128, 128, 3, 128, 128, 3, 0, 0, 128, 128, 1]
    # 3 ratios x (32x32 + 16x16 + 8x8 + 4x4 + 2x2) positions, normalised (y1, x1, y2, x2)
    assert anchors.shape == (1, 3 * (1024 + 256 + 64 + 16 + 4), 4)
    assert (anchors[0, :, 2] > anchors[0, :, 0]).all()
    again = matterport.matterport_inputs(matterport.matterport_config("small"))
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    assert not np.array_equal(image, matterport.matterport_inputs("small", seed=1)["input_image"])


def test_cache_key_follows_the_mrcnn_version(monkeypatch: pytest.MonkeyPatch) -> None:
    key = models.cache_key(SMALL)
    real = models._version
    monkeypatch.setattr(
        models, "_version", lambda *d: "9.9" if d == ("mrcnn-colab",) else real(*d)
    )
    assert models.cache_key(SMALL) != key
    assert models.cache_key("unet") == models.cache_key("unet")  # others: unaffected
    assert "matterport_coco" in models.FIXTURES
    assert "matterport_coco" not in models.MATTERPORT_TEST_FIXTURES


# ---- slow: the fixtures built, frozen, run ----


@pytest.mark.slow
@pytest.mark.parametrize("name", models.MATTERPORT_TEST_FIXTURES)
def test_builds_and_is_cached(matterport_built: dict, name: str) -> None:
    info, graph_def = matterport_built[name]
    assert info.nodes == len(graph_def.node) > 1500 and info.path.stat().st_size == info.size
    assert models.cache_key(name) in info.path.name
    stamp = info.path.stat().st_mtime_ns
    assert models.fixture_path(name) == info.path and info.path.stat().st_mtime_ns == stamp
    assert info.outputs == tuple("Identity:0" if i == 0 else f"Identity_{i}:0" for i in range(7))
    assert info.output_keys == OUTPUT_KEYS


@pytest.mark.slow
def test_build_is_byte_identical_in_another_process(matterport_built: dict, tmp_path) -> None:
    """Another hash seed, another fixture built first: the same bytes (library order too)."""
    script = (
        "import sys; from surgery import models\n"
        "models.build('box3d', sys.argv[1]); models.build(sys.argv[2], sys.argv[1])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "13", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), SMALL],
        cwd=REPO, env=env, capture_output=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    mine = matterport_built[SMALL][0].path
    assert (tmp_path / mine.name).read_bytes() == mine.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("name", models.MATTERPORT_TEST_FIXTURES)
def test_inputs_are_the_three_dynamic_placeholders(matterport_built: dict, name: str) -> None:
    info, graph_def = matterport_built[name]
    meta = 12 + matterport.matterport_config(_config_name(name)).NUM_CLASSES
    want = [
        ("input_image", (None, None, None, 3)),
        ("input_image_meta", (None, meta)),
        ("input_anchors", (None, None, 4)),
    ]
    assert [(s.name, s.shape, s.dtype) for s in info.inputs] == [(n, s, "float32") for n, s in want]
    placeholders = {n.name: n for n in graph_def.node if n.op == "Placeholder"}
    assert set(placeholders) == {n for n, _ in want}
    for input_name, shape in want:
        dims = [d.size for d in placeholders[input_name].attr["shape"].shape.dim]
        assert dims == [-1 if d is None else d for d in shape], input_name  # not pinned


@pytest.mark.slow
@pytest.mark.parametrize("name", models.MATTERPORT_TEST_FIXTURES)
def test_layer_scopes_are_top_level(matterport_built: dict, name: str) -> None:
    _, graph_def = matterport_built[name]
    scopes = {node.name.split("/")[0] for node in graph_def.node if "/" in node.name}
    assert {"ROI", "roi_align_classifier", "roi_align_mask", "mrcnn_detection", "rpn_model",
            "fpn_p5upsampled", "mrcnn_class_logits", "mrcnn_mask"} <= scopes
    assert "mask_rcnn" not in scopes
    ops = _ops(graph_def)
    assert ops["CropAndResize"] == 8 and ops["TopKV2"] == 4


@pytest.mark.slow
def test_tf1_variant_has_v1_control_flow(matterport_built: dict) -> None:
    _, graph_def = matterport_built[TF1]
    ops = _ops(graph_def)
    assert all(ops[op] > 0 for op in ("Enter", "Exit", "Merge", "Switch", "NextIteration"))
    assert "StatelessWhile" not in ops and "While" not in ops
    assert not graph_def.library.function
    assert {n.name.split("/")[0] for n in graph_def.node if n.op == "Enter"} == {"mrcnn_detection"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [SMALL, MEDIUM])
def test_tf2_variants_keep_stateless_while_and_library(matterport_built: dict, name: str) -> None:
    _, graph_def = matterport_built[name]
    whiles = [n for n in graph_def.node if n.op == "StatelessWhile"]
    assert [n.name for n in whiles] == ["mrcnn_detection/map/while"]
    functions = {f.signature.name for f in graph_def.library.function}
    assert functions == {"mrcnn_detection_map_while_cond_0", "mrcnn_detection_map_while_body_1"}
    assert {whiles[0].attr["cond"].func.name, whiles[0].attr["body"].func.name} == functions
    assert not {"Enter", "Exit", "Merge", "Switch"} & set(_ops(graph_def))


@pytest.mark.slow
def test_config_values_where_the_rules_find_them(matterport_built: dict) -> None:
    """Where the small config's values sit in the frozen graph (the rule writer relies on it)."""
    cfg = matterport.matterport_config("small")
    for name in (SMALL, TF1):
        _, graph_def = matterport_built[name]
        nodes = {n.name: n for n in graph_def.node}
        for function in graph_def.library.function:  # TF2: per-class NMS is in the loop body
            nodes.update({n.name: n for n in function.node_def})
        nms = "mrcnn_detection/map/while/non_max_suppression"
        expected = {
            "ROI/Minimum/x": cfg.PRE_NMS_LIMIT,  # k = min(PRE_NMS_LIMIT, shape(anchors)[1])
            "ROI/rpn_non_max_suppression/NonMaxSuppressionV3/max_output_size":
                cfg.POST_NMS_ROIS_INFERENCE,
            "ROI/rpn_non_max_suppression/iou_threshold": cfg.RPN_NMS_THRESHOLD,
            "ROI/sub_4/x": cfg.POST_NMS_ROIS_INFERENCE,  # padding
            "mrcnn_detection/GreaterEqual/y": cfg.DETECTION_MIN_CONFIDENCE,
            f"{nms}/NonMaxSuppressionV3/max_output_size": cfg.DETECTION_MAX_INSTANCES,
            f"{nms}/iou_threshold": cfg.DETECTION_NMS_THRESHOLD,
            "mrcnn_detection/Minimum_4/y": cfg.DETECTION_MAX_INSTANCES,  # top-k k
            "mrcnn_detection/sub_6/x": cfg.DETECTION_MAX_INSTANCES,  # padding
            "mrcnn_detection/Reshape_1/shape": [1, cfg.DETECTION_MAX_INSTANCES, 6],
            "roi_align_classifier/CropAndResize/crop_size": [cfg.POOL_SIZE] * 2,
            "roi_align_mask/CropAndResize/crop_size": [cfg.MASK_POOL_SIZE] * 2,
            "mrcnn_bbox/Reshape/shape/2": cfg.NUM_CLASSES,
        }
        for node_name, value in expected.items():
            assert np.allclose(_const(nodes, node_name), value), (name, node_name)
        assert list(nodes["ROI/top_anchors"].input)[1] == "ROI/Minimum"
        assert list(nodes["ROI/Minimum"].input) == ["ROI/Minimum/x", "ROI/strided_slice_1"]
        assert list(nodes["ROI/Shape"].input) == ["input_anchors"]
        assert list(nodes["mrcnn_detection/TopKV2"].input)[1] == "mrcnn_detection/Minimum_4"


def _confident(detections: np.ndarray, threshold: float) -> np.ndarray:
    """Rows of one image's detections that are foreground and clear `threshold`."""
    return detections[(detections[:, 5] >= threshold) & (detections[:, 4] > 0)]


@pytest.mark.slow
@pytest.mark.parametrize("name", [SMALL, MEDIUM])
def test_detects_on_its_own_feeds(frozen_outputs: dict, name: str) -> None:
    cfg = matterport.matterport_config(_config_name(name))
    detections, probs, _, masks, rois, _, _ = frozen_outputs[name]
    assert detections.shape == (1, cfg.DETECTION_MAX_INSTANCES, 6)
    found = _confident(detections[0], cfg.DETECTION_MIN_CONFIDENCE)
    assert len(found) >= 1, f"{name}: no detection clears {cfg.DETECTION_MIN_CONFIDENCE}"
    assert ((found[:, :4] >= 0) & (found[:, :4] <= 1)).all()
    assert set(found[:, 4].astype(int)) <= set(range(1, cfg.NUM_CLASSES))
    rest = detections[0, len(found):]
    assert not rest.any(), "rows after the detections are zero padding"
    assert probs.shape == (1, cfg.POST_NMS_ROIS_INFERENCE, cfg.NUM_CLASSES)
    assert rois.shape == (1, cfg.POST_NMS_ROIS_INFERENCE, 4)
    side = 2 * cfg.MASK_POOL_SIZE
    assert masks.shape == (1, cfg.DETECTION_MAX_INSTANCES, side, side, cfg.NUM_CLASSES)
    assert np.isfinite(masks).all()


@pytest.mark.slow
def test_frozen_graphs_match_keras_predict(frozen_outputs: dict) -> None:
    """The TF2 and TF1 frozen graphs of `small` answer what Matterport's Keras model predicts."""
    model = models.build_model(SMALL)
    feeds = matterport.matterport_inputs("small")
    expected = model.predict([feeds[t.name.split(":")[0]] for t in model.inputs], verbose=0)
    cfg = matterport.matterport_config("small")
    assert len(_confident(expected[0][0], cfg.DETECTION_MIN_CONFIDENCE)) >= 1
    for name in (SMALL, TF1):
        # Boxes are normalised, scores probabilities, deltas about unit: 1e-3 is float noise.
        for key, want, got in zip(OUTPUT_KEYS, expected, frozen_outputs[name], strict=True):
            assert got.shape == want.shape, (name, key)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=f"{name} {key}")
        detections = frozen_outputs[name][0][0]
        assert np.array_equal(detections[:, 4], expected[0][0][:, 4]), name  # class ids
