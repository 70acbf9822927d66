"""Validate on collapsed Mask R-CNN scopes: implied feeds for the side inputs the plugins dropped,
DetectionLayer_TRT's padding contract, PyramidROIAlign_TRT's known deviation, export of nodes
that carry `_side_*` attrs. Real graphs and real TF runs throughout."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugins.reference._common import PluginFields, PluginReferenceError, SideContext
from plugins.reference._mrcnn import image_meta, pyramid_anchors
from plugins.registry import implied_value, reference_function
from surgery.backends.validate import ValidationError, implied_feeds, load_inputs, validate
from surgery.errors import RuleError
from surgery.ir.graph import Graph
from surgery.ir.ports import SIDE_ATTR_PREFIX
from surgery.ir.protos import AttrValue
from surgery.ops.plugin_schema import field_attr, load_catalog, load_schema

pytest.importorskip("tensorflow")

PROPOSAL = {"prenms_topk": 32, "keep_topk": 8, "iou_threshold": 0.7, "image_size": [3, 64, 64]}
ANCHORS_64 = 1023  # (16^2 + 8^2 + 4^2 + 2^2 + 1^2) * 3 for a 64x64 image


def _tf_graph(build: Callable[[Any], None]) -> Graph:
    """A Graph from a TF1-style graph built by `build(tf)`."""
    import tensorflow as tf

    from surgery.ir.protos import GraphDef

    with tf.Graph().as_default() as g:
        build(tf)
    return Graph(GraphDef.FromString(g.as_graph_def().SerializeToString()))


def _to_plugin(graph: Graph, name: str, op: str, inputs: list[str], **fields: Any) -> None:
    """Node `name` (a stand-in Placeholder) becomes plugin `op` reading `inputs`; a field named
    `_side_<role>` is stored as the collapse stores it (the tensor name as a string attr)."""
    schema = load_catalog().get(op)
    graph.set_op(name, op)
    graph.set_inputs(name, inputs)
    node = graph.node(name)
    for key in list(node.attr):
        del node.attr[key]
    for key, value in fields.items():
        if key.startswith(SIDE_ATTR_PREFIX):
            node.attr[key].CopyFrom(AttrValue(s=value.encode()))
        else:
            node.attr[key].CopyFrom(field_attr(schema, key, value))


def _context(op: str, shape: tuple[int | None, ...] | None, batch: int = 1,
             peers: tuple[PluginFields, ...] = (), **fields: Any) -> SideContext:  # fmt: skip
    schema = load_catalog().get(op)
    full = {s.name: s.default for s in schema.fields} | fields
    return SideContext("node", op, full, shape, batch, (PluginFields("node", op, full), *peers))


def _implied(op: str, role: str, shape: tuple[int | None, ...] | None, batch: int = 1,
             peers: tuple[PluginFields, ...] = (), **fields: Any) -> Any:  # fmt: skip
    """`implied_value` of side input `role` of a plugin `op` node with these fields."""
    return implied_value(op, role, _context(op, shape, batch, peers, **fields))


# --------------------------------------------------------------------------- schemas
def test_schemas_declare_side_inputs_padding_and_deviations() -> None:
    catalog = load_catalog()
    proposal = catalog.get("ProposalLayer_TRT")
    assert [(s.name, s.reference) for s in proposal.side_inputs] == [
        ("anchors", "implied_anchors")
    ]
    for op in ("PyramidROIAlign_TRT", "DetectionLayer_TRT"):
        side = catalog.get(op).side_input("image_meta")
        assert side is not None and side.reference == "implied_image_meta" and side.doc
    border = catalog.get("PyramidROIAlign_TRT").deviations
    assert [(d.name, d.reference) for d in border] == [("border", "border_deviation")]
    compare = catalog.get("DetectionLayer_TRT").outputs[0].compare
    assert compare is not None
    assert compare.padding.column == 4 and compare.padding.describe() == "class -1 vs 0"
    for schema in catalog:  # every named function exists in the plugin's reference module
        for named in (*schema.side_inputs, *schema.deviations):
            assert callable(reference_function(schema.name, named.reference))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"side_inputs": [{"name": "anchors"}]}, "needs a name and a reference"),
        ({"side_inputs": [{"name": "a", "reference": "f"}, {"name": "a", "reference": "g"}]},
         "names 'a' twice"),
        ({"deviations": {"name": "a"}}, "must be a list"),
        ({"outputs": [{"name": "y", "shape": [1, 6], "compare": {"pad": {}}}]},
         "key 'padding'"),
        ({"outputs": [{"name": "y", "shape": [1, 6], "compare": {"padding": {"column": 6,
          "plugin": -1, "original": 0}}}]}, "beyond the last dim"),
        ({"outputs": [{"name": "y", "shape": [1, 6], "compare": {"padding": {"column": 4,
          "plugin": "x", "original": 0}}}]}, "numbers plugin and original"),
        ({"outputs": [{"name": "y", "shape": [1, 6], "compare": {"padding": {"column": 4,
          "plugin": -1}}}]}, "numbers plugin and original"),
    ],
)  # fmt: skip
def test_bad_declarations_are_refused_at_load(tmp_path: Path, patch: dict, message: str) -> None:
    raw = {"name": "P", "version": "1", "outputs": [{"name": "y", "shape": [1, 6]}]} | patch
    path = tmp_path / "P.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RuleError, match=message):
        load_schema(path)


# --------------------------------------------------------------------------- implied values
def test_implied_anchors_are_the_plugins_own_for_every_image() -> None:
    ctx = _context("ProposalLayer_TRT", (None, None, 4), batch=2, **PROPOSAL)
    side = implied_value("ProposalLayer_TRT", "anchors", ctx)
    assert side.value.shape == (2, ANCHORS_64, 4) and side.value.dtype == np.float32
    np.testing.assert_array_equal(side.value[1], pyramid_anchors(3, 64, 64))
    assert side.how == f"the {ANCHORS_64} anchors it generates for image_size [3, 64, 64]"
    fixed = _implied("ProposalLayer_TRT", "anchors", (3, None, 4), **PROPOSAL)
    assert fixed.value.shape == (3, ANCHORS_64, 4)  # a known dim 0 wins over the batch
    flat = _implied("ProposalLayer_TRT", "anchors", (None, 4), **PROPOSAL)
    assert flat.value.shape == (ANCHORS_64, 4)
    with pytest.raises(PluginReferenceError, match="declares no side input 'meta'"):
        _implied("ProposalLayer_TRT", "meta", None, **PROPOSAL)


def _matterport() -> Any:
    """mrcnn imported with the shims of surgery.models.matterport, or a skip saying why not."""
    if importlib.util.find_spec("mrcnn") is None:
        pytest.skip("mrcnn-colab is not installed")
    if importlib.util.find_spec("surgery.models.matterport") is None:
        pytest.skip("surgery.models.matterport (which applies mrcnn's import shims) is missing")
    import surgery.models.matterport as matterport

    matterport.import_mrcnn()
    return matterport


@pytest.mark.parametrize("height, width", [(128, 128), (128, 192), (256, 64)])
def test_implied_anchors_equal_matterports(height: int, width: int) -> None:
    matterport = _matterport()
    from mrcnn import utils

    config = matterport.matterport_config("small")
    modellib, _ = matterport.import_mrcnn()
    shape = np.array([height, width, 3])
    levels = modellib.compute_backbone_shapes(config, shape)
    theirs = utils.norm_boxes(
        utils.generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                       levels, config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE),
        shape[:2],
    )  # fmt: skip
    fields = PROPOSAL | {"image_size": [3, height, width]}
    ours = _implied("ProposalLayer_TRT", "anchors", (None, None, 4), **fields).value
    assert ours.shape == (1, *theirs.shape)
    np.testing.assert_allclose(ours[0], theirs, rtol=0, atol=1e-6)  # float32 against float64


def test_implied_image_meta_equals_matterports_compose_image_meta() -> None:
    matterport = _matterport()
    config = matterport.matterport_config("small")
    feeds = matterport.matterport_inputs(config)
    height, width, channels = (int(d) for d in config.IMAGE_SHAPE)
    proposal = PluginFields("ROI", "ProposalLayer_TRT",
                            PROPOSAL | {"image_size": [channels, height, width]})  # fmt: skip
    for op in ("PyramidROIAlign_TRT", "DetectionLayer_TRT"):
        fields = {"pooled_size": 7} if op == "PyramidROIAlign_TRT" else {
            "num_classes": config.NUM_CLASSES, "keep_topk": 16, "score_threshold": 0.3,
            "iou_threshold": 0.3}  # fmt: skip
        shape = (None, 12 + config.NUM_CLASSES)
        meta = _implied(op, "image_meta", shape, 1, (proposal,), **fields)
        np.testing.assert_array_equal(meta.value, feeds["input_image_meta"])


def test_image_meta_size_from_proposals_else_roi_align_thresholds() -> None:
    align = {"pooled_size": 7, "image_size": [128, 256], "fpn_scale": 224}
    proposal = PluginFields("ROI", "ProposalLayer_TRT", PROPOSAL | {"image_size": [3, 96, 80]})
    got = _implied("PyramidROIAlign_TRT", "image_meta", (None, 16), 2, (proposal,), **align)
    np.testing.assert_array_equal(got.value, np.stack([image_meta(96, 80, 3, 16)] * 2))
    assert "image_size [3, 96, 80] of ProposalLayer_TRT at ROI" in got.how
    # Without ProposalLayer_TRT: [H, 2W] with fpn_scale 224 picks levels as Matterport does for
    # an H x W image (rules/maskrcnn.rules); legacy is the 1024x1024 setting.
    alone = _implied("PyramidROIAlign_TRT", "image_meta", (1, 16), **align)
    np.testing.assert_array_equal(alone.value[0], image_meta(128, 128, 3, 16))
    legacy = _implied("PyramidROIAlign_TRT", "image_meta", (1, 14), legacy=1, pooled_size=7)
    np.testing.assert_array_equal(legacy.value[0], image_meta(1024, 1024, 3, 14))
    short = _implied("PyramidROIAlign_TRT", "image_meta", (1, 8), **align)
    np.testing.assert_array_equal(short.value[0], [0, 128, 128, 3, 128, 128, 3, 0])
    detection = {"num_classes": 5, "keep_topk": 4, "score_threshold": 0.5, "iou_threshold": 0.5}
    unknown = _implied("DetectionLayer_TRT", "image_meta", None, 1, (proposal,), **detection)
    assert unknown.value.shape == (1, 17)  # 12 + num_classes
    with pytest.raises(PluginReferenceError, match="cannot tell the image size"):
        _implied("DetectionLayer_TRT", "image_meta", (1, 17), **detection)


# --------------------------------------------------------------------------- validate: feeds
def _anchor_graphs(side: str = "input_anchors") -> tuple[Graph, Graph]:
    """Original: Matterport-style placeholders, the output reads `input_anchors`. Rewritten:
    ProposalLayer_TRT at `ROI` dropped that side input (its anchors are its own), and what the
    original computed from them is the plugin's anchors (a Const here)."""

    def placeholders(tf: Any) -> Any:
        tf.compat.v1.placeholder(tf.float32, [1, ANCHORS_64, 2], name="rpn_class")
        tf.compat.v1.placeholder(tf.float32, [1, ANCHORS_64, 4], name="rpn_bbox")
        return tf.compat.v1.placeholder(tf.float32, [None, None, 4], name="input_anchors")

    def original(tf: Any) -> None:
        tf.identity(placeholders(tf), name="out")

    def rewritten(tf: Any) -> None:
        placeholders(tf)
        tf.compat.v1.placeholder(tf.float32, [1, 8, 4], name="ROI")
        tf.identity(tf.constant(pyramid_anchors(3, 64, 64)[None]), name="out")

    before, after = _tf_graph(original), _tf_graph(rewritten)
    _to_plugin(after, "ROI", "ProposalLayer_TRT", ["rpn_class", "rpn_bbox"],
               **PROPOSAL, _side_anchors=side)  # fmt: skip
    return before, after


