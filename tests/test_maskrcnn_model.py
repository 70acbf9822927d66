"""The Mask R-CNN fixtures: NCHW (TensorRT's form), NHWC, TF1 control flow, renamed inner nodes."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from surgery import models
from surgery.errors import SurgeryError
from surgery.ir.model_io import read_graph_def
from surgery.ir.protos import GraphDef
from surgery.models.maskrcnn import SMALL, make_config
from surgery.models.maskrcnn.anchors import generate_anchors

pytest.importorskip("tensorflow")

NCHW, NHWC = "maskrcnn_small_nchw", "maskrcnn_small_nhwc"
TF1, RENAMED = "maskrcnn_small_tf1cf", "maskrcnn_small_renamed"
SCOPES = (
    "ROI",
    "roi_align_classifier",
    "roi_align_mask",
    "mrcnn_detection",
    "fpn_p5upsampled",
    "fpn_p4upsampled",
    "fpn_p3upsampled",
    "lambda_1",
    "rpn_class",
    "rpn_bbox",
    "mrcnn_class_conv1",
    "mrcnn_bbox",
    "mrcnn_mask_deconv",
    "mrcnn_mask",
)


@pytest.fixture(scope="session")
def maskrcnn() -> dict[str, tuple[models.FixtureInfo, GraphDef]]:
    """Every small Mask R-CNN variant, built (or found in the cache) once per session."""
    built = {}
    for name in models.MASKRCNN_TEST_FIXTURES:
        info = models.fixture_info(name)
        built[name] = (info, read_graph_def(info.path))
        print(f"{name}: {info.nodes} nodes, built in {info.build_seconds} s")
    return built


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    """A seeded random NCHW image of the small config."""
    return np.random.default_rng(5).standard_normal((1, *SMALL.image_shape)).astype(np.float32)


@pytest.fixture(scope="session")
def results(maskrcnn: dict, image: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Each variant's outputs on the same image (NHWC fed the transposed image)."""
    from surgery.passes.tf_reference import run_graph_def

    out = {}
    for name, (info, graph_def) in maskrcnn.items():
        feed = image.transpose(0, 2, 3, 1) if name == NHWC else image
        got = run_graph_def(graph_def, {f"{info.inputs[0].name}:0": feed}, info.outputs)
        out[name] = [got[t] for t in info.outputs]
    return out


def _ops(graph_def: GraphDef) -> collections.Counter:
    """Op type counts of the main graph."""
    return collections.Counter(node.op for node in graph_def.node)


def _scopes(graph_def: GraphDef) -> set[str]:
    """Top-level name scopes that hold at least one node below them."""
    return {node.name.split("/")[0] for node in graph_def.node if "/" in node.name}


@pytest.mark.parametrize("name", models.MASKRCNN_TEST_FIXTURES)
def test_registered_with_inputs_and_outputs(maskrcnn: dict, name: str) -> None:
    info, graph_def = maskrcnn[name]
    shape = (1, 128, 128, 3) if name == NHWC else (1, 3, 128, 128)
    assert [(s.name, s.shape, s.dtype) for s in info.inputs] == [("input_image", shape, "float32")]
    assert info.outputs == ("Identity:0", "Identity_1:0")
    assert info.output_keys == ("mrcnn_detection", "mrcnn_mask")
    assert info.nodes == len(graph_def.node) > 1500


@pytest.mark.parametrize("name", models.MASKRCNN_TEST_FIXTURES)
def test_runs_with_sane_shapes(results: dict, name: str) -> None:
    detections, masks = results[name]
    assert detections.shape == (1, SMALL.detections, 6)
    if name == NHWC:
        assert masks.shape == (1, SMALL.detections, 28, 28, SMALL.num_classes)
    else:
        assert masks.shape == (1, SMALL.detections, SMALL.num_classes, 28, 28)
    found = detections[0][detections[0, :, 5] > 0]
    assert len(found) > 0, "random weights gave no detection at all"
    assert ((found[:, :4] >= 0) & (found[:, :4] <= 1)).all()
    assert set(found[:, 4].astype(int)) <= set(range(1, SMALL.num_classes))
    assert (found[:, 5] >= SMALL.detection_min_confidence).all()
    assert np.isfinite(masks).all() and (masks >= 0).all() and (masks <= 1).all()


