"""ProposalLayer_TRT: Mask R-CNN region proposals (TensorRT's `proposalRefineBatchClassNMS`).

Anchors come from `image_size` as TensorRT generates them (scales 32..512 on strides 4..64,
ratios 0.5/1/2, normalised by H-1, W-1). Per image: foreground score = scores[..., 1]; deltas
refine the anchors (std-dev 0.1/0.1/0.2/0.2, clipped to [0, 1]); the `prenms_topk` best
(stable descending sort) go through greedy NMS (IoU > `iou_threshold` suppresses, no +1); the
`keep_topk` best survivors are written as (y1, x1, y2, x2); rows beyond them, and survivors with
score <= 0.01, are zeros.

Side input `anchors` (`implied_anchors`): a Matterport graph reads its anchors from the
placeholder `input_anchors`; the plugin's equivalent is those same generated anchors, per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.reference._common import (
    F32,
    PluginReferenceError,
    SideContext,
    SideValue,
    field,
    inputs_exactly,
    reshape_to,
    stable_desc,
)  # fmt: skip
from plugins.reference._mrcnn import apply_deltas, class_nms, pyramid_anchors, top_by_score


def proposal_layer(inputs: list[np.ndarray], fields: dict[str, Any]) -> list[np.ndarray]:
    """scores [N, A, 2, 1, 1], deltas [N, A, 4, 1, 1] -> rois [N, keep_topk, 4]."""
    name = "ProposalLayer_TRT"
    scores, deltas = inputs_exactly(name, inputs, 2)
    pre = int(field(name, fields, "prenms_topk"))
    keep = int(field(name, fields, "keep_topk"))
    iou = float(field(name, fields, "iou_threshold"))
    image = [int(v) for v in field(name, fields, "image_size")]
    anchors = pyramid_anchors(*image)
    batch = scores.shape[0] if scores.ndim else 0
    count = len(anchors)
    scores = reshape_to(name, "scores", scores, (batch, count, 2))
    deltas = reshape_to(name, "deltas", deltas, (batch, count, 4))
    if pre < 1 or keep < 1:
        raise PluginReferenceError(f"{name}: prenms_topk and keep_topk must be positive")
    out = np.zeros((batch, keep, 4), dtype=F32)
    for n in range(batch):
        fg = scores[n, :, 1]
        boxes = apply_deltas(anchors, deltas[n])
        chosen = stable_desc(fg)[: min(pre, count)]
        fg, boxes = fg[chosen], boxes[chosen]
        labels = np.zeros(len(chosen), dtype=np.int64)
        survivors = class_nms(boxes, fg, labels, fg >= 0, iou)
        for row, index in enumerate(top_by_score(survivors, fg, keep)):
            out[n, row] = boxes[index]
    return [out]


def implied_anchors(ctx: SideContext) -> SideValue:
    """The anchors the plugin generates from `image_size`, as the tensor it replaces holds them:
    [N, A, 4] (the same anchors for every image; N = dim 0, else the batch), or [A, 4]."""
    name = "ProposalLayer_TRT"
    image = [int(v) for v in field(name, ctx.fields, "image_size")]
    anchors = pyramid_anchors(*image)
    rank = 3 if ctx.shape is None else len(ctx.shape)
    if rank not in (2, 3):
        raise PluginReferenceError(
            f"{name} at {ctx.node}: side input 'anchors' has rank {rank}; expected [N, A, 4]"
        )
    how = f"the {len(anchors)} anchors it generates for image_size {image}"
    if rank == 2:
        return SideValue(anchors, how)
    batch = ctx.shape[0] if ctx.shape is not None and ctx.shape[0] is not None else ctx.batch
    return SideValue(np.ascontiguousarray(np.broadcast_to(anchors, (batch, *anchors.shape))), how)
