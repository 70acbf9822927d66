"""GPU kernels of the NMS family (ProposalLayer_TRT, DetectionLayer_TRT, NMS_TRT, Proposal) and
their shared NMS primitive, against the NumPy references.

Every kernel test runs the reference on the same inputs and wants the same boxes in the same order
(ties in the reference's stable order) and values to float32 rounding; outputs start as NaN (or
-7 for integers), so an element the kernel leaves unwritten fails. They need CuPy and a CUDA GPU
and skip without them; the build-time check tests run everywhere.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

from plugins.gpu import GpuKernelError, check, run_arrays
from plugins.reference._mrcnn import class_nms, pyramid_anchors
from plugins.registry import reference
from plugins.trt.creators import _plugin_class
from surgery.ops.plugin_schema import load_catalog


def run_gpu(cp: Any, name: str, inputs: list[np.ndarray], fields: dict[str, Any],
            want: list[np.ndarray]) -> list[np.ndarray]:  # fmt: skip
    """`run_arrays` on device copies of `inputs`, outputs shaped like `want` and pre-filled with
    NaN (-7 for integers)."""
    outs = [cp.full(w.shape, np.nan if w.dtype.kind == "f" else -7, dtype=w.dtype) for w in want]
    run_arrays(name, fields, [cp.asarray(x) for x in inputs], outs)
    cp.cuda.get_current_stream().synchronize()
    return [cp.asnumpy(o) for o in outs]


def same(got: list[np.ndarray], want: list[np.ndarray], atol: float = 1e-6) -> None:
    """Equal shapes and dtypes; float values to float32 rounding (`atol` near zero), integers
    exactly."""
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=atol)
        else:
            np.testing.assert_array_equal(g, w)


def compare(cp: Any, name: str, inputs: list[np.ndarray], fields: dict[str, Any],
            atol: float = 1e-6) -> list[Any]:  # fmt: skip
    """Run kernel and reference on `inputs`; assert they agree; the reference's outputs."""
    want = reference(name)([x.copy() for x in inputs], fields)
    same(run_gpu(cp, name, inputs, fields, want), want, atol)
    return want


# --- input makers ---------------------------------------------------------------------------------


def proposal_layer_inputs(rng: np.random.Generator, batch: int, image: list[int],
                          spread: float = 0.5, levels: int = 0) -> list[np.ndarray]:  # fmt: skip
    """scores [N, A, 2, 1, 1] (uniform, or `levels` values: ties), deltas [N, A, 4, 1, 1]."""
    count = len(pyramid_anchors(*image))
    scores = rng.random((batch, count, 2, 1, 1))
    if levels:
        scores = rng.integers(1, levels + 1, scores.shape) / levels
    deltas = rng.standard_normal((batch, count, 4, 1, 1)) * spread
    return [scores.astype(np.float32), deltas.astype(np.float32)]


def detection_inputs(rng: np.random.Generator, batch: int, rois: int, classes: int,
                     sharp: float = 3.0, levels: int = 0) -> list[np.ndarray]:  # fmt: skip
    """delta_bbox, score (a softmax over classes; `levels`: rounded, for ties), roi in [0, 1]."""
    logits = rng.standard_normal((batch, rois, classes)) * sharp
    scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    if levels:
        scores = np.round(scores * levels) / levels
    corner = rng.random((batch, rois, 2)) * 0.8
    size = rng.random((batch, rois, 2)) * 0.3
    roi = np.concatenate([corner, corner + size], axis=-1)
    deltas = rng.standard_normal((batch, rois, classes * 4, 1, 1)) * 0.5
    return [deltas.astype(np.float32), scores[..., None, None].astype(np.float32),
            roi.astype(np.float32)]  # fmt: skip


