"""A Faster R-CNN-like head with TLT's namespaces: backbone, `rpn_conv1`, `rpn_out_class`
(sigmoid objectness), `rpn_out_regress`, a `proposal` namespace (anchors, box decoding, top-k,
NMS, normalised rois), `roi_pooling_conv_1` (tf.image.crop_and_resize) and time-distributed
dense classifier/regressor heads."""

from __future__ import annotations

from typing import Any

import numpy as np

from surgery.models.graph_model import GraphModel

ANCHOR_SIZES = (16.0, 32.0)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
STRIDE = 4


def build(
    input_size: int = 64, width: int = 16, pre_nms: int = 64, post_nms: int = 16,
    pool: int = 7, classes: int = 3, seed: int = 13,
) -> Any:  # fmt: skip
    """A frozen-ready stand-in model: image [1, S, S, 3] -> rois, class probs, box deltas."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    per_cell = len(ANCHOR_SIZES) * len(ANCHOR_RATIOS)
    grid = input_size // STRIDE
    table = []
    for gy in range(grid):
        for gx in range(grid):
            for size in ANCHOR_SIZES:
                for ratio in ANCHOR_RATIOS:
                    cy, cx = (gy + 0.5) * STRIDE, (gx + 0.5) * STRIDE
                    h, w = size * ratio**0.5, size / ratio**0.5
                    table.append((cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2))
    anchor_table = np.asarray(table, np.float32)

    def weight(shape: tuple[int, ...]) -> Any:
        fan_in = int(np.prod(shape[:-1]))
        return tf.constant((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))

    def bias(n: int) -> Any:
        return tf.constant((rng.standard_normal(n) * 0.05).astype(np.float32))

    def conv(x: Any, out: int, k: int, stride: int, scope: str, act: Any = tf.nn.relu) -> Any:
        with tf.name_scope(scope):
            y = tf.nn.bias_add(
                tf.nn.conv2d(x, weight((k, k, int(x.shape[-1]), out)), stride, "SAME"), bias(out)
            )
            return act(y) if act is not None else y

    def fn(image: Any) -> list[Any]:
        x = conv(image, width, 3, 2, "block_1a_conv_1")
        feature = conv(x, width * 2, 3, 2, "block_2a_conv_1")
        rpn = conv(feature, width * 2, 3, 1, "rpn_conv1")
        objectness = conv(rpn, per_cell, 1, 1, "rpn_out_class", tf.sigmoid)
        regress = conv(rpn, per_cell * 4, 1, 1, "rpn_out_regress", None)
        with tf.name_scope("proposal"):
            scores = tf.reshape(objectness, [1, -1])
            deltas = tf.reshape(regress, [1, -1, 4])
            anchors = tf.constant(anchor_table, name="anchors")
            ah, aw = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
            acy, acx = anchors[:, 0] + ah / 2, anchors[:, 1] + aw / 2
            cy, cx = acy + deltas[0, :, 0] * ah, acx + deltas[0, :, 1] * aw
            h = ah * tf.exp(tf.clip_by_value(deltas[0, :, 2], -4.0, 4.0))
            w = aw * tf.exp(tf.clip_by_value(deltas[0, :, 3], -4.0, 4.0))
            boxes = tf.clip_by_value(
                tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1),
                0.0, float(input_size),
            )  # fmt: skip
            top_scores, top = tf.math.top_k(scores[0], k=pre_nms)
            top_boxes = tf.gather(boxes, top)
            keep, _ = tf.raw_ops.NonMaxSuppressionV4(
                boxes=top_boxes, scores=top_scores, max_output_size=post_nms,
                iou_threshold=0.7, score_threshold=float("-inf"), pad_to_max_output_size=True,
            )  # fmt: skip
            rois = tf.reshape(tf.gather(top_boxes, keep) / float(input_size), [1, post_nms, 4])
        with tf.name_scope("roi_pooling_conv_1"):
            flat = tf.reshape(rois, [-1, 4])
            box_ind = tf.zeros([post_nms], tf.int32)
            crops = tf.image.crop_and_resize(
                feature, flat, box_ind, [pool, pool], name="CropAndResize_new"
            )
            crops = tf.reshape(crops, [1, post_nms, pool, pool, width * 2])
        with tf.name_scope("time_distributed_flatten"):
            flat_crops = tf.reshape(crops, [post_nms, pool * pool * width * 2])
        with tf.name_scope("dense_class_td"):
            logits = tf.matmul(flat_crops, weight((pool * pool * width * 2, classes + 1)))
            probs = tf.nn.softmax(logits + bias(classes + 1))
        with tf.name_scope("dense_regress_td"):
            box_deltas = tf.matmul(flat_crops, weight((pool * pool * width * 2, classes * 4)))
            box_deltas = box_deltas + bias(classes * 4)
        return [
            tf.identity(rois, name="rois"),
            tf.identity(probs, name="class_probs"),
            tf.identity(box_deltas, name="box_deltas"),
        ]

    return GraphModel(
        fn, "input_image", (1, input_size, input_size, 3), ["rois", "class_probs", "box_deltas"],
        "faster_rcnn_like",
    )  # fmt: skip