def test_validate_feeds_the_original_what_the_plugin_implies(tmp_path: Path) -> None:
    before, after = _anchor_graphs()
    report = validate(before, after)
    assert report.passed, report.format()
    assert (
        f"implied feed: input_anchors (1, {ANCHORS_64}, 4) from side input anchors of ROI "
        f"(ProposalLayer_TRT): the {ANCHORS_64} anchors it generates for image_size [3, 64, 64]"
    ) in report.format().splitlines()
    # The caller's value for the placeholder wins, and the report says so.
    rng = np.random.default_rng(0)
    feeds = {
        "rpn_class": rng.random((1, ANCHORS_64, 2), dtype=np.float32),
        "rpn_bbox": rng.standard_normal((1, ANCHORS_64, 4)).astype(np.float32),
        "input_anchors": rng.random((1, ANCHORS_64, 4), dtype=np.float32),
    }
    given = validate(before, after, feeds)
    assert not given.passed
    line = next(x for x in given.format().splitlines() if x.startswith("implied feed:"))
    assert line.startswith(
        "implied feed: input_anchors: the given value (--inputs) is used, not the "
        f"(1, {ANCHORS_64}, 4) that side input anchors of ROI (ProposalLayer_TRT) implies "
        "(max abs difference"
    )
    # An .npz may leave out the placeholders the plugins have side inputs for.
    from surgery.backends.validate import side_placeholders

    path = tmp_path / "feeds.npz"
    np.savez(path, rpn_class=feeds["rpn_class"], rpn_bbox=feeds["rpn_bbox"])
    with pytest.raises(ValidationError, match="no array for placeholder.*input_anchors"):
        load_inputs(path, before)
    loaded = load_inputs(path, before, optional=side_placeholders(after))
    assert validate(before, after, loaded).passed