def ssd_inputs(rng: np.random.Generator, batch: int, priors: int, classes: int, share: bool,
               pixels: bool = False, prior_sets: int = 1,
               levels: int = 0) -> list[np.ndarray]:  # fmt: skip
    """loc [N, P, K, 4], conf [N, P, C] (uniform, or `levels` logits in [-4, 4]: ties), priors
    [sets, 2, P*4] (corners, then variances 0.1, 0.1, 0.2, 0.2)."""
    loc = rng.standard_normal((batch, priors, 1 if share else classes, 4)) * 0.3
    conf = rng.random((batch, priors, classes))
    if levels:
        conf = rng.integers(-levels, levels + 1, conf.shape) * (4.0 / levels)
    corner = rng.random((prior_sets, priors, 2)) * 0.8
    boxes = np.concatenate([corner, corner + rng.random((prior_sets, priors, 2)) * 0.3], -1)
    if pixels:
        boxes *= 300
    var = np.broadcast_to(np.asarray([0.1, 0.1, 0.2, 0.2]), boxes.shape)
    prior = np.stack([boxes.reshape(prior_sets, -1), var.reshape(prior_sets, -1)], axis=1)
    return [loc.astype(np.float32), conf.astype(np.float32), prior.astype(np.float32)]


def ssd_fields(**override: Any) -> dict[str, Any]:
    """NMS_TRT fields of a small SSD head, with `override`."""
    fields = {"shareLocation": 1, "varianceEncodedInTarget": 0, "backgroundLabelId": 0,
              "numClasses": 6, "topK": 100, "keepTopK": 80, "confidenceThreshold": 0.3,
              "nmsThreshold": 0.45, "codeType": 1}  # fmt: skip
    fields.update(override)
    return fields


def rpn_inputs(rng: np.random.Generator, batch: int, anchors: int, height: int, width: int,
               spread: float = 0.3) -> list[np.ndarray]:  # fmt: skip
    """scores [N, 2A, H, W], deltas [N, 4A, H, W]."""
    scores = rng.random((batch, 2 * anchors, height, width))
    deltas = rng.standard_normal((batch, 4 * anchors, height, width)) * spread
    return [scores.astype(np.float32), deltas.astype(np.float32)]


RPN = {"input_height": 192, "input_width": 256, "rpn_stride": 16, "roi_min_size": 16.0,
       "nms_iou_threshold": 0.7, "pre_nms_top_n": 600, "post_nms_top_n": 100,
       "anchor_sizes": [32.0, 64.0, 128.0], "anchor_ratios": [0.5, 1.0, 2.0]}  # fmt: skip


def valid_rows(rows: np.ndarray) -> int:
    """Rows of a box output that are not all zeros."""
    return int((np.abs(rows).sum(-1) > 0).sum())


# --- ProposalLayer_TRT ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("image", "pre", "keep", "iou"),
                         [([3, 64, 96], 300, 100, 0.7), ([3, 128, 128], 1024, 1000, 0.5),
                          ([3, 64, 64], 1024, 2000, 0.3)])  # fmt: skip
def test_proposal_layer_random(cp: Any, batch: int, image: list[int], pre: int, keep: int,
                               iou: float) -> None:  # fmt: skip
    rng = np.random.default_rng(batch * 100 + pre)
    fields = {"prenms_topk": pre, "keep_topk": keep, "iou_threshold": iou, "image_size": image}
    (rois,) = compare(cp, "ProposalLayer_TRT", proposal_layer_inputs(rng, batch, image), fields)
    assert 0 < valid_rows(rois[0]) <= min(pre, keep)


def test_proposal_layer_coco(cp: Any) -> None:
    image = [3, 1024, 1024]
    assert len(pyramid_anchors(*image)) == 261888
    rng = np.random.default_rng(7)
    fields = {"prenms_topk": 1024, "keep_topk": 1000, "iou_threshold": 0.7, "image_size": image}
    inputs = proposal_layer_inputs(rng, 2, image, spread=0.1)
    (rois,) = compare(cp, "ProposalLayer_TRT", inputs, fields)
    assert valid_rows(rois[0]) > 500


