"""Each plugin reference against an independent formulation (TF ops, or a loop written here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plugins.registry import REFERENCES, PluginReferenceError, reference
from surgery.ops.plugin_schema import load_catalog

tf = pytest.importorskip("tensorflow")


def run(name: str, inputs: list[np.ndarray], **fields: object) -> list[np.ndarray]:
    """Run plugin `name`'s reference through the registry (schema defaults applied)."""
    return reference(name)(inputs, fields)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_every_catalog_plugin_has_a_reference() -> None:
    assert sorted(REFERENCES) == sorted(s.name for s in load_catalog())


def test_lrelu_matches_tf() -> None:
    x = rng().standard_normal((2, 3, 5, 7)).astype(np.float32)
    (y,) = run("LReLU_TRT", [x], negSlope=0.1)
    np.testing.assert_allclose(y, tf.nn.leaky_relu(x, alpha=0.1).numpy(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("scale", [2.0, 3.0])
def test_resize_nearest_matches_tf(scale: float) -> None:
    x = rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    (y,) = run("ResizeNearest_TRT", [x], scale=scale)
    size = (int(4 * scale), int(5 * scale))
    want = tf.image.resize(x.transpose(0, 2, 3, 1), size, method="nearest").numpy()
    np.testing.assert_array_equal(y, want.transpose(0, 3, 1, 2))


def test_l2norm_matches_tf() -> None:
    x = rng(2).standard_normal((3, 4, 6)).astype(np.float32)
    for axis in (2, -2, 0):
        (y,) = run("L2Norm_Surgery", [x], axis=axis)
        want = tf.math.l2_normalize(x, axis=axis).numpy()
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_normalize_per_position_matches_tf() -> None:
    x = rng(3).standard_normal((2, 4, 3, 5)).astype(np.float32)
    w = rng(4).uniform(1, 20, 4).astype(np.float32)
    fields = {"acrossSpatial": 0, "nbWeights": 1, "eps": 1e-10}
    (y,) = run("Normalize_TRT", [x], weights=w.tolist(), channelShared=0, **fields)
    want = tf.math.l2_normalize(x, axis=1).numpy() * w.reshape(1, 4, 1, 1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    (y,) = run("Normalize_TRT", [x], weights=[2.5], channelShared=1, **fields)
    np.testing.assert_allclose(y, tf.math.l2_normalize(x, axis=1).numpy() * 2.5, rtol=1e-5)


def test_normalize_across_spatial_loop() -> None:
    x = rng(5).standard_normal((2, 3, 2, 2)).astype(np.float32)
    w = [2.0, 4.0, 8.0]
    (shared,) = run("Normalize_TRT", [x], weights=[3.0], acrossSpatial=1, channelShared=1,
                    nbWeights=1, eps=1e-10)  # fmt: skip
    (per_channel,) = run("Normalize_TRT", [x], weights=w, acrossSpatial=1, channelShared=0,
                         nbWeights=1, eps=1e-10)  # fmt: skip
    for n in range(2):
        total = sum(float(v) ** 2 for v in x[n].ravel())
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    unit = x[n, c, i, j] / math.sqrt(total + 1e-10)
                    assert shared[n, c, i, j] == pytest.approx(unit * 3.0, rel=1e-5)
                    # TensorRT's per-channel across-spatial kernel divides by the weight
                    assert per_channel[n, c, i, j] == pytest.approx(unit / w[c], rel=1e-5)


def test_special_slice_loop() -> None:
    det = rng(6).standard_normal((2, 5, 6)).astype(np.float32)
    (boxes,) = run("SpecialSlice_TRT", [det])
    assert boxes.shape == (2, 5, 4)
    for n in range(2):
        for k in range(5):
            assert list(boxes[n, k]) == [det[n, k, 0], det[n, k, 1], det[n, k, 2], det[n, k, 3]]


@pytest.mark.parametrize("axis", [1, 2, 3])
def test_flatten_concat_matches_tf(axis: int) -> None:
    a = rng(7).standard_normal((2, 2, 3, 3)).astype(np.float32)
    b = rng(8).standard_normal((2, 5, 3, 3)).astype(np.float32)
    (y,) = run("FlattenConcat_TRT", [a, b], axis=axis, ignoreBatch=0)
    joined = tf.concat([tf.reshape(a, (2, -1)), tf.reshape(b, (2, -1))], axis=1).numpy()
    shape = [2, 1, 1, 1]
    shape[axis] = 63
    np.testing.assert_array_equal(y, joined.reshape(shape))


def test_grid_anchor_loop() -> None:
    fields = {"numLayers": 3, "minSize": 0.2, "maxSize": 0.9, "variance": [0.1, 0.1, 0.2, 0.2],
              "aspectRatios": [1.0, 2.0, 0.5, 3.0], "featureMapShapes": [4, 2, 1]}  # fmt: skip
    outputs = run("GridAnchor_TRT", [], **fields)
    scales = [0.2, 0.55, 0.9, 1.0]
    for layer, (side, out) in enumerate(zip([4, 2, 1], outputs, strict=True)):
        if layer == 0:
            specs = [(1.0, 0.1), (2.0, 0.2), (0.5, 0.2)]
        else:
            specs = [(r, scales[layer]) for r in (1.0, 2.0, 0.5, 3.0)]
            specs.append((1.0, math.sqrt(scales[layer] * scales[layer + 1])))
        want = []
        for y in range(side):
            for x in range(side):
                cx, cy = (x + 0.5) / side, (y + 0.5) / side
                for ratio, s in specs:
                    w, h = s * math.sqrt(ratio), s / math.sqrt(ratio)
                    want.extend([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        assert out.shape == (2, len(want), 1)
        np.testing.assert_allclose(out[0, :, 0], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[1, :, 0], [0.1, 0.1, 0.2, 0.2] * (len(want) // 4))


def test_crop_and_resize_matches_tf() -> None:
    r = rng(9)
    image = r.standard_normal((2, 3, 9, 11)).astype(np.float32)
    lo = r.uniform(-0.2, 0.6, (2, 4, 2))
    boxes = np.concatenate([lo, lo + r.uniform(0.1, 0.6, (2, 4, 2))], axis=-1).astype(np.float32)
    for crop in [(5, 4), (1, 3)]:
        (y,) = run("CropAndResize", [image, boxes[..., None]], crop_height=crop[0],
                   crop_width=crop[1])  # fmt: skip
        want = tf.image.crop_and_resize(image.transpose(0, 2, 3, 1), boxes.reshape(-1, 4),
                                        np.repeat([0, 1], 4), crop).numpy()  # fmt: skip
        want = want.reshape(2, 4, *crop, 3).transpose(0, 1, 4, 2, 3)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def _fpn(r: np.random.Generator) -> list[np.ndarray]:
    return [r.standard_normal((1, 2, s, s)).astype(np.float32) for s in (32, 16, 8, 4)]


def test_pyramid_roi_align_legacy_is_crop_and_resize_on_the_chosen_level() -> None:
    r = rng(10)
    maps = _fpn(r)
    sides = np.array([0.05, 0.12, 0.25, 0.5, 0.8])  # spans P2..P5 under the legacy thresholds
    y1 = r.uniform(0, 0.15, 5)
    x1 = r.uniform(0, 0.15, 5)
    rois = np.stack([y1, x1, y1 + sides, x1 + sides], axis=-1)[None].astype(np.float32)
    (y,) = run("PyramidROIAlign_TRT", [rois, *maps], pooled_size=7, legacy=1)
    first = 224 * 224 * 2.0 / (1024 * 1024) / 16
    for k in range(5):
        area = sides[k] ** 2
        level = sum(area > first * 4**i for i in range(3))
        want = tf.image.crop_and_resize(maps[level].transpose(0, 2, 3, 1), rois[0, k : k + 1],
                                        [0], (7, 7)).numpy()  # fmt: skip
        np.testing.assert_allclose(y[0, k], want[0].transpose(2, 0, 1), rtol=1e-4, atol=1e-5)
    assert len({sum(s * s > first * 4**i for i in range(3)) for s in sides}) == 4


def _roi_align_loop(fmap: np.ndarray, box: list[float], pooled: int, ratio: int) -> np.ndarray:
    """Half-pixel ROI Align of one [C, h, w] map, written out point by point."""
    c, h, w = fmap.shape
    y1, x1, y2, x2 = box[0] * h - 0.5, box[1] * w - 0.5, box[2] * h - 0.5, box[3] * w - 0.5
    bh, bw = (y2 - y1) / pooled, (x2 - x1) / pooled
    out = np.zeros((c, pooled, pooled))
    for i in range(pooled):
        for j in range(pooled):
            acc = np.zeros(c)
            for a in range(ratio):
                for b in range(ratio):
                    y = min(max(y1 + bh * (i + (a + 0.5) / ratio), 0.0), h - 1.0)
                    x = min(max(x1 + bw * (j + (b + 0.5) / ratio), 0.0), w - 1.0)
                    y0, x0 = math.floor(y), math.floor(x)
                    y1_, x1_ = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
                    fy, fx = y - y0, x - x0
                    top = fmap[:, y0, x0] * (1 - fx) + fmap[:, y0, x1_] * fx
                    bottom = fmap[:, y1_, x0] * (1 - fx) + fmap[:, y1_, x1_] * fx
                    acc += top * (1 - fy) + bottom * fy
            out[:, i, j] = acc / ratio**2
    return out


def test_pyramid_roi_align_half_pixel_loop() -> None:
    r = rng(11)
    maps = _fpn(r)
    # absolute (x1, y1, x2, y2) pixels of a 128x128 image, fpn_scale 64
    boxes = [[10, 20, 30, 34], [5, 5, 100, 90], [40, 60, 60, 70], [0, 0, 127, 127]]
    rois = np.asarray(boxes, dtype=np.float32)[None]
    fields = {"pooled_size": 3, "image_size": [128, 128], "fpn_scale": 64, "sampling_ratio": 2}
    (y,) = run("PyramidROIAlign_TRT", [rois, *maps], **fields)
    first = (64 * 64 / (128 * 128)) / 4
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        box = [y1 / 128, x1 / 128, y2 / 128, x2 / 128]
        area = (box[2] - box[0]) * (box[3] - box[1])
        level = sum(area > first * 4**i for i in range(3))
        want = _roi_align_loop(maps[level][0], box, 3, 2)
        np.testing.assert_allclose(y[0, k], want, rtol=1e-4, atol=1e-5)


def _tf_nms(boxes: np.ndarray, scores: np.ndarray, limit: int, iou: float) -> np.ndarray:
    return tf.image.non_max_suppression(boxes, scores, limit, iou_threshold=iou).numpy()


def _mrcnn_decode(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Box refinement written out per box (Mask R-CNN's apply_box_deltas + clip)."""
    out = np.zeros_like(boxes, dtype=np.float64)
    for i, ((y1, x1, y2, x2), (dy, dx, dh, dw)) in enumerate(zip(boxes, deltas, strict=True)):
        h, w = y2 - y1, x2 - x1
        cy, cx = y1 + 0.5 * h + dy * 0.1 * h, x1 + 0.5 * w + dx * 0.1 * w
        h, w = h * math.exp(dh * 0.2), w * math.exp(dw * 0.2)
        out[i] = [min(max(v, 0.0), 1.0) for v in (cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2)]
    return out


def test_proposal_layer_with_tf_nms() -> None:
    r = rng(12)
    image = [3, 64, 64]
    anchors = []
    for scale, stride in zip([32, 64, 128, 256, 512], [4, 8, 16, 32, 64], strict=True):
        for y in range(0, 64, stride):
            for x in range(0, 64, stride):
                for ratio in (0.5, 1.0, 2.0):
                    h, w = scale / math.sqrt(ratio), scale * math.sqrt(ratio)
                    anchors.append([(y - h / 2) / 63, (x - w / 2) / 63,
                                    (y + h / 2 - 1) / 63, (x + w / 2 - 1) / 63])  # fmt: skip
    count = len(anchors)
    fg = r.uniform(0.05, 1.0, count).astype(np.float32)
    scores = np.stack([1 - fg, fg], axis=-1)[None, :, :, None, None]
    deltas = r.normal(0, 1, (1, count, 4, 1, 1)).astype(np.float32)
    (rois,) = run("ProposalLayer_TRT", [scores, deltas], prenms_topk=300, keep_topk=250,
                  iou_threshold=0.5, image_size=image)  # fmt: skip
    decoded = _mrcnn_decode(np.asarray(anchors), deltas[0, :, :, 0, 0])
    top = np.argsort(-fg, kind="stable")[:300]
    kept = top[_tf_nms(decoded[top].astype(np.float32), fg[top], 250, 0.5)]
    assert rois.shape == (1, 250, 4)
    assert 10 < len(kept) < 250
    np.testing.assert_allclose(rois[0, : len(kept)], decoded[kept], rtol=1e-4, atol=1e-5)
    assert not rois[0, len(kept) :].any()


def test_detection_layer_with_tf_nms() -> None:
    r = rng(13)
    rois, classes = 40, 4
    lo = r.uniform(0, 0.7, (rois, 2))
    roi = np.concatenate([lo, lo + r.uniform(0.05, 0.3, (rois, 2))], axis=1).astype(np.float32)
    logits = r.normal(0, 2, (rois, classes))
    score = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    delta = r.normal(0, 1, (rois, classes, 4)).astype(np.float32)
    inputs = [delta.reshape(1, rois, classes * 4, 1, 1), score.reshape(1, rois, classes, 1, 1),
              roi[None]]  # fmt: skip
    (det,) = run("DetectionLayer_TRT", inputs, num_classes=classes, keep_topk=10,
                 score_threshold=0.3, iou_threshold=0.3)  # fmt: skip
    label = score.argmax(1)
    best = score.max(1)
    boxes = _mrcnn_decode(roi, delta[np.arange(rois), label])
    found = []
    for c in range(1, classes):
        idx = np.flatnonzero((label == c) & (best >= 0.3))
        if len(idx):
            kept = idx[_tf_nms(boxes[idx].astype(np.float32), best[idx], len(idx), 0.3)]
            found.extend((best[i], c, i) for i in kept)
    found.sort(key=lambda t: -t[0])
    assert 3 <= len(found)
    want = np.zeros((10, 6))
    want[:, 4] = -1
    for row, (s, c, i) in enumerate(found[:10]):
        want[row] = [*boxes[i], c, s]
    np.testing.assert_allclose(det[0], want, rtol=1e-4, atol=1e-5)


def test_nms_trt_with_tf_nms() -> None:
    r = rng(14)
    priors_n, classes = 60, 3
    lo = r.uniform(0, 0.8, (priors_n, 2))
    prior = np.concatenate([lo, lo + r.uniform(0.05, 0.3, (priors_n, 2))], axis=1)
    var = np.tile([0.1, 0.1, 0.2, 0.2], (priors_n, 1))
    priors = np.stack([prior.reshape(-1), var.reshape(-1)])[None, :, :, None].astype(np.float32)
    loc = r.normal(0, 1, (2, priors_n * 4, 1, 1)).astype(np.float32)
    conf = r.uniform(0, 1, (2, priors_n * classes, 1, 1)).astype(np.float32)
    fields = {"shareLocation": 1, "varianceEncodedInTarget": 0, "backgroundLabelId": 0,
              "numClasses": classes, "topK": 20, "keepTopK": 15, "confidenceThreshold": 0.3,
              "nmsThreshold": 0.5, "codeType": 2, "inputOrder": [1, 0, 2]}  # fmt: skip
    det, count = run("NMS_TRT", [conf, loc, priors], **fields)
    assert det.shape == (2, 1, 15, 7) and count.shape == (2, 1, 1, 1)
    for n in range(2):
        d = loc[n].reshape(priors_n, 4)
        pw, ph = prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]
        cx = (prior[:, 0] + prior[:, 2]) / 2 + 0.1 * d[:, 0] * pw
        cy = (prior[:, 1] + prior[:, 3]) / 2 + 0.1 * d[:, 1] * ph
        w, h = np.exp(0.2 * d[:, 2]) * pw, np.exp(0.2 * d[:, 3]) * ph
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        yxyx = xyxy[:, [1, 0, 3, 2]].astype(np.float32)
        scores = conf[n].reshape(priors_n, classes)
        found = []
        for c in range(1, classes):
            idx = np.flatnonzero(scores[:, c] > 0.3)
            idx = idx[np.argsort(-scores[idx, c], kind="stable")][:20]
            kept = idx[_tf_nms(yxyx[idx], scores[idx, c], len(idx), 0.5)]
            found.extend((scores[i, c], c, i) for i in kept)
        found.sort(key=lambda t: -t[0])
        assert found
        want = np.zeros((15, 7))
        want[:, 0], want[:, 1] = n, -1
        for row, (s, c, i) in enumerate(found[:15]):
            want[row] = [n, c, s, *np.clip(xyxy[i], 0, 1)]
        np.testing.assert_allclose(det[n, 0], want, rtol=1e-4, atol=1e-5)
        assert count[n, 0, 0, 0] == min(len(found), 15)


def test_proposal_loop() -> None:
    r = rng(15)
    sizes, ratios, stride, height, width = [8.0, 16.0], [0.5, 1.0, 2.0], 8, 5, 6
    anchors = len(sizes) * len(ratios)
    scores = r.uniform(0, 1, (1, anchors, height, width)).astype(np.float32)
    deltas = r.normal(0, 0.3, (1, anchors * 4, height, width)).astype(np.float32)
    fields = {"input_height": 40, "input_width": 48, "rpn_stride": stride, "roi_min_size": 2.0,
              "nms_iou_threshold": 0.6, "pre_nms_top_n": 100, "post_nms_top_n": 20,
              "anchor_sizes": sizes, "anchor_ratios": ratios}  # fmt: skip
    (rois,) = run("Proposal", [scores, deltas], **fields)
    cands = []
    for a in range(anchors):
        s, q = sizes[a // 3], ratios[a % 3]
        for y in range(height):
            for x in range(width):
                tx, ty, tw, th = (deltas[0, a * 4 + k, y, x] for k in range(4))
                aw, ah = s * q, s / q
                cx, cy = (x + 0.5) * stride + aw * tx, (y + 0.5) * stride + ah * ty
                w, h = math.exp(tw) * aw, math.exp(th) * ah
                x1, y1 = min(max(cx - w / 2, 0), 47), min(max(cy - h / 2, 0), 39)
                x2, y2 = min(max(cx - w / 2 + w, 0), 47), min(max(cy - h / 2 + h, 0), 39)
                score = -math.inf if x2 - x1 <= 2 or y2 - y1 <= 2 else scores[0, a, y, x]
                cands.append((score, (x1, y1, x2, y2)))
    order = sorted(range(len(cands)), key=lambda i: -cands[i][0])[:100]
    kept: list[tuple[float, ...]] = []
    for i in order:
        box = cands[i][1]
        ok = True
        for k in kept:
            iw = max(min(box[2], k[2]) - max(box[0], k[0]) + 1, 0)
            ih = max(min(box[3], k[3]) - max(box[1], k[1]) + 1, 0)
            inter = iw * ih
            union = ((box[2] - box[0] + 1) * (box[3] - box[1] + 1)
                     + (k[2] - k[0] + 1) * (k[3] - k[1] + 1) - inter)  # fmt: skip
            ok = ok and inter / union <= 0.6
        if ok:
            kept.append(box)
        if len(kept) == 20:
            break
    assert len(kept) > 5
    want = np.zeros((20, 4))
    for row, (x1, y1, x2, y2) in enumerate(kept):
        want[row] = [y1 / 39, x1 / 47, y2 / 39, x2 / 47]
    np.testing.assert_allclose(rois[0], want, rtol=1e-4, atol=1e-5)


def test_bad_inputs_and_fields_raise() -> None:
    with pytest.raises(PluginReferenceError, match="no reference"):
        reference("NoSuch_TRT")
    with pytest.raises(PluginReferenceError, match="negSlope"):
        run("LReLU_TRT", [np.zeros(3)])
    with pytest.raises(PluginReferenceError, match="expected 1 input"):
        run("LReLU_TRT", [np.zeros(3), np.zeros(3)], negSlope=0.1)
    with pytest.raises(PluginReferenceError, match="rank 4"):
        run("CropAndResize", [np.zeros((3, 4)), np.zeros((1, 1, 4))], crop_height=2, crop_width=2)
