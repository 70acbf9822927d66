"""Mask R-CNN helpers shared by ProposalLayer_TRT and DetectionLayer_TRT (TensorRT semantics)."""

from __future__ import annotations

import numpy as np

from plugins.reference._common import F32, greedy_nms, iou_corners, stable_desc

# TensorRT's MaskRCNNConfig: RPN/BBOX_STD_DEV, anchor scales, ratios and backbone strides.
STD_DEV = np.array([0.1, 0.1, 0.2, 0.2], dtype=F32)
ANCHOR_SCALES = (32.0, 64.0, 128.0, 256.0, 512.0)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
BACKBONE_STRIDES = (4, 8, 16, 32, 64)
MIN_VALID_SCORE = 0.01  # TopKGather writes zeros for kept boxes scoring at most this


def apply_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Refine normalised (y1, x1, y2, x2) boxes by STD_DEV-scaled deltas; clip to [0, 1]."""
    boxes = boxes.astype(F32)
    d = deltas.astype(F32) * STD_DEV
    cy = (boxes[..., 0] + boxes[..., 2]) / F32(2)
    cx = (boxes[..., 1] + boxes[..., 3]) / F32(2)
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    cy = cy + d[..., 0] * h
    cx = cx + d[..., 1] * w
    h = h * np.exp(d[..., 2])
    w = w * np.exp(d[..., 3])
    y1 = cy - F32(0.5) * h
    x1 = cx - F32(0.5) * w
    out = np.stack([y1, x1, y1 + h, x1 + w], axis=-1)
    return np.clip(out, 0, 1).astype(F32)


def pyramid_anchors(channels: int, height: int, width: int) -> np.ndarray:
    """TensorRT's ProposalLayer anchors for an image [C, H, W]: [A, 4] normalised y1, x1, y2, x2."""
    cy, cx = F32(height - 1), F32(width - 1)
    rows = []
    for scale, stride in zip(ANCHOR_SCALES, BACKBONE_STRIDES, strict=True):
        for y in range(0, height, stride):
            for x in range(0, width, stride):
                for ratio in ANCHOR_RATIOS:
                    root = np.sqrt(F32(ratio))
                    h, w = F32(scale) / root, F32(scale) * root
                    rows.append([(y - h / 2) / cy, (x - w / 2) / cx,
                                 (y + h / 2 - 1) / cy, (x + w / 2 - 1) / cx])  # fmt: skip
    return np.asarray(rows, dtype=F32)


def class_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, keep: np.ndarray, iou: float
) -> np.ndarray:
    """Indices that survive per-class greedy NMS among `keep`, in class then score order."""
    kept: list[int] = []
    candidates = np.flatnonzero(keep)
    for label in np.unique(labels[candidates]):
        members = candidates[labels[candidates] == label]
        order = members[stable_desc(scores[members])]
        kept.extend(greedy_nms(boxes, order, iou_corners, iou))
    return np.asarray(kept, dtype=np.int64)


def top_by_score(kept: np.ndarray, scores: np.ndarray, count: int) -> list[int]:
    """The `count` best of `kept` by score (stable), dropping those scoring <= MIN_VALID_SCORE."""
    if not len(kept):
        return []
    ranked = kept[stable_desc(scores[kept])][:count]
    return [int(i) for i in ranked if scores[i] > MIN_VALID_SCORE]