def test_proposal_layer_edges(cp: Any) -> None:
    rng = np.random.default_rng(3)
    image = [3, 64, 64]
    fields = {"prenms_topk": 500, "keep_topk": 200, "iou_threshold": 0.7, "image_size": image}
    scores, deltas = proposal_layer_inputs(rng, 2, image, levels=4)  # ties
    compare(cp, "ProposalLayer_TRT", [scores, deltas], fields)
    low = scores * np.float32(0.01)  # every score <= 0.01: nothing is written
    (rois,) = compare(cp, "ProposalLayer_TRT", [low, deltas], fields)
    assert valid_rows(rois) == 0
    huge = np.full_like(deltas, 40.0)  # every box clipped to the whole image: one kept
    (rois,) = compare(cp, "ProposalLayer_TRT", [scores, huge], fields)
    assert [valid_rows(r) for r in rois] == [1, 1]
    wild = deltas * np.float32(8)  # boxes across and outside the border, clipped, degenerate
    compare(cp, "ProposalLayer_TRT", [scores, wild], fields)


# --- DetectionLayer_TRT ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("rois", "classes", "keep", "threshold", "iou"),
                         [(150, 7, 50, 0.5, 0.3), (150, 7, 500, 0.0, 0.5), (40, 3, 10, 0.2, 0.7),
                          (300, 81, 100, 0.7, 0.3)])  # fmt: skip
def test_detection_layer_random(cp: Any, batch: int, rois: int, classes: int, keep: int,
                                threshold: float, iou: float) -> None:  # fmt: skip
    rng = np.random.default_rng(rois + classes + batch)
    fields = {"num_classes": classes, "keep_topk": keep, "score_threshold": threshold,
              "iou_threshold": iou}  # fmt: skip
    compare(cp, "DetectionLayer_TRT", detection_inputs(rng, batch, rois, classes), fields)


@pytest.mark.parametrize("batch", [1, 2])
def test_detection_layer_coco(cp: Any, batch: int) -> None:
    rng = np.random.default_rng(11)
    fields = {"num_classes": 81, "keep_topk": 100, "score_threshold": 0.7, "iou_threshold": 0.3}
    (out,) = compare(cp, "DetectionLayer_TRT", detection_inputs(rng, batch, 1000, 81, sharp=4.0),
                     fields)  # fmt: skip
    assert (out[..., 4] > 0).sum() > 50 * batch


def test_detection_layer_edges(cp: Any) -> None:
    rng = np.random.default_rng(5)
    fields = {"num_classes": 5, "keep_topk": 60, "score_threshold": 0.3, "iou_threshold": 0.5}
    deltas, scores, rois = detection_inputs(rng, 2, 80, 5, levels=5)  # ties across classes
    compare(cp, "DetectionLayer_TRT", [deltas, scores, rois], fields)
    (out,) = compare(cp, "DetectionLayer_TRT", [deltas, scores * np.float32(0.1), rois], fields)
    assert (out[..., 4] == -1).all()  # nothing above the threshold
    same_box = np.broadcast_to(rois[:, :1], rois.shape).copy()  # identical boxes: one per class
    (out,) = compare(cp, "DetectionLayer_TRT", [deltas * 0, scores, same_box], fields)
    for image in out:
        labels = image[:, 4][image[:, 4] > 0]
        assert len(labels) > 0 and len(np.unique(labels)) == len(labels)
    flat = rois.copy()
    flat[..., 2] = flat[..., 0]  # zero height, and boxes across the border
    compare(cp, "DetectionLayer_TRT", [deltas * 4, scores, flat * 2 - 0.5], fields)
    compare(cp, "DetectionLayer_TRT", [deltas, scores, rois], {**fields, "keep_topk": 1000})


# --- NMS_TRT --------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("share", "code", "pixels", "extra"),
                         [(True, 1, False, {}), (False, 2, True, {"isNormalized": 0}),
                          (True, 4, False, {"varianceEncodedInTarget": 1}), (True, 3, False, {}),
                          (True, 2, False, {"backgroundLabelId": -1, "topK": 1000}),
                          (False, 1, False, {"backgroundLabelId": 2, "keepTopK": 1000})],
                         )  # fmt: skip
