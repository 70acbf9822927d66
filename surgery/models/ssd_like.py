"""An SSD-like detector with the TF Object Detection API's top-level namespaces:
`Preprocessor`, `FeatureExtractor`, `BoxPredictor_i`, `MultipleGridAnchorGenerator` (reads the
feature-map shapes), `concat` (box encodings), `concat_1` (class scores) and `Postprocessor`
(score conversion, box decoding, CombinedNonMaxSuppression)."""

from __future__ import annotations

from typing import Any

import numpy as np

from surgery.models.graph_model import GraphModel

NUM_CLASSES = 3  # without background
ASPECTS = (1.0, 2.0, 0.5)
LAYERS = 2  # feature maps at strides 8 and 16 (the backbone's structure, not a parameter)
MIN_SCALE, MAX_SCALE = 0.2, 0.5
VARIANCE = (0.1, 0.1, 0.2, 0.2)  # the box coder's 1 / (y_scale, x_scale, h_scale, w_scale)


def layer_boxes(
    index: int, min_scale: float = MIN_SCALE, max_scale: float = MAX_SCALE,
    aspects: tuple[float, ...] = ASPECTS,
) -> list[tuple[float, float]]:  # fmt: skip
    """(aspect ratio, scale) of each box of layer `index`, as the OD API's SSD anchor generator
    (and TensorRT's GridAnchor_TRT) make them: the lowest layer has three boxes (scale 0.1 at
    ratio 1, then 2 and 0.5), the others every ratio plus ratio 1 at the interpolated scale."""
    scale = min_scale + (max_scale - min_scale) * index / (LAYERS - 1)
    if index == 0:
        return [(1.0, 0.1), (2.0, scale), (0.5, scale)]
    following = 1.0 if index == LAYERS - 1 else scale + (max_scale - min_scale) / (LAYERS - 1)
    return [(a, scale) for a in aspects] + [(1.0, (scale * following) ** 0.5)]