def test_side_input_that_is_no_placeholder_is_reported_not_fed() -> None:
    before, after = _anchor_graphs(side="out")
    feeds = implied_feeds(before, after, {"input_anchors": (1, ANCHORS_64, 4)})
    assert [f.status for f in feeds] == ["not fed"]
    assert feeds[0].line() == (
        "none for out (side input anchors of ROI (ProposalLayer_TRT)): not a placeholder of "
        "the original graph (Identity), which computes it"
    )


def test_two_plugins_implying_different_values_is_an_error() -> None:
    before, after = _anchor_graphs()
    after.add_node("ROI_b", "ProposalLayer_TRT", ["rpn_class", "rpn_bbox"])
    wider = PROPOSAL | {"image_size": [3, 64, 128]}
    _to_plugin(after, "ROI_b", "ProposalLayer_TRT", ["rpn_class", "rpn_bbox"], **wider,
               _side_anchors="input_anchors")  # fmt: skip
    with pytest.raises(ValidationError, match=r"input_anchors: ROI \(ProposalLayer_TRT\) and "
                       r"ROI_b \(ProposalLayer_TRT\) imply different values for it \(shapes "
                       rf"\(1, {ANCHORS_64}, 4\) and \(1, 2046, 4\)\)"):  # fmt: skip
        validate(before, after)