def test_nms_trt_random(cp: Any, batch: int, share: bool, code: int, pixels: bool,
                        extra: dict[str, Any]) -> None:  # fmt: skip
    rng = np.random.default_rng(batch * 10 + code)
    fields = ssd_fields(shareLocation=int(share), codeType=code, **extra)
    inputs = ssd_inputs(rng, batch, 300, 6, share, pixels=pixels)
    # Pixel boxes (up to 400) clipped to [0, 1]: exp's last-bit differences (NumPy's SIMD exp is
    # not CUDA's expf) survive the cancellation near 0 as ~1e-5 absolute.
    det, count = compare(cp, "NMS_TRT", inputs, fields, atol=1e-4 if pixels else 1e-6)
    assert count.min() > 0


def test_nms_trt_input_order_sigmoid_and_prior_sets(cp: Any) -> None:
    rng = np.random.default_rng(2)
    loc, conf, priors = ssd_inputs(rng, 3, 200, 4, True, prior_sets=3, levels=8)  # ties
    fields = ssd_fields(numClasses=4, confSigmoid=1, confidenceThreshold=0.6, inputOrder=[2, 0, 1],
                        isBatchAgnostic=0)  # fmt: skip
    compare(cp, "NMS_TRT", [conf, priors, loc], fields)


def test_nms_trt_edges(cp: Any) -> None:
    rng = np.random.default_rng(4)
    loc, conf, priors = ssd_inputs(rng, 2, 150, 5, True)
    det, count = compare(cp, "NMS_TRT", [loc, conf, priors], ssd_fields(numClasses=5,
                                                                          confidenceThreshold=1.5))
    assert (count == 0).all() and (det[..., 1] == -1).all()  # nothing above the threshold
    same_prior = priors.copy()
    same_prior[:, 0] = np.tile(priors[:, 0, :4], 150)  # identical boxes: one per class
    det, count = compare(cp, "NMS_TRT", [loc * 0, conf, same_prior], ssd_fields(numClasses=5))
    assert (count == 4).all()
    wild = priors.copy()
    wild[:, 0] = wild[:, 0] * 3 - 1  # across and outside [0, 1], clipped on output
    wild[:, 0, 2::4] = wild[:, 0, 0::4]  # zero width
    compare(cp, "NMS_TRT", [loc, conf, wild], ssd_fields(numClasses=5, keepTopK=500))


# --- Proposal -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("height", "width", "override"),
                         [(12, 16, {}), (20, 30, {"pre_nms_top_n": 6000, "post_nms_top_n": 300}),
                          (6, 8, {"pre_nms_top_n": 5000, "roi_min_size": 40.0})])  # fmt: skip
def test_proposal_random(cp: Any, batch: int, height: int, width: int,
                         override: dict[str, Any]) -> None:  # fmt: skip
    rng = np.random.default_rng(height * width + batch)
    fields = {**RPN, "input_height": height * 16, "input_width": width * 16, **override}
    (rois,) = compare(cp, "Proposal", rpn_inputs(rng, batch, 9, height, width), fields)
    assert valid_rows(rois[0]) > 0


def test_proposal_edges(cp: Any) -> None:
    rng = np.random.default_rng(9)
    scores, deltas = rpn_inputs(rng, 2, 9, 10, 12)
    fields = {**RPN, "input_height": 160, "input_width": 192}
    ties = np.round(scores * 3) / 3
    compare(cp, "Proposal", [ties, deltas], fields)
    huge = np.full_like(deltas, 10.0)  # every box the whole image: one kept
    (rois,) = compare(cp, "Proposal", [scores, huge], fields)
    assert [valid_rows(r) for r in rois] == [1, 1]
    tiny = np.full_like(deltas, -10.0)  # every box below roi_min_size: all scored -inf
    compare(cp, "Proposal", [scores, tiny], fields)
    compare(cp, "Proposal", [scores[:, :9], deltas * 5], fields)  # A score channels; clipping


