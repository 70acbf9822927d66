"""Proposal: Faster R-CNN region proposals (TensorRT's `proposalInference_gpu`).

scores [N, A, H, W] (objectness; with 2A channels the first A are read, as TensorRT copies the
first A*H*W values), deltas [N, 4A, H, W] as (tx, ty, tw, th) per anchor. Anchor `a` = size
index * ratios + ratio index has `w = size * ratio`, `h = size / ratio`, centred at
`((x + 0.5) * stride, (y + 0.5) * stride)`. Decoded boxes are clipped to [0, W-1] x [0, H-1];
boxes with a side <= `roi_min_size` get score -inf. Per image: stable descending sort over
(anchor, y, x), the `pre_nms_top_n` best, greedy NMS with the +1-pixel IoU (> threshold
suppresses) until `post_nms_top_n` are kept, written as (y1/(H-1), x1/(W-1), y2/(H-1), x2/(W-1))
with H, W the input size. Rows TensorRT leaves unwritten are zeros here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import (
    F32,
    PluginReferenceError,
    field,
    greedy_nms,
    inputs_exactly,
    need_rank,
    stable_desc,
)  # fmt: skip

NAME = "Proposal"


def iou_plus_one(ref: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one (x1, y1, x2, y2) pixel box with many, sides counted +1 (Faster R-CNN)."""
    w = np.maximum(np.minimum(ref[2], others[:, 2]) - np.maximum(ref[0], others[:, 0]) + 1, 0)
    h = np.maximum(np.minimum(ref[3], others[:, 3]) - np.maximum(ref[1], others[:, 1]) + 1, 0)
    inter = w * h
    area_ref = (ref[2] - ref[0] + 1) * (ref[3] - ref[1] + 1)
    area = (others[:, 2] - others[:, 0] + 1) * (others[:, 3] - others[:, 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (inter / (area_ref + area - inter)).astype(F32)


def decode(deltas: np.ndarray, fields: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [A, H, W, 4] (x1, y1, x2, y2) and the too-small mask [A, H, W] of one image."""
    sizes = np.asarray(field(NAME, fields, "anchor_sizes"), dtype=F32).reshape(-1)
    ratios = np.asarray(field(NAME, fields, "anchor_ratios"), dtype=F32).reshape(-1)
    stride = F32(field(NAME, fields, "rpn_stride"))
    in_h, in_w = int(field(NAME, fields, "input_height")), int(field(NAME, fields, "input_width"))
    anchors = len(sizes) * len(ratios)
    _, height, width = deltas.shape
    t = deltas.reshape(anchors, 4, height, width)
    aw = (sizes[:, None] * ratios[None, :]).reshape(-1, 1, 1)
    ah = (sizes[:, None] / ratios[None, :]).reshape(-1, 1, 1)
    acx = ((np.arange(width, dtype=F32) + F32(0.5)) * stride)[None, None, :]
    acy = ((np.arange(height, dtype=F32) + F32(0.5)) * stride)[None, :, None]
    cx, cy = acx + aw * t[:, 0], acy + ah * t[:, 1]
    w, h = np.exp(t[:, 2]) * aw, np.exp(t[:, 3]) * ah
    x1, y1 = cx - w / F32(2), cy - h / F32(2)
    x2, y2 = x1 + w, y1 + h
    x1, x2 = (np.clip(v, 0, in_w - 1) for v in (x1, x2))
    y1, y2 = (np.clip(v, 0, in_h - 1) for v in (y1, y2))
    small = (x2 - x1 <= F32(field(NAME, fields, "roi_min_size"))) | (
        y2 - y1 <= F32(field(NAME, fields, "roi_min_size"))
    )
    return np.stack([x1, y1, x2, y2], axis=-1).astype(F32), small


def proposal(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """scores [N, A, H, W], deltas [N, 4A, H, W] -> rois [N, post_nms_top_n, 4] (normalised)."""
    scores, deltas = inputs_exactly(NAME, inputs, 2)
    need_rank(NAME, "scores", scores, (4,))
    need_rank(NAME, "deltas", deltas, (4,))
    anchors = len(field(NAME, fields, "anchor_sizes")) * len(field(NAME, fields, "anchor_ratios"))
    batch, channels, height, width = deltas.shape
    if channels != 4 * anchors or scores.shape[0] != batch or scores.shape[2:] != (height, width):
        raise PluginReferenceError(
            f"{NAME}: scores {scores.shape} and deltas {deltas.shape} do not fit {anchors} anchors"
        )
    if scores.shape[1] not in (anchors, 2 * anchors):
        raise PluginReferenceError(
            f"{NAME}: scores have {scores.shape[1]} channels; expected {anchors}"
        )
    pre, post = (
        int(field(NAME, fields, "pre_nms_top_n")),
        int(field(NAME, fields, "post_nms_top_n")),
    )
    iou = float(field(NAME, fields, "nms_iou_threshold"))
    in_h, in_w = int(field(NAME, fields, "input_height")), int(field(NAME, fields, "input_width"))
    out = np.zeros((batch, post, 4), dtype=F32)
    for n in range(batch):
        boxes, small = decode(deltas[n], fields)
        fg = np.where(small, -np.inf, scores[n, :anchors]).reshape(-1)
        boxes = boxes.reshape(-1, 4)
        order = stable_desc(fg)[:pre]
        for row, i in enumerate(greedy_nms(boxes, order, iou_plus_one, iou, limit=post)):
            x1, y1, x2, y2 = boxes[i]
            out[n, row] = [
                y1 / F32(in_h - 1),
                x1 / F32(in_w - 1),
                y2 / F32(in_h - 1),
                x2 / F32(in_w - 1),
            ]
    return [out]