def test_implied_shape_must_fit_the_placeholder() -> None:
    before, after = _anchor_graphs()
    before.node("input_anchors").attr["shape"].shape.dim[1].size = 1000
    with pytest.raises(ValidationError, match=r"implies shape \(1, 1023, 4\) for 'input_anchors'"):
        validate(before, after)


# --------------------------------------------------------------------------- padding contract
DETECTION = {"num_classes": 3, "keep_topk": 6, "score_threshold": 0.5, "iou_threshold": 0.5}


def _detection_feeds() -> dict[str, np.ndarray]:
    """8 disjoint ROIs; 3 score a foreground class >= 0.5: 3 detections, 3 padding rows."""
    rois = np.array([[0.1 * i, 0.0, 0.1 * i + 0.08, 0.2] for i in range(8)], dtype=np.float32)
    scores = np.full((8, 3), 0.1, dtype=np.float32)
    scores[:, 0] = 0.8  # background wins ...
    scores[[1, 4, 6], 0] = 0.1
    scores[[1, 4, 6], [2, 1, 2]] = [0.9, 0.7, 0.6]  # ... except here
    deltas = np.random.default_rng(1).normal(0, 0.5, (8, 12)).astype(np.float32)
    return {"mrcnn_bbox": deltas[None], "mrcnn_class": scores[None], "rois": rois[None]}