# --- the shared primitive -------------------------------------------------------------------------


def random_boxes(rng: np.random.Generator, n: int, classes: int) -> tuple[np.ndarray, ...]:
    """(boxes [n, 4] as x1, y1, x2, y2, scores [n], labels [n] int32). Whole-pixel corners:
    every overlap is then exact up to its one division, whatever the order of operations (and
    torchvision's class offsets stay exact), so implementations must agree bit for bit."""
    corner = rng.integers(0, 1000, (n, 2))
    boxes = np.concatenate([corner, corner + rng.integers(10, 100, (n, 2))], axis=1)
    return (boxes.astype(np.float32), rng.random(n).astype(np.float32),
            rng.integers(0, classes, n).astype(np.int32))  # fmt: skip


def reference_batched(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      iou: float) -> list[int]:  # fmt: skip
    """Per-class greedy NMS, survivors best first (ties by index)."""
    kept = class_nms(boxes, scores, labels, np.ones(len(boxes), dtype=bool), iou)
    order = np.lexsort((kept, -scores[kept].astype(np.float64)))
    return [int(i) for i in kept[order]]


@pytest.mark.parametrize(("n", "classes"), [(1, 1), (100, 1), (1000, 1), (3000, 80), (64, 2)])
def test_batched_nms(cp: Any, n: int, classes: int) -> None:
    from plugins.gpu.nms import batched_nms

    rng = np.random.default_rng(n)
    boxes, scores, labels = random_boxes(rng, n, classes)
    index, kept = batched_nms(cp, cp.asarray(boxes), cp.asarray(scores), cp.asarray(labels), 0.5)
    count = int(kept[0])
    assert cp.asnumpy(index[:count]).tolist() == reference_batched(boxes, scores, labels, 0.5)
    assert (cp.asnumpy(index[count:]) == -1).all()


def test_batched_nms_matches_torchvision(cp: Any) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed here")
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is not installed here")
    from plugins.gpu.nms import batched_nms

    rng = np.random.default_rng(1)
    boxes, scores, labels = random_boxes(rng, 5000, 20)
    index, kept = batched_nms(cp, cp.asarray(boxes), cp.asarray(scores), cp.asarray(labels), 0.5)
    ours = cp.asnumpy(index[: int(kept[0])])
    theirs = ops.batched_nms(torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda(),
                             torch.from_numpy(labels).cuda(), 0.5).cpu().numpy()  # fmt: skip
    np.testing.assert_array_equal(ours, theirs)


# --- the IPluginV3 enqueue path (a stand-in for the TensorRT module) ------------------------------


def fake_trt() -> types.ModuleType:
    """Just what SchemaPlugin needs from TensorRT: its base classes and DataType."""
    trt = types.ModuleType("fake_tensorrt")
    for base in ("IPluginV3", "IPluginV3OneCore", "IPluginV3OneBuild", "IPluginV3OneRuntime"):
        setattr(trt, base, type(base, (), {"__init__": lambda self: None}))
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT8="INT8", INT32="INT32")
    return trt


def desc(shape: tuple[int, ...], dtype: np.dtype) -> types.SimpleNamespace:
    """A PluginTensorDesc stand-in."""
    return types.SimpleNamespace(dims=shape, type="INT32" if dtype == np.int32 else "FLOAT")


