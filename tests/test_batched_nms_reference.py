"""BatchedNMS_Surgery's NumPy reference against onnxruntime running what torchvision's exported
`batched_nms` runs: the class-offset trick (ReduceMax, Add, Cast, Mul, Unsqueeze, Add), then
NonMaxSuppression (no score threshold, max_output_boxes_per_class INT64_MAX, center_point_box 0)
and Gather of column 2. The kept index lists must be identical, order included."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pytest

from plugins.registry import PluginReferenceError, reference

onnx = pytest.importorskip("onnx", reason="onnx is not installed here")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed here")

INT64_MAX = np.iinfo(np.int64).max


@lru_cache(maxsize=8)
def session(iou: float) -> Any:
    """An onnxruntime session of the exported batched_nms (opset 17) at IoU threshold `iou`."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: np.ndarray) -> Any:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))

    nodes = [
        const("one", np.asarray(1.0, dtype=np.float32)),
        const("axis0", np.asarray([0], dtype=np.int64)),
        const("axis1", np.asarray([1], dtype=np.int64)),
        const("axes01", np.asarray([0, 1], dtype=np.int64)),
        const("max_out", np.asarray([INT64_MAX], dtype=np.int64)),
        const("iou", np.asarray([iou], dtype=np.float32)),
        const("column", np.asarray(2, dtype=np.int64)),
        helper.make_node("ReduceMax", ["boxes"], ["top"], keepdims=0),
        helper.make_node("Add", ["top", "one"], ["top1"]),
        helper.make_node("Cast", ["idxs"], ["idxs_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["idxs_f", "top1"], ["offsets"]),
        helper.make_node("Unsqueeze", ["offsets", "axis1"], ["offsets_col"]),
        helper.make_node("Add", ["boxes", "offsets_col"], ["moved"]),
        helper.make_node("Unsqueeze", ["moved", "axis0"], ["moved3"]),
        helper.make_node("Unsqueeze", ["scores", "axes01"], ["scores3"]),
        helper.make_node("NonMaxSuppression", ["moved3", "scores3", "max_out", "iou"],
                         ["selected"], center_point_box=0),  # fmt: skip
        helper.make_node("Gather", ["selected", "column"], ["keep"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "batched_nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("idxs", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("keep", TensorProto.INT64, ["K"])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def ours(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """The reference's kept indices (and a check of its padding and count)."""
    keep, count = reference("BatchedNMS_Surgery")(
        [boxes, scores, classes.astype(np.int32)], {"iou_threshold": iou}
    )
    assert keep.dtype == np.int32 and count.dtype == np.int32 and count.shape == (1,)
    assert keep.shape == (len(boxes),) and (keep[count[0] :] == -1).all()
    return keep[: count[0]].tolist()


def agree(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """Assert the reference keeps exactly what onnxruntime keeps; the kept indices."""
    boxes, scores = boxes.astype(np.float32), scores.astype(np.float32)
    (want,) = session(iou).run(None, {"boxes": boxes, "scores": scores,
                                      "idxs": classes.astype(np.int64)})  # fmt: skip
    got = ours(boxes, scores, classes, iou)
    assert got == want.tolist()
    return got


def random_case(rng: np.random.Generator, n: int, classes: int, *, scale: float = 100.0,
                shift: float = 0.0, flip: bool = False, levels: int = 0,
                grid: float = 0.0) -> tuple[np.ndarray, ...]:  # fmt: skip
    """n boxes with fractional (or `grid`-snapped) corners in [shift, shift + scale], random
    sizes, some `flip`ped corners; scores uniform or on `levels` values (ties)."""
    corner = rng.random((n, 2)) * scale + shift
    size = rng.random((n, 2)) * scale * 0.3
    boxes = np.concatenate([corner, corner + size], axis=1)
    if grid:
        boxes = np.round(boxes / grid) * grid
    if flip:
        swap = rng.random(n) < 0.5
        boxes[swap] = boxes[swap][:, [2, 3, 0, 1]]
        swap = rng.random(n) < 0.3
        boxes[swap] = boxes[swap][:, [0, 3, 2, 1]]
    scores = rng.random(n) if not levels else rng.integers(0, levels, n) / levels
    return boxes, scores, rng.integers(0, classes, n)


@pytest.mark.parametrize(("n", "classes", "iou", "options"), [
    (200, 1, 0.5, {}),
    (1500, 80, 0.5, {}),
    (300, 3, 0.3, {"flip": True}),
    (250, 5, 0.7, {"levels": 6}),  # many equal scores: lower index first
    (200, 4, 0.5, {"shift": -60.0, "scale": 50.0}),  # corners below -1: classes overlap
    (150, 2, 0.5, {"grid": 0.5, "levels": 3}),  # shared edges and equal boxes
    (300, 1, 0.0, {}),  # any overlap suppresses
    (300, 7, 1.0, {"grid": 1.0}),  # nothing can exceed IoU 1: all kept
    (3000, 200, 0.6, {"scale": 1e4}),  # large offsets: float32 rounding of the moved boxes
    (500, 2, 0.45, {"scale": 1.0}),  # normalised coordinates
])  # fmt: skip
def test_reference_matches_onnxruntime_random(n: int, classes: int, iou: float,
                                              options: dict[str, Any]) -> None:  # fmt: skip
    rng = np.random.default_rng(n * 7 + classes)
    kept = agree(*random_case(rng, n, classes, **options), iou)
    if iou == 1.0:
        assert len(kept) == n
    else:
        assert 0 < len(kept) < n


def test_reference_matches_onnxruntime_edge_cases() -> None:
    rng = np.random.default_rng(3)
    one = np.asarray([[1.0, 2.0, 3.0, 4.0]])
    assert agree(one, np.asarray([0.5]), np.asarray([0]), 0.5) == [0]  # N = 1
    same = np.tile(one, (50, 1))  # identical boxes: the best one survives
    scores = rng.random(50)
    assert agree(same, scores, np.zeros(50, dtype=int), 0.5) == [int(np.argmax(scores))]
    assert agree(same, np.full(50, 0.25), np.zeros(50, dtype=int), 0.9) == [0]  # ties: index 0
    # identical boxes in several classes: one survivor per class
    kept = agree(same, scores, np.arange(50) % 5, 0.5)
    assert sorted(np.arange(50)[kept] % 5) == [0, 1, 2, 3, 4]
    # degenerate boxes (zero width or height, points) never suppress nor get suppressed
    flat = np.asarray([[0, 0, 10, 10], [0, 0, 10, 0], [5, 5, 5, 5], [0, 0, 0, 10],
                       [1, 1, 9, 9]], dtype=np.float64)  # fmt: skip
    assert agree(flat, np.asarray([0.9, 0.8, 0.7, 0.6, 0.5]), np.zeros(5, dtype=int), 0.0) == [
        0, 1, 2, 3]  # fmt: skip
    # flipped corners describe the same box
    box = np.asarray([[0, 0, 10, 10], [10, 10, 0, 0], [10, 0, 0, 10]], dtype=np.float64)
    assert agree(box, np.asarray([0.3, 0.9, 0.6]), np.zeros(3, dtype=int), 0.5) == [1]
    # touching boxes (shared edge): no positive intersection even at IoU 0
    touch = np.asarray([[0, 0, 1, 1], [1, 0, 2, 1], [0, 1, 1, 2]], dtype=np.float64)
    assert agree(touch, np.asarray([0.1, 0.2, 0.3]), np.zeros(3, dtype=int), 0.0) == [2, 1, 0]
    # IoU exactly at the threshold is kept (strictly greater suppresses)
    half = np.asarray([[0, 0, 2, 1], [0, 0, 1, 1]], dtype=np.float64)  # IoU 0.5
    assert agree(half, np.asarray([0.9, 0.8]), np.zeros(2, dtype=int), 0.5) == [0, 1]
    assert agree(half, np.asarray([0.9, 0.8]), np.zeros(2, dtype=int), 0.49) == [0]
    # corners below -1: the offsets move a class-1 box onto a class-0 box, which suppresses it
    # (what the export computes, unlike a per-class NMS)
    cross = np.asarray([[0, 0, 10, 10], [-11, -11, -1, -1]], dtype=np.float64)
    assert agree(cross, np.asarray([0.9, 0.8]), np.asarray([0, 1]), 0.5) == [0]
    # -0.0 and +0.0 scores are equal: index order; negative scores are fine
    signed = np.asarray([0.0, -0.0, -1.0, 0.0])
    spread = np.asarray([[k * 10, 0, k * 10 + 5, 5] for k in range(4)], dtype=np.float64)
    assert agree(spread, signed, np.zeros(4, dtype=int), 0.5) == [0, 1, 3, 2]


def test_reference_empty_input_keeps_nothing() -> None:
    """N = 0 (the export's If takes its empty branch; onnxruntime's ReduceMax is not run)."""
    keep, count = reference("BatchedNMS_Surgery")(
        [np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)],
        {"iou_threshold": 0.5},
    )
    assert keep.shape == (0,) and keep.dtype == np.int32 and count.tolist() == [0]


@pytest.mark.parametrize(("inputs", "fields", "message"), [
    ([np.zeros((3, 5)), np.zeros(3), np.zeros(3, np.int32)], {"iou_threshold": 0.5},
     r"input 'boxes' has shape \(3, 5\); expected \[N, 4\]"),
    ([np.zeros((3, 4)), np.zeros((3, 1)), np.zeros(3, np.int32)], {"iou_threshold": 0.5},
     r"input 'scores' has shape \(3, 1\); expected \[3\]"),
    ([np.zeros((3, 4)), np.zeros(3), np.zeros(2, np.int32)], {"iou_threshold": 0.5},
     r"input 'classes' has shape \(2,\); expected \[3\]"),
    ([np.zeros((3, 4)), np.zeros(3), np.asarray([0.5, 1.0, 2.0])], {"iou_threshold": 0.5},
     "must hold integer class ids"),
    ([np.zeros((3, 4)), np.zeros(3), np.zeros(3, np.int32)], {"iou_threshold": 1.5},
     r"iou_threshold must be in \[0, 1\]"),
    ([np.zeros((3, 4)), np.zeros(3)], {"iou_threshold": 0.5}, "expected 3 inputs"),
    ([np.zeros((3, 4)), np.zeros(3), np.zeros(3, np.int32)], {}, "iou_threshold"),
])  # fmt: skip
def test_reference_refuses_bad_inputs(inputs: list[np.ndarray], fields: dict[str, Any],
                                      message: str) -> None:  # fmt: skip
    with pytest.raises(PluginReferenceError, match=f"BatchedNMS_Surgery: .*{message}"):
        reference("BatchedNMS_Surgery")(inputs, fields)
