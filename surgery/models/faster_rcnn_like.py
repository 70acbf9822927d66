"""A Faster R-CNN-like head with TLT's namespaces: backbone, `rpn_conv1`, `rpn_out_class`
(sigmoid objectness), `rpn_out_regress`, a `proposal` namespace (anchors, box decoding, top-k,
NMS, normalised rois; written in TF ops with the semantics of TensorRT's Proposal plugin, the
decoding a model exported for that plugin is trained with), `roi_pooling_conv_1`
(tf.image.crop_and_resize) and time-distributed dense classifier/regressor heads."""

from __future__ import annotations

from typing import Any

import numpy as np

from surgery.models.graph_model import GraphModel

ANCHOR_SIZES = (16.0, 32.0)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
STRIDE = 4
ROI_MIN_SIZE = 1.0


def build(
    input_size: int = 64, width: int = 16, pre_nms: int = 64, post_nms: int = 16,
    pool: int = 7, classes: int = 3, seed: int = 13, iou_threshold: float = 0.7,
    roi_min_size: float = ROI_MIN_SIZE, anchor_sizes: tuple[float, ...] = ANCHOR_SIZES,
    anchor_ratios: tuple[float, ...] = ANCHOR_RATIOS,
) -> Any:  # fmt: skip
    """A frozen-ready stand-in model: image [1, S, S, 3] -> rois, class probs, box deltas.

    The parameters are a TLT FasterRCNN spec's: image size, RPN pre/post-NMS top-N and NMS IoU
    threshold, minimum ROI size, anchor sizes and ratios, ROI pool size and classes."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    sizes = tuple(float(s) for s in anchor_sizes)
    ratios = tuple(float(r) for r in anchor_ratios)
    per_cell = len(sizes) * len(ratios)
    grid = input_size // STRIDE
    anchor_w = np.asarray([s * r for s in sizes for r in ratios], np.float32)
    anchor_h = np.asarray([s / r for s in sizes for r in ratios], np.float32)

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
            # TensorRT's Proposal semantics (plugins/reference/proposal.py): anchors and scores in
            # NCHW order (anchor, y, x), deltas (tx, ty, tw, th), anchor w = size * ratio and
            # h = size / ratio, boxes clipped to [0, side - 1], boxes with a side <= roi_min_size
            # dropped, NMS with the +1-pixel IoU, rois divided by (side - 1), padding rows zero.
            last = float(input_size - 1)
            scores = tf.reshape(tf.transpose(objectness, [0, 3, 1, 2]), [-1])
            t = tf.reshape(tf.transpose(regress, [0, 3, 1, 2]), [per_cell, 4, grid, grid])
            aw = tf.reshape(tf.constant(anchor_w, name="anchor_w"), [-1, 1, 1])
            ah = tf.reshape(tf.constant(anchor_h, name="anchor_h"), [-1, 1, 1])
            centres = (np.arange(grid, dtype=np.float32) + np.float32(0.5)) * np.float32(STRIDE)
            acx = tf.reshape(tf.constant(centres, name="centre_x"), [1, 1, -1])
            acy = tf.reshape(tf.constant(centres, name="centre_y"), [1, -1, 1])
            cx, cy = acx + aw * t[:, 0], acy + ah * t[:, 1]
            w, h = tf.exp(t[:, 2]) * aw, tf.exp(t[:, 3]) * ah
            x1, y1 = cx - w / 2.0, cy - h / 2.0
            x2, y2 = x1 + w, y1 + h
            x1, x2 = tf.clip_by_value(x1, 0.0, last), tf.clip_by_value(x2, 0.0, last)
            y1, y2 = tf.clip_by_value(y1, 0.0, last), tf.clip_by_value(y2, 0.0, last)
            small = tf.logical_or(x2 - x1 <= roi_min_size, y2 - y1 <= roi_min_size)
            scores = tf.where(tf.reshape(small, [-1]), tf.fill(tf.shape(scores), -np.inf), scores)
            boxes = tf.reshape(tf.stack([y1, x1, y2, x2], axis=-1), [-1, 4])
            top_scores, top = tf.math.top_k(scores, k=pre_nms)
            top_boxes = tf.gather(boxes, top)
            plus_one = top_boxes + tf.constant([0.0, 0.0, 1.0, 1.0])
            keep, valid = tf.raw_ops.NonMaxSuppressionV4(
                boxes=plus_one, scores=top_scores, max_output_size=post_nms,
                iou_threshold=iou_threshold, score_threshold=float("-inf"),
                pad_to_max_output_size=True,
            )  # fmt: skip
            written = tf.cast(tf.range(post_nms) < valid, tf.float32)[:, None]
            kept = tf.gather(top_boxes, keep) * written / last
            rois = tf.reshape(kept, [1, post_nms, 4])
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