def enqueue_cases() -> dict[str, tuple[list[np.ndarray], dict[str, Any]]]:
    """Plugin -> (inputs, fields) for the enqueue test."""
    rng = np.random.default_rng(0)
    image = [3, 64, 64]
    return {
        "ProposalLayer_TRT": (proposal_layer_inputs(rng, 2, image),
                              {"prenms_topk": 256, "keep_topk": 64, "iou_threshold": 0.7,
                               "image_size": image}),
        "DetectionLayer_TRT": (detection_inputs(rng, 2, 100, 5),
                               {"num_classes": 5, "keep_topk": 30, "score_threshold": 0.4,
                                "iou_threshold": 0.5}),
        "NMS_TRT": (ssd_inputs(rng, 2, 120, 6, True), ssd_fields()),
        "Proposal": (rpn_inputs(rng, 2, 9, 8, 10), {**RPN, "input_height": 128,
                                                    "input_width": 160}),
    }  # fmt: skip


@pytest.mark.parametrize("name", ["ProposalLayer_TRT", "DetectionLayer_TRT", "NMS_TRT", "Proposal"])
def test_enqueue_runs_the_kernel(cp: Any, name: str) -> None:
    inputs, fields = enqueue_cases()[name]
    schema = load_catalog().get(name)
    full = {spec.name: spec.default for spec in schema.fields} | fields
    plugin = _plugin_class(fake_trt())(schema, full)
    want = reference(name)([x.copy() for x in inputs], full)
    ins = [cp.asarray(x) for x in inputs]
    outs = [cp.full(w.shape, np.nan if w.dtype.kind == "f" else -7, dtype=w.dtype) for w in want]
    stream = cp.cuda.Stream(non_blocking=True)
    cp.cuda.Device().synchronize()
    in_desc = [desc(x.shape, x.dtype) for x in inputs]
    out_desc = [desc(w.shape, w.dtype) for w in want]
    plugin.enqueue(in_desc, out_desc, [x.data.ptr for x in ins], [y.data.ptr for y in outs], 0,
                   stream.ptr)  # fmt: skip
    stream.synchronize()
    same([cp.asnumpy(y) for y in outs], want)


# --- build-time checks (no GPU needed) ------------------------------------------------------------

COCO_PROPOSALS = {"prenms_topk": 1024, "keep_topk": 1000, "iou_threshold": 0.7,
                  "image_size": [3, 1024, 1024]}  # fmt: skip
COCO_DETECTIONS = {"num_classes": 81, "keep_topk": 100, "score_threshold": 0.7,
                   "iou_threshold": 0.3}  # fmt: skip


def test_checks_accept_the_real_shapes_and_unknown_dims() -> None:
    check("ProposalLayer_TRT", [(2, 261888, 2, 1, 1), (2, 261888, 4, 1, 1)], ["float32"] * 2,
          COCO_PROPOSALS)  # fmt: skip
    check("ProposalLayer_TRT", [(-1, 261888, 2, 1, 1), (-1, -1, 4, 1, 1)], ["float32"] * 2,
          COCO_PROPOSALS)  # fmt: skip
    check("DetectionLayer_TRT", [(1, 1000, 324, 1, 1), (1, 1000, 81, 1, 1), (1, 1000, 4)],
          ["float32"] * 3, COCO_DETECTIONS)  # fmt: skip
    check("DetectionLayer_TRT", [(-1, -1, 324, 1, 1), (-1, -1, 81, 1, 1), (-1, -1, 4)],
          ["float32"] * 3, COCO_DETECTIONS)  # fmt: skip
    check("NMS_TRT", [(1, 1917, 1, 4), (1, 1917, 6), (1, 2, 7668)], ["float32"] * 3,
          ssd_fields())  # fmt: skip
    check("Proposal", [(1, 18, 38, 50), (1, 36, 38, 50)], ["float32"] * 2, RPN)
    check("Proposal", [(-1, 18, -1, -1), (-1, 36, -1, -1)], ["float32"] * 2, RPN)