def build(
    input_size: int = 64, width: int = 16, seed: int = 11, num_classes: int = NUM_CLASSES,
    min_scale: float = MIN_SCALE, max_scale: float = MAX_SCALE,
    aspect_ratios: tuple[float, ...] = ASPECTS, max_per_class: int = 10, max_total: int = 10,
    iou_threshold: float = 0.6, score_threshold: float = 0.3, l2norm_scale: float | None = None,
) -> Any:  # fmt: skip
    """A frozen-ready stand-in model: image [1, S, S, 3] -> boxes, scores, classes, count.

    The parameters are the configuration a pipeline.config gives an OD API SSD: classes
    (without background), `ssd_anchor_generator` scales and aspect ratios, and the
    post-processing's per-class and total detections and thresholds. `l2norm_scale` adds
    SSD300's conv4_3_norm (Keras SSD's L2Normalization layer) before the first box predictor:
    tf.math.l2_normalize over the channels times a learned per-channel scale near that value."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    classes = num_classes + 1
    aspects = tuple(float(a) for a in aspect_ratios)

    def boxes_of(index: int) -> list[tuple[float, float]]:
        return layer_boxes(index, min_scale, max_scale, aspects)

    def weight(shape: tuple[int, ...]) -> Any:
        fan_in = int(np.prod(shape[:-1]))
        return tf.constant((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))

    def bias(n: int) -> Any:
        return tf.constant((rng.standard_normal(n) * 0.05).astype(np.float32))

    def conv(x: Any, out: int, stride: int, scope: str, relu: bool = True) -> Any:
        with tf.name_scope(scope):
            k = weight((3, 3, int(x.shape[-1]), out))
            y = tf.nn.bias_add(tf.nn.conv2d(x, k, stride, "SAME"), bias(out))
            return tf.nn.relu6(y) if relu else y

    def anchors_for(feature: Any, index: int) -> Any:
        with tf.name_scope(f"GridAnchorGenerator_{index}" if index else "GridAnchorGenerator"):
            shape = tf.shape(feature)
            h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
            ys = (tf.range(h) + 0.5) / h
            xs = (tf.range(w) + 0.5) / w
            cy, cx = tf.meshgrid(ys, xs, indexing="ij")
            boxes = boxes_of(index)
            sizes = tf.constant([[s / a**0.5, s * a**0.5] for a, s in boxes], tf.float32)
            centres = tf.reshape(tf.stack([cy, cx], axis=-1), [-1, 1, 2])
            centres = tf.tile(centres, [1, len(boxes), 1])
            hw = tf.tile(sizes[None], [tf.shape(centres)[0], 1, 1])
            return tf.reshape(tf.concat([centres, hw], axis=-1), [-1, 4])

    def fn(image: Any) -> list[Any]:
        with tf.name_scope("Preprocessor"):
            x = image * (2.0 / 255.0) - 1.0
        with tf.name_scope("FeatureExtractor"):
            x = conv(x, width, 2, "conv1")
            x = conv(x, width, 2, "conv2")
            f1 = conv(x, width, 2, "layer_1")
            f2 = conv(f1, width, 2, "layer_2")
            head = f1
            if l2norm_scale is not None:
                with tf.name_scope("layer_1_norm"):
                    gamma = l2norm_scale * (1.0 + 0.1 * rng.standard_normal(width))
                    head = tf.math.l2_normalize(f1, axis=3) * tf.constant(gamma.astype(np.float32))
        locs, confs = [], []
        for i, feature in enumerate((head, f2)):
            with tf.name_scope(f"BoxPredictor_{i}"):
                per_cell = len(boxes_of(i))
                box = conv(feature, per_cell * 4, 1, "BoxEncodingPredictor", relu=False)
                cls = conv(feature, per_cell * classes, 1, "ClassPredictor", relu=False)
                locs.append(tf.reshape(box, [1, -1, 1, 4], name="Reshape"))
                confs.append(tf.reshape(cls, [1, -1, classes], name="Reshape_1"))
        with tf.name_scope("MultipleGridAnchorGenerator"):
            parts = [anchors_for(f, i) for i, f in enumerate((f1, f2))]
            anchors = tf.concat(parts, axis=0, name="Concatenate/concat")
        loc = tf.concat(locs, axis=1, name="concat")
        conf = tf.concat(confs, axis=1, name="concat_1")
        with tf.name_scope("Postprocessor"):
            scores = tf.sigmoid(conf, name="convert_scores")
            deltas = tf.squeeze(loc, 2)
            with tf.name_scope("Decode"):
                cy = anchors[None, :, 0] + deltas[..., 0] * VARIANCE[0] * anchors[None, :, 2]
                cx = anchors[None, :, 1] + deltas[..., 1] * VARIANCE[1] * anchors[None, :, 3]
                h = anchors[None, :, 2] * tf.exp(deltas[..., 2] * VARIANCE[2])
                w = anchors[None, :, 3] * tf.exp(deltas[..., 3] * VARIANCE[3])
                boxes = tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)
            nmsed = tf.image.combined_non_max_suppression(
                boxes[:, :, None, :], scores[:, :, 1:], max_output_size_per_class=max_per_class,
                max_total_size=max_total, iou_threshold=iou_threshold,
                score_threshold=score_threshold, clip_boxes=True,
            )  # fmt: skip
        return [
            tf.identity(nmsed.nmsed_boxes, name="detection_boxes"),
            tf.identity(nmsed.nmsed_scores, name="detection_scores"),
            tf.identity(nmsed.nmsed_classes, name="detection_classes"),
            tf.identity(tf.cast(nmsed.valid_detections, tf.float32), name="num_detections"),
        ]

    return GraphModel(
        fn, "image_tensor", (1, input_size, input_size, 3),
        ["detection_boxes", "detection_scores", "detection_classes", "num_detections"], "ssd_like",
    )  # fmt: skip