def _detection_graphs(
    padding_class: float = 0.0, through: str = "Identity", drop_row: int | None = None,
    meta: bool = False,
) -> tuple[Graph, Graph]:
    """Original: Matterport's detections (all-zero padding rows), precomputed from the same
    feeds and read by the output `detections` from a Const. Rewritten: DetectionLayer_TRT
    (class -1 padding rows) read by `detections` through `through` (Identity, or a Reshape,
    which is no passthrough). `drop_row`: that detection is a padding row in the original.
    `meta`: the graphs have Matterport's `input_image_meta`, a side input of the plugin."""
    from plugins.registry import run_node

    feeds = _detection_feeds()

    def placeholders(tf: Any) -> None:
        for name, value in feeds.items():
            tf.compat.v1.placeholder(tf.float32, value.shape, name=name)
        if meta:
            tf.compat.v1.placeholder(tf.float32, [None, 15], name="input_image_meta")

    def rewritten(tf: Any) -> None:
        placeholders(tf)
        plugin = tf.compat.v1.placeholder(tf.float32, [1, 6, 6], name="mrcnn_detection")
        if through == "Identity":
            tf.identity(tf.identity(plugin), name="detections")
        else:
            tf.reshape(plugin, [1, 6, 6], name="detections")

    after = _tf_graph(rewritten)
    side = {"_side_image_meta": "input_image_meta"} if meta else {}
    _to_plugin(after, "mrcnn_detection", "DetectionLayer_TRT",
               ["mrcnn_bbox", "mrcnn_class", "rois"], **DETECTION, **side)  # fmt: skip
    (plugin_out,) = run_node(after.node("mrcnn_detection"), list(feeds.values()))
    matterport = plugin_out.copy()
    matterport[matterport[..., 4] == -1] = [0, 0, 0, 0, padding_class, 0]
    if drop_row is not None:
        matterport[0, drop_row] = 0

    def original(tf: Any) -> None:
        placeholders(tf)
        tf.identity(tf.constant(matterport), name="detections")

    return _tf_graph(original), after


def test_detection_padding_rows_compare_by_the_contract() -> None:
    before, after = _detection_graphs()
    report = validate(before, after, _detection_feeds())
    assert report.passed, report.format()
    (line,) = [c.line() for c in report.outputs]
    assert line == (
        "ok   detections (1, 6, 6): max abs 0, max rel 0  (compared 3 valid rows; 3 padding "
        "rows (class -1 vs 0) by DetectionLayer_TRT's contract)"
    )


def test_detection_padding_contract_catches_what_it_must() -> None:
    feeds = _detection_feeds()
    # Padding on one side only: the original lost its third detection.
    before, after = _detection_graphs(drop_row=2)
    (line,) = [c.line() for c in validate(before, after, feeds).outputs]
    assert line.startswith("FAIL detections (1, 6, 6)")
    assert line.endswith(
        "(compared 2 valid rows; 3 padding rows (class -1 vs 0) by DetectionLayer_TRT's "
        "contract; 1 padding row in one graph only (first: row (0, 2), padding in the "
        "original))"
    )
    # -1 is padding only in the plugin's output: an original writing -1 there is no match.
    before, after = _detection_graphs(padding_class=-1.0)
    assert not validate(before, after, feeds).passed
    # Not a passthrough (a Reshape): no contract, the class column differs on padding rows.
    before, after = _detection_graphs(through="Reshape")
    (plain,) = validate(before, after, feeds).outputs
    assert not plain.passed and plain.max_abs == 1.0 and "contract" not in plain.note


def test_given_value_wins_even_where_none_can_be_implied() -> None:
    # DetectionLayer_TRT alone cannot tell the image size for the meta (no ProposalLayer_TRT
    # nor PyramidROIAlign_TRT in the graph): an error, unless the caller gives the meta.
    before, after = _detection_graphs(meta=True)
    with pytest.raises(ValidationError, match="image_meta of mrcnn_detection .*cannot tell"):
        validate(before, after, _detection_feeds())
    meta = image_meta(128, 128, 3, 15)[None]
    report = validate(before, after, {**_detection_feeds(), "input_image_meta": meta})
    assert report.passed, report.format()
    assert report.format().splitlines()[1].startswith(
        "implied feed: input_image_meta: the given value (--inputs) is used (none is implied: "
        "side input image_meta of mrcnn_detection (DetectionLayer_TRT): DetectionLayer_TRT at "
        "mrcnn_detection: cannot tell the image size"
    )


