"""BatchedNMS_Surgery (surgery's own plugin): torchvision's `batched_nms` as its ONNX export runs.

torchvision's exported `batched_nms` moves every box by `class * (max coordinate + 1)` (the
maximum over all of `boxes`, in float32), then runs ONNX NonMaxSuppression on the moved boxes
with no score threshold and no output limit. That graph is what `surgery validate` runs with
onnxruntime, so this reference reproduces onnxruntime's NonMaxSuppression on the moved boxes:
each box's corners are sorted into (min, max) per axis; a later box is suppressed by a kept one
when both intersection extents are positive, the intersection area is positive, and
intersection / (area + area - intersection) > `iou_threshold` (strictly), all in float32. Boxes
are visited by descending score, equal scores by lower index first. NaN scores or coordinates
are outside the contract (onnxruntime's order is then undefined).

Outputs: `keep` [N] int32, the kept indices best first, then -1; `count` [1] int32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import F32, PluginReferenceError, field, stable_desc

NAME = "BatchedNMS_Surgery"


def class_indices(classes: np.ndarray) -> np.ndarray:
    """`classes` as int64, refusing values that are not whole numbers (a float tensor of class
    ids is accepted when every value is integral, as the shape tests feed float32)."""
    if classes.dtype.kind in "iu":
        return classes.astype(np.int64)
    if classes.dtype.kind != "f" or not np.all(np.isfinite(classes)) \
            or not np.array_equal(classes, np.round(classes)):  # fmt: skip
        raise PluginReferenceError(
            f"{NAME}: input 'classes' must hold integer class ids (int32), got {classes.dtype} "
            "values that are not all whole numbers"
        )
    return classes.astype(np.int64)


def offset_boxes(boxes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The boxes NonMaxSuppression sees in the export: `boxes + float32(class) * (max + 1)`, every
    step in float32 (ReduceMax over all of `boxes`, Add, Cast, Mul, Add)."""
    if boxes.shape[0] == 0:
        return boxes.astype(F32)
    top = np.max(boxes).astype(F32) + F32(1)
    offsets = classes.astype(F32) * top
    return (boxes + offsets[:, None]).astype(F32)


def corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low corners [N, 2], high corners [N, 2], areas [N]) in float32, as onnxruntime normalises
    a box before NMS (its min/max per axis, area = width * height)."""
    low = np.minimum(boxes[:, :2], boxes[:, 2:])
    high = np.maximum(boxes[:, :2], boxes[:, 2:])
    size = high - low
    return low, high, (size[:, 0] * size[:, 1]).astype(F32)


def suppresses(low: np.ndarray, high: np.ndarray, area: np.ndarray, kept: int,
               others: np.ndarray, threshold: np.float32) -> np.ndarray:  # fmt: skip
    """Whether kept box `kept` suppresses each box of `others` (indices), onnxruntime's test:
    positive intersection extents and area, then IoU > threshold."""
    lo = np.maximum(low[kept], low[others])
    hi = np.minimum(high[kept], high[others])
    extent = hi - lo
    inter = (extent[:, 0] * extent[:, 1]).astype(F32)
    union = (area[others] + area[kept]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return (extent > 0).all(axis=1) & (inter > 0) & (iou > threshold)


def greedy(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Indices kept by greedy NMS over `boxes` (already offset), best score first."""
    if len(boxes) == 0:
        return []
    low, high, area = corners(boxes)
    thr = F32(threshold)
    alive = stable_desc(scores)
    kept: list[int] = []
    while len(alive):
        best, rest = int(alive[0]), alive[1:]
        kept.append(best)
        # onnxruntime's first early exit, as a cheap filter: a positive x extent
        near = (low[rest, 0] < high[best, 0]) & (high[rest, 0] > low[best, 0])
        hit = np.flatnonzero(near)
        dead = hit[suppresses(low, high, area, best, rest[hit], thr)]
        alive = np.delete(rest, dead)
    return kept


def batched_nms(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """boxes [N, 4], scores [N], classes [N] -> keep [N] int32 (kept indices, then -1), count
    [1] int32."""
    if len(inputs) != 3:
        raise PluginReferenceError(f"{NAME}: expected 3 inputs (boxes, scores, classes), got "
                                   f"{len(inputs)}")  # fmt: skip
    boxes = np.asarray(inputs[0], dtype=F32)
    scores = np.asarray(inputs[1], dtype=F32)
    classes = np.asarray(inputs[2])
    n = boxes.shape[0] if boxes.ndim else -1
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise PluginReferenceError(f"{NAME}: input 'boxes' has shape {boxes.shape}; expected "
                                   "[N, 4] (x1, y1, x2, y2)")  # fmt: skip
    for role, array in (("scores", scores), ("classes", classes)):
        if array.shape != (n,):
            raise PluginReferenceError(f"{NAME}: input '{role}' has shape {array.shape}; "
                                       f"expected [{n}] (one per box)")  # fmt: skip
    threshold = float(field(NAME, fields, "iou_threshold"))
    if not 0.0 <= threshold <= 1.0:
        raise PluginReferenceError(f"{NAME}: iou_threshold must be in [0, 1] (onnxruntime "
                                   f"refuses others), got {threshold}")  # fmt: skip
    kept = greedy(offset_boxes(boxes, class_indices(classes)), scores, threshold)
    keep = np.full((n,), -1, dtype=np.int32)
    keep[: len(kept)] = kept
    return [keep, np.asarray([len(kept)], dtype=np.int32)]