@pytest.mark.parametrize(("name", "shapes", "dtypes", "fields", "message"), [
    ("ProposalLayer_TRT", [(2, 261888, 2, 1, 1), (2, 261888, 4, 1, 1)], ["float16", "float32"],
     COCO_PROPOSALS, "float32 inputs only"),
    ("ProposalLayer_TRT", [(2, 1000, 2, 1, 1), (2, 261888, 4, 1, 1)], ["float32"] * 2,
     COCO_PROPOSALS, "input 'scores' has shape .* expected 523776 values per image"),
    ("ProposalLayer_TRT", [(), (2, 261888, 4, 1, 1)], ["float32"] * 2, COCO_PROPOSALS,
     "input 'scores' must have a batch dim"),
    ("ProposalLayer_TRT", [(2, 261888, 2, 1, 1)], ["float32"], COCO_PROPOSALS,
     "expected 2 inputs"),
    ("ProposalLayer_TRT", [(2, 261888, 2, 1, 1), (2, 261888, 4, 1, 1)], ["float32"] * 2,
     {**COCO_PROPOSALS, "keep_topk": 0}, "must be >= 1"),
    ("DetectionLayer_TRT", [(1, 1000, 324, 1, 1), (1, 1000, 81, 1, 1), (1000,)],
     ["float32"] * 3, COCO_DETECTIONS, "input 'roi' must be \\[N, R, 4\\]"),
    ("DetectionLayer_TRT", [(1, 1000, 320, 1, 1), (1, 1000, 81, 1, 1), (1, 1000, 4)],
     ["float32"] * 3, COCO_DETECTIONS, "input 'delta_bbox' has shape .* expected 324000"),
    ("DetectionLayer_TRT", [(1, 1000, 324, 1, 1), (1, 1000, 81, 1, 1), (1, 1000, 4)],
     ["float32", "int32", "float32"], COCO_DETECTIONS, "float32 inputs only"),
    ("DetectionLayer_TRT", [(1, 1000, 324, 1, 1), (2, 1000, 81, 1, 1), (1, 1000, 4)],
     ["float32"] * 3, COCO_DETECTIONS, "must share the batch dim"),
    ("NMS_TRT", [(1, 1917, 1, 4), (1, 1917, 6), (1, 2, 7668)], ["float32", "float16", "float32"],
     ssd_fields(), "float32 inputs only"),
    ("NMS_TRT", [(1, 1917, 1, 4), (1, 1917, 5), (1, 2, 7668)], ["float32"] * 3, ssd_fields(),
     "conf .* does not hold 6 scores for each of 1917 priors"),
    ("NMS_TRT", [(1, 1917, 1, 4), (1, 1917, 6), (1, 2, 7000)], ["float32"] * 3, ssd_fields(),
     "priors .* are not \\[\\*, 2, 7668\\]"),
    ("NMS_TRT", [(1, 1917, 1, 4), (1, 1917, 6), (1, 2, 7668)], ["float32"] * 3,
     ssd_fields(codeType=7), "codeType 7 is unknown"),
    ("NMS_TRT", [(1, 1917, 1, 4), (1, 1917, 6), (1, 2, 7668)], ["float32"] * 3,
     ssd_fields(inputOrder=[0, 0, 1]), "inputOrder must be a permutation"),
    ("Proposal", [(1, 18, 38, 50), (1, 36, 38)], ["float32"] * 2, RPN,
     "input 'deltas' has shape .* expected rank 4"),
    ("Proposal", [(1, 18, 38, 50), (1, 32, 38, 50)], ["float32"] * 2, RPN,
     "need 36 channels for 9 anchors"),
    ("Proposal", [(1, 18, 38, 50), (1, 36, 38, 50)], ["float16", "float32"], RPN,
     "float32 inputs only"),
    ("Proposal", [(1, 18, 100, 100), (1, 36, 100, 100)], ["float32"] * 2,
     {**RPN, "pre_nms_top_n": 100000}, "pre_nms_top_n 90000 is above 32768"),
])  # fmt: skip
def test_checks_refuse(name: str, shapes: list[tuple[int, ...]], dtypes: list[str],
                       fields: dict[str, Any], message: str) -> None:  # fmt: skip
    with pytest.raises(GpuKernelError, match=f"{name}: .*{message}"):
        check(name, shapes, dtypes, fields)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-rs"]))