# --------------------------------------------------------------------------- known deviation
def _roi_align_graphs() -> tuple[Graph, Graph]:
    """Original: TF crop_and_resize of P2 (NHWC) for every ROI, as Matterport's ROI align does
    for small boxes. Rewritten: PyramidROIAlign_TRT set up to sample as crop_and_resize does
    (rules/maskrcnn.rules), its [N, R, C, 7, 7] put back as [R, 7, 7, C]."""

    def placeholders(tf: Any) -> list[Any]:
        rois = tf.compat.v1.placeholder(tf.float32, [1, 4, 4], name="rois")
        maps = [tf.compat.v1.placeholder(tf.float32, [1, 3, 32 >> k, 32 >> k], name=f"p{k + 2}")
                for k in range(4)]  # fmt: skip
        return [rois, *maps]

    def original(tf: Any) -> None:
        rois, p2, *_ = placeholders(tf)
        nhwc = tf.transpose(p2, [0, 2, 3, 1])
        crops = tf.image.crop_and_resize(nhwc, tf.reshape(rois, [4, 4]), tf.zeros([4], tf.int32),
                                         [7, 7])  # fmt: skip
        tf.identity(crops, name="pooled")

    def rewritten(tf: Any) -> None:
        placeholders(tf)
        plugin = tf.compat.v1.placeholder(tf.float32, [1, 4, 3, 7, 7], name="roi_align")
        tf.reshape(tf.transpose(plugin, [0, 1, 3, 4, 2]), [4, 7, 7, 3], name="pooled")

    after = _tf_graph(rewritten)
    _to_plugin(after, "roi_align", "PyramidROIAlign_TRT", ["rois", "p2", "p3", "p4", "p5"],
               pooled_size=7, roi_coords_absolute=0, roi_coords_swap=1, roi_coords_transform=-1,
               sampling_ratio=1)  # fmt: skip
    return _tf_graph(original), after


def _roi_feeds(rois: list[list[float]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    feeds = {f"p{k + 2}": rng.standard_normal((1, 3, 32 >> k, 32 >> k)).astype(np.float32)
             for k in range(4)}  # fmt: skip
    return {"rois": np.asarray([rois], dtype=np.float32), **feeds}


def test_failure_downstream_of_roi_align_names_its_known_deviation() -> None:
    before, after = _roi_align_graphs()
    inside = [[0.1, 0.1, 0.2, 0.2], [0.5, 0.3, 0.58, 0.4], [0.7, 0.7, 0.8, 0.78],
              [0.2, 0.6, 0.3, 0.7]]  # fmt: skip
    good = validate(before, after, _roi_feeds(inside), rtol=1e-4, atol=1e-4)
    assert good.passed, good.format()
    outside = [inside[0], [-0.05, 0.3, 0.05, 0.4], inside[2], inside[3]]
    bad = validate(before, after, _roi_feeds(outside), rtol=1e-4, atol=1e-4)
    assert not bad.passed
    (line,) = [c.line() for c in bad.outputs]
    assert line.startswith(
        "FAIL (known deviation of PyramidROIAlign_TRT at roi_align: 1 of 4 boxes reach outside "
        "the image, where it clips them and crop_and_resize extrapolates zeros) pooled "
        "(4, 7, 7, 3): max abs"
    )
    # A failure with every box inside names no deviation.
    schema = load_catalog().get("PyramidROIAlign_TRT")
    after.node("roi_align").attr["roi_coords_transform"].CopyFrom(
        field_attr(schema, "roi_coords_transform", 0)
    )
    (wrong,) = validate(before, after, _roi_feeds(inside), rtol=1e-4, atol=1e-4).outputs
    assert not wrong.passed and wrong.deviation == "" and wrong.line().startswith("FAIL pooled")


# --------------------------------------------------------------------------- export
def test_export_ignores_side_attrs(tmp_path: Path) -> None:
    from surgery.backends.export.plugin_nodes import PluginFieldError, find_plugin_nodes

    def build(tf: Any) -> None:
        x = tf.compat.v1.placeholder(tf.float32, [1, 3, 4, 4], name="x")
        tf.nn.leaky_relu(x, 0.2, name="act")
        tf.compat.v1.placeholder(tf.float32, [1, 2], name="meta")

    graph = _tf_graph(build)
    _to_plugin(graph, "act", "LReLU_TRT", ["x"], negSlope=0.2, _side_meta="meta")
    (plugin,) = find_plugin_nodes(graph, load_catalog())
    assert plugin.fields == {"negSlope": pytest.approx(0.2)}
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("tf2onnx")
    from surgery.backends.onnx_export import export_onnx

    out = tmp_path / "side.onnx"
    export_onnx(graph, out, outputs=["act:0"])
    (node,) = [n for n in onnx.load(str(out)).graph.node if n.op_type == "LReLU_TRT"]
    assert sorted(a.name for a in node.attribute) == [
        "negSlope", "plugin_namespace", "plugin_version"
    ]  # fmt: skip
    graph.node("act").attr["bogus"].CopyFrom(AttrValue(s=b"x"))
    with pytest.raises(PluginFieldError, match="attr 'bogus' is not a field"):
        find_plugin_nodes(graph, load_catalog())
