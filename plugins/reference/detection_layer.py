"""DetectionLayer_TRT: Mask R-CNN's final detections (TensorRT's `RefineBatchClassNMS`).

Per ROI: the best class over all classes (background included; first maximum; a best score
<= 0 gives no class); the ROI (normalised y1, x1, y2, x2) is refined by that class's deltas
(std-dev 0.1/0.1/0.2/0.2, clipped to [0, 1]). Candidates: class not background (0) and score
>= `score_threshold`. Greedy NMS per class (IoU > `iou_threshold`, no +1), then the `keep_topk`
best survivors by score as (y1, x1, y2, x2, class, score); empty rows and survivors scoring
<= 0.01 are (0, 0, 0, 0, -1, 0).

Side input `image_meta` (`implied_image_meta`): Matterport clips the refined boxes to the meta's
window, this plugin to [0, 1]; see `_mrcnn.implied_image_meta`. Its catalog entry declares the
padding rows (class -1 here, an all-zero row in Matterport's DetectionLayer) for validate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference import _mrcnn
from plugins.reference._common import (
    F32,
    PluginReferenceError,
    SideContext,
    SideValue,
    field,
    inputs_exactly,
    reshape_to,
)  # fmt: skip
from plugins.reference._mrcnn import apply_deltas, class_nms, top_by_score


def detection_layer(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """delta_bbox [N, R, C*4, 1, 1], score [N, R, C, 1, 1], roi [N, R, 4] -> [N, keep_topk, 6]."""
    name = "DetectionLayer_TRT"
    deltas, scores, rois = inputs_exactly(name, inputs, 3)
    classes = int(field(name, fields, "num_classes"))
    keep = int(field(name, fields, "keep_topk"))
    threshold = F32(field(name, fields, "score_threshold"))
    iou = float(field(name, fields, "iou_threshold"))
    if classes < 1 or keep < 1:
        raise PluginReferenceError(f"{name}: num_classes and keep_topk must be positive")
    batch = rois.shape[0] if rois.ndim else 0
    count = rois.size // max(batch * 4, 1)
    rois = reshape_to(name, "roi", rois, (batch, count, 4))
    scores = reshape_to(name, "score", scores, (batch, count, classes))
    deltas = reshape_to(name, "delta_bbox", deltas, (batch, count, classes, 4))
    out = np.zeros((batch, keep, 6), dtype=F32)
    out[:, :, 4] = -1
    rows = np.arange(count)
    for n in range(batch):
        labels = np.argmax(scores[n], axis=1)
        best = scores[n, rows, labels]
        labels = np.where(best > 0, labels, -1)
        best = np.where(best > 0, best, F32(0))
        boxes = apply_deltas(rois[n], deltas[n, rows, np.maximum(labels, 0)])
        candidates = (labels > 0) & (best >= threshold)
        survivors = class_nms(boxes, best, labels, candidates, iou)
        for row, index in enumerate(top_by_score(survivors, best, keep)):
            out[n, row] = [*boxes[index], labels[index], best[index]]
    return [out]


def implied_image_meta(ctx: SideContext) -> SideValue:
    """Matterport's image meta for the graph's input size (`_mrcnn.implied_image_meta`)."""
    return _mrcnn.implied_image_meta(ctx)