@pytest.mark.parametrize("name", models.MASKRCNN_TEST_FIXTURES)
def test_architecture_namespaces(maskrcnn: dict, name: str) -> None:
    _, graph_def = maskrcnn[name]
    missing = set(SCOPES) - _scopes(graph_def)
    assert not missing, f"{name} lacks scopes {sorted(missing)}"
    names = {node.name for node in graph_def.node}
    assert {"rpn_class/concat", "rpn_bbox/concat"} <= names
    ops = _ops(graph_def)
    assert ops["CropAndResize"] == 8  # 4 levels x (classifier, mask)
    assert ops["ResizeNearestNeighbor"] == 3
    assert ops["NonMaxSuppressionV3"] >= 1


@pytest.mark.parametrize("name", [NCHW, NHWC, RENAMED])
def test_tf2_control_flow_in_detection(maskrcnn: dict, name: str) -> None:
    _, graph_def = maskrcnn[name]
    whiles = [n for n in graph_def.node if n.op == "StatelessWhile"]
    assert [n.name.split("/")[0] for n in whiles] == ["mrcnn_detection"]
    functions = {f.signature.name for f in graph_def.library.function}
    assert {whiles[0].attr["cond"].func.name, whiles[0].attr["body"].func.name} <= functions
    assert not {"Enter", "Exit", "Merge", "Switch"} & set(_ops(graph_def))


def test_tf1_control_flow_in_detection(maskrcnn: dict) -> None:
    _, graph_def = maskrcnn[TF1]
    ops = _ops(graph_def)
    assert all(ops[op] > 0 for op in ("Enter", "Exit", "Merge", "Switch", "NextIteration"))
    assert "StatelessWhile" not in ops and "While" not in ops
    assert not graph_def.library.function
    loop = {n.name.split("/")[0] for n in graph_def.node if n.op in ("Enter", "Exit")}
    assert loop == {"mrcnn_detection"}


def test_data_format_on_convolutions(maskrcnn: dict) -> None:
    for name, want in ((NCHW, b"NCHW"), (NHWC, b"NHWC"), (TF1, b"NCHW"), (RENAMED, b"NCHW")):
        _, graph_def = maskrcnn[name]
        nodes = {n.name: n for n in graph_def.node}
        layout_ops = ("Conv2D", "FusedBatchNormV3", "MaxPool")
        formats = {n.attr["data_format"].s for n in graph_def.node if n.op in layout_ops}
        biases = {
            n.attr["data_format"].s
            for n in graph_def.node
            if n.op == "BiasAdd" and nodes[n.input[0]].op == "Conv2D"
        }
        assert formats == biases == {want}, name
        # tf-keras runs a channels-first Conv2DTranspose on CPU as NHWC between transposes,
        # the pattern TensorRT's guide describes for CPU TensorFlow
        (deconv,) = [n for n in graph_def.node if n.op == "Conv2DBackpropInput"]
        assert deconv.attr["data_format"].s == b"NHWC"
        assert (nodes[deconv.input[2]].op == "Transpose") == (want == b"NCHW"), name


