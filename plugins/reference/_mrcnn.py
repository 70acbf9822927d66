"""Mask R-CNN helpers shared by ProposalLayer_TRT and DetectionLayer_TRT (TensorRT semantics)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from plugins.reference._common import (
    F32,
    PluginReferenceError,
    SideContext,
    SideValue,
    greedy_nms,
    iou_corners,
    stable_desc,
)  # fmt: skip

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
    """TensorRT's ProposalLayer anchors for an image [C, H, W]: [A, 4] normalised y1, x1, y2, x2.

    Level-major (scales 32..512 on strides 4..64), then row, column, ratio (0.5, 1, 2): the order
    and values of Matterport's `generate_pyramid_anchors` + `norm_boxes` (computed in float32).
    """
    cy, cx = F32(height - 1), F32(width - 1)
    roots = np.sqrt(np.asarray(ANCHOR_RATIOS, dtype=F32))
    levels = []
    for scale, stride in zip(ANCHOR_SCALES, BACKBONE_STRIDES, strict=True):
        h, w = F32(scale) / roots, F32(scale) * roots  # one per ratio
        y = np.arange(0, height, stride, dtype=F32)[:, None, None]
        x = np.arange(0, width, stride, dtype=F32)[None, :, None]
        corners = ((y - h / 2) / cy, (x - w / 2) / cx, (y + h / 2 - 1) / cy, (x + w / 2 - 1) / cx)
        levels.append(np.stack(np.broadcast_arrays(*corners), axis=-1).reshape(-1, 4))
    return np.concatenate(levels).astype(F32)


# Matterport's image meta (`compose_image_meta`) before the active class ids: image id, original
# image shape (H, W, C), molded image shape, window (y1, x1, y2, x2), scale.
META_HEAD = 12


def image_meta(height: float, width: float, channels: int, length: int) -> np.ndarray:
    """Matterport's meta of an unresized, unpadded H x W x C image: [length] float32.

    Image id 0, original shape = molded shape = (H, W, C), window (0, 0, H, W), scale 1, then
    active class ids 0; cut or zero-padded to `length` (12 + NUM_CLASSES in a real graph).
    """
    head = [0.0, height, width, channels, height, width, channels, 0.0, 0.0, height, width, 1.0]
    out = np.zeros(length, dtype=F32)
    out[: min(length, META_HEAD)] = head[:length]
    return out


def _agreeing(what: str, values: Mapping[str, tuple[float, ...]]) -> tuple[float, ...]:
    """The one value all nodes give (node -> value), or an error naming two that differ."""
    distinct = list(dict.fromkeys(values.values()))
    if len(distinct) > 1:
        a = next(n for n, v in values.items() if v == distinct[0])
        b = next(n for n, v in values.items() if v == distinct[1])
        raise PluginReferenceError(
            f"{what}: {a} gives {_show(distinct[0])}, {b} gives {_show(distinct[1])}"
        )
    return distinct[0]


def _show(values: tuple[float, ...]) -> str:
    """`[3, 128, 128]`, whole numbers without a point."""
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def meta_image_size(ctx: SideContext) -> tuple[float, float, int, str]:
    """(H, W, C) of the image a Matterport meta must describe for this graph's plugins, and
    where they came from.

    The network input is ProposalLayer_TRT's `image_size` [C, H, W] (its anchors depend on it),
    so that is used where the graph has one. Without one: the image area that
    PyramidROIAlign_TRT's level thresholds stand for (Matterport's level choice reads only
    H * W; see `pyramid_roi_align.matterport_area`), as H = its image_size[0], W = area / H, C 3.
    PyramidROIAlign_TRT's own image_size is not used directly: rules set it to [H, 2 W] to
    match Matterport's level thresholds.
    """
    proposals = ctx.peers("ProposalLayer_TRT")
    if proposals:
        sizes = {p.name: tuple(float(v) for v in p.fields["image_size"]) for p in proposals}
        c, h, w = _agreeing("ProposalLayer_TRT nodes disagree on image_size", sizes)
        where = ", ".join(sizes)
        return h, w, int(c), f"image_size {_show((c, h, w))} of ProposalLayer_TRT at {where}"
    aligns = ctx.peers("PyramidROIAlign_TRT")
    if aligns:
        from plugins.reference.pyramid_roi_align import matterport_area

        areas = {p.name: matterport_area(p.fields) for p in aligns}
        height, width = _agreeing(
            "PyramidROIAlign_TRT nodes pick levels for different image areas", areas
        )
        where = ", ".join(areas)
        how = f"the image area PyramidROIAlign_TRT at {where} picks levels for"
        return height, width, 3, how
    raise PluginReferenceError(
        f"{ctx.op} at {ctx.node}: cannot tell the image size for image_meta: the graph has no "
        "ProposalLayer_TRT (image_size) nor PyramidROIAlign_TRT"
    )


def implied_image_meta(ctx: SideContext) -> SideValue:
    """Matterport's meta of an unpadded image of the graph's input size (`meta_image_size`):
    [N, L] (N = dim 0, else the batch), or [L]; L = the tensor's last dim, else 12 +
    num_classes of the graph's DetectionLayer_TRT."""
    height, width, channels, source = meta_image_size(ctx)
    rank = 2 if ctx.shape is None else len(ctx.shape)
    if rank not in (1, 2):
        raise PluginReferenceError(
            f"{ctx.op} at {ctx.node}: side input 'image_meta' has rank {rank}; expected [N, L]"
        )
    length = ctx.shape[-1] if ctx.shape is not None else None
    if length is None:
        counts = {
            p.name: (float(p.fields["num_classes"]),) for p in ctx.peers("DetectionLayer_TRT")
        }
        if not counts:
            raise PluginReferenceError(
                f"{ctx.op} at {ctx.node}: the length of image_meta is unknown (12 + NUM_CLASSES); "
                "give its shape with --shape"
            )
        length = META_HEAD + int(_agreeing("DetectionLayer_TRT nodes disagree on num_classes",
                                           counts)[0])  # fmt: skip
    meta = image_meta(height, width, channels, length)
    how = (
        f"Matterport's image meta of an unpadded {height:g}x{width:g}x{channels} image, window "
        f"the whole image (size from {source})"
    )
    if rank == 1:
        return SideValue(meta, how)
    batch = ctx.shape[0] if ctx.shape is not None and ctx.shape[0] is not None else ctx.batch
    return SideValue(np.ascontiguousarray(np.broadcast_to(meta, (batch, length))), how)


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
