"""NMS_TRT: SSD detection output (TensorRT's `detectionInference`).

Inputs are taken in `inputOrder` (loc, conf, priors). loc is [N, P, locClasses, 4] (locClasses 1
with `shareLocation`), conf [N, P, classes] (sigmoid applied with `confSigmoid`), priors
[N or 1, 2, P*4] (boxes then variances; the first set with `isBatchAgnostic`). Boxes are decoded by
`codeType` (1 corner, 2 center-size, 3 corner-size, 4 TF center-size with (y, x, h, w) deltas),
variances applied unless `varianceEncodedInTarget`. Per class except `backgroundLabelId`: scores
> `confidenceThreshold`, the `topK` best (stable), greedy NMS (Caffe overlap: IoU >
`nmsThreshold` suppresses, +1 pixel when not `isNormalized`). All survivors of an image sorted by
score; the first `keepTopK` are written as (image, label, score, xmin, ymin, xmax, ymax) with
coordinates clamped to [0, 1]; empty rows are (image, -1, 0, 0, 0, 0, 0). Output 1 counts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import (
    F32,
    PluginReferenceError,
    field,
    greedy_nms,
    reshape_to,
    stable_desc,
)  # fmt: skip

NAME = "NMS_TRT"


def decode(
    loc: np.ndarray, prior: np.ndarray, var: np.ndarray, code: int, in_target: bool
) -> np.ndarray:
    """Decode [P, K, 4] deltas on [P, 4] priors (xmin, ymin, xmax, ymax) with [P, 4] variances."""
    prior, var = prior[:, None, :], var[:, None, :]
    if in_target and code != 4:  # TensorRT's TF center-size code applies variances regardless
        var = np.ones_like(var)
    if code == 1:
        return prior + loc * var
    pw = prior[..., 2] - prior[..., 0]
    ph = prior[..., 3] - prior[..., 1]
    if code == 3:
        size = np.stack([pw, ph, pw, ph], axis=-1)
        return prior + loc * var * size
    if code not in (2, 4):
        raise PluginReferenceError(f"{NAME}: unknown codeType {code} (1..4)")
    pcx = (prior[..., 0] + prior[..., 2]) / F32(2)
    pcy = (prior[..., 1] + prior[..., 3]) / F32(2)
    if code == 2:
        dx, dy, dw, dh = (loc[..., i] for i in range(4))
    else:
        dy, dx, dh, dw = (loc[..., i] for i in range(4))
    cx = var[..., 0] * dx * pw + pcx
    cy = var[..., 1] * dy * ph + pcy
    w = np.exp(var[..., 2] * dw) * pw
    h = np.exp(var[..., 3] * dh) * ph
    return np.stack([cx - w / F32(2), cy - h / F32(2), cx + w / F32(2), cy + h / F32(2)], axis=-1)


def caffe_overlap(normalized: bool):
    """IoU of one (xmin, ymin, xmax, ymax) box with many, as TensorRT's jaccardOverlap."""
    plus = F32(0) if normalized else F32(1)

    def overlap(ref: np.ndarray, others: np.ndarray) -> np.ndarray:
        a = np.concatenate([np.minimum(ref[:2], ref[2:]), np.maximum(ref[:2], ref[2:])])
        b = np.concatenate([np.minimum(others[:, :2], others[:, 2:]),
                            np.maximum(others[:, :2], others[:, 2:])], axis=1)  # fmt: skip
        iw = np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]) + plus
        ih = np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]) + plus
        inter = iw * ih
        area_a = (a[2] - a[0] + plus) * (a[3] - a[1] + plus)
        area_b = (b[:, 2] - b[:, 0] + plus) * (b[:, 3] - b[:, 1] + plus)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (area_a + area_b - inter)
        return np.where((iw > 0) & (ih > 0), iou, F32(0))

    return overlap


def nms(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """loc, conf, priors -> detections [N, 1, keepTopK, 7], keep_count [N, 1, 1, 1] (int32)."""
    get = lambda key: field(NAME, fields, key)  # noqa: E731
    order = [int(v) for v in (fields.get("inputOrder") or [0, 1, 2])]
    if len(inputs) != 3 or sorted(order) != [0, 1, 2]:
        raise PluginReferenceError(f"{NAME}: needs 3 inputs and inputOrder a permutation of 0..2")
    loc, conf, priors = (np.asarray(inputs[i], dtype=F32) for i in order)
    share = bool(get("shareLocation"))
    classes, background = int(get("numClasses")), int(get("backgroundLabelId"))
    top_k, keep_top_k = int(get("topK")), int(get("keepTopK"))
    threshold, iou = float(get("confidenceThreshold")), float(get("nmsThreshold"))
    batch = loc.shape[0] if loc.ndim else 0
    loc_classes = 1 if share else classes
    count = loc.size // max(batch * loc_classes * 4, 1)
    loc = reshape_to(NAME, "loc", loc, (batch, count, loc_classes, 4))
    conf = reshape_to(NAME, "conf", conf, (batch, count, classes))
    if priors.size % (2 * count * 4):
        raise PluginReferenceError(
            f"{NAME}: priors have shape {priors.shape}; expected [*, 2, {count * 4}]"
        )
    priors = priors.reshape(-1, 2, count, 4)
    if int(fields.get("confSigmoid") or 0):
        conf = (1 / (1 + np.exp(-conf))).astype(F32)
    overlap = caffe_overlap(bool(int(fields.get("isNormalized", 1))))
    code = int(fields.get("codeType", 1))
    agnostic = bool(int(fields.get("isBatchAgnostic", 1)))
    detections = np.zeros((batch, 1, keep_top_k, 7), dtype=F32)
    counts = np.zeros((batch, 1, 1, 1), dtype=np.int32)
    for n in range(batch):
        prior = priors[0 if agnostic or priors.shape[0] == 1 else n]
        boxes = decode(loc[n], prior[0], prior[1], code, bool(get("varianceEncodedInTarget")))
        found: list[tuple[float, int, int]] = []  # (score, class, prior)
        for c in range(classes):
            if c == background:
                continue
            scores = conf[n, :, c]
            order_c = stable_desc(np.where(scores > threshold, scores, -np.inf))
            order_c = order_c[scores[order_c] > threshold][:top_k]
            class_boxes = boxes[:, 0 if share else c, :]
            kept = greedy_nms(class_boxes, order_c, overlap, iou)
            found.extend((float(scores[i]), c, i) for i in kept)
        ranked = sorted(range(len(found)), key=lambda k: -found[k][0])[:keep_top_k]
        detections[n, 0, :, 0] = n
        detections[n, 0, :, 1] = -1
        for row, k in enumerate(ranked):
            score, c, i = found[k]
            box = np.clip(boxes[i, 0 if share else c], 0, 1)
            detections[n, 0, row] = [n, c, score, *box]
        counts[n] = len(ranked)
    return [detections, counts]