def test_nchw_form_of_the_seed(maskrcnn: dict) -> None:
    """crop_and_resize between transposes, Permute+Reshape in the RPN, squeeze axes 4 then 3."""
    _, graph_def = maskrcnn[NCHW]
    nodes = {n.name: n for n in graph_def.node}
    users = collections.defaultdict(list)
    for node in graph_def.node:
        for text in node.input:
            users[text.lstrip("^").split(":")[0]].append(node)
    for node in graph_def.node:
        if node.op == "CropAndResize":
            assert nodes[node.input[0]].op == "Transpose"
            assert [u.op for u in users[node.name]] == ["Transpose"]
    rpn_ops = _ops(GraphDef(node=[n for n in graph_def.node if n.name.startswith("rpn_model")]))
    assert rpn_ops["Transpose"] == 10 and rpn_ops["Reshape"] == 10  # 5 levels x (class, bbox)
    squeezes = [n for n in graph_def.node if n.op == "Squeeze" and n.name.startswith("pool_")]
    assert sorted(list(n.attr["squeeze_dims"].list.i) for n in squeezes) == [[3], [4]]
    _, nhwc = maskrcnn[NHWC]
    assert not any(n.op == "Transpose" for n in nhwc.node if n.name.startswith("roi_align"))


def test_renamed_inner_nodes_differ_scopes_stay(maskrcnn: dict) -> None:
    _, plain = maskrcnn[NCHW]
    _, renamed = maskrcnn[RENAMED]
    for scope in ("ROI", "roi_align_classifier", "roi_align_mask", "mrcnn_detection"):
        a = {n.name for n in plain.node if n.name.startswith(scope + "/")}
        b = {n.name for n in renamed.node if n.name.startswith(scope + "/")}
        assert a and b and len(a & b) < 0.5 * len(a), scope
    plain_names = {n.name for n in plain.node}
    renamed_names = {n.name for n in renamed.node}
    assert "res2a_branch2a/Conv2D" in plain_names
    assert "res2a_branch2a/Conv2D" not in renamed_names
    assert "conv2_block1_1_conv/Conv2D" in renamed_names
    assert _ops(plain)["Conv2D"] == _ops(renamed)["Conv2D"]


def test_variants_compute_the_same(results: dict) -> None:
    """All variants share the reference weights: same detections and masks."""
    detections, masks = results[NCHW]
    for name in (TF1, RENAMED):
        np.testing.assert_allclose(results[name][0], detections, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(results[name][1], masks, rtol=1e-5, atol=1e-5)
    nhwc_detections, nhwc_masks = results[NHWC]
    np.testing.assert_allclose(nhwc_detections, detections, rtol=1e-3, atol=1e-3)
    # masks sit ~60 convolutions deep; NHWC and NCHW kernels sum in different orders
    np.testing.assert_allclose(nhwc_masks.transpose(0, 1, 4, 2, 3), masks, atol=5e-3)


def test_anchors_and_config() -> None:
    anchors = generate_anchors(SMALL)
    assert anchors.shape == (SMALL.num_anchors, 4) == (4092, 4)
    assert (anchors[:, 2] > anchors[:, 0]).all() and (anchors[:, 3] > anchors[:, 1]).all()
    full = make_config("full")
    assert (full.backbone, full.image_size, full.num_classes, full.proposals) == (
        "resnet101",
        1024,
        81,
        1000,
    )
    assert full.num_anchors == 261888
    with pytest.raises(SurgeryError, match="data_format"):
        make_config("small", data_format="NCHW")
    with pytest.raises(SurgeryError, match="unknown Mask R-CNN config"):
        make_config("huge")
    with pytest.raises(SurgeryError, match="no option"):
        make_config("small", colour="red")


def test_anchors_as_an_input_compute_the_same(results: dict, image: np.ndarray) -> None:
    """`anchors="input"` (Matterport's `input_anchors`) fed the generated anchors matches."""
    from surgery.models.maskrcnn import build

    config = make_config("small", anchors="input")
    model = build(config)
    assert [t.name.split(":")[0] for t in model.inputs] == ["input_image", "input_anchors"]
    detections, masks = model([image, generate_anchors(config)[np.newaxis]], training=False)
    np.testing.assert_allclose(detections.numpy(), results[NCHW][0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(masks.numpy(), results[NCHW][1], atol=5e-3)  # eager vs grappler
