"""`mrcnn_detection`: refine proposals by class, drop background and weak ones, NMS per class."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from surgery.models.maskrcnn.boxes import apply_deltas, clip_boxes, per_image
from surgery.models.maskrcnn.config import MaskRCNNConfig
from surgery.models.maskrcnn.naming import op_name, sub_scope
from surgery.models.maskrcnn.proposal import BATCH

WINDOW = (0.0, 0.0, 1.0, 1.0)  # the whole image, normalized: no padding in these builds


def _intersect(a: Any, b: Any) -> Any:
    """Sorted values present in both 1-D int64 tensors."""
    both = tf.sets.intersection(tf.expand_dims(a, 0), tf.expand_dims(b, 0))
    return tf.sparse.to_dense(both)[0]


class DetectionLayer(keras.layers.Layer):
    """[rois, mrcnn_class, mrcnn_bbox] -> detections [batch, n, (y1, x1, y2, x2, class, score)]."""

    def __init__(self, config: MaskRCNNConfig, **kwargs: Any) -> None:
        """Keep the config."""
        super().__init__(**kwargs)
        self.config = config

    def call(self, inputs: list[Any]) -> Any:
        """Refine each image's detections; the output has exactly `detections` rows."""
        cfg = self.config
        out = per_image(inputs, self._refine, BATCH)
        return tf.reshape(out, [BATCH, cfg.detections, 6], name=op_name(cfg, "detections"))

    def _refine(self, rois: Any, probs: Any, deltas: Any) -> Any:
        """Detections of one image, zero-padded."""
        cfg = self.config
        limit = cfg.detections
        with sub_scope(cfg, "best_class"):
            class_ids = tf.argmax(probs, axis=1, output_type=tf.int32)
            pick = tf.stack([tf.range(tf.shape(probs)[0]), class_ids], axis=1)
            scores = tf.gather_nd(probs, pick)
            std = np.asarray(cfg.bbox_std, np.float32)
            specific = tf.gather_nd(deltas, pick) * std
            boxes = apply_deltas(rois, specific, op_name(cfg, "refined_rois"))
            boxes = clip_boxes(boxes, WINDOW, op_name(cfg, "clipped_rois"))
        with sub_scope(cfg, "filter"):
            keep = tf.where(class_ids > 0)[:, 0]
            confident = tf.where(scores >= cfg.detection_min_confidence)[:, 0]
            keep = _intersect(keep, confident)
            kept_ids = tf.gather(class_ids, keep)
            kept_scores = tf.gather(scores, keep)
            kept_boxes = tf.gather(boxes, keep)
            unique_ids = tf.unique(kept_ids)[0]

        def class_nms(class_id: Any) -> Any:
            """Indices (into all rois) that survive NMS within one class, -1 padded."""
            members = tf.where(tf.equal(kept_ids, class_id))[:, 0]
            survivors = tf.image.non_max_suppression(
                tf.gather(kept_boxes, members),
                tf.gather(kept_scores, members),
                max_output_size=limit,
                iou_threshold=cfg.detection_nms_threshold,
            )
            chosen = tf.gather(keep, tf.gather(members, survivors))
            chosen = tf.pad(chosen, [(0, limit - tf.shape(chosen)[0])], constant_values=-1)
            chosen.set_shape([limit])
            return chosen

        with sub_scope(cfg, "per_class"):
            nms_keep = tf.map_fn(class_nms, unique_ids, fn_output_signature=tf.int64)
            nms_keep = tf.reshape(nms_keep, [-1])
            nms_keep = tf.gather(nms_keep, tf.where(nms_keep > -1)[:, 0])
            keep = _intersect(keep, nms_keep)
        with sub_scope(cfg, "top"):
            kept_scores = tf.gather(scores, keep)
            count = tf.minimum(tf.shape(kept_scores)[0], limit)
            best = tf.nn.top_k(kept_scores, k=count, sorted=True).indices
            keep = tf.gather(keep, best)
            columns = [
                tf.gather(boxes, keep),
                tf.cast(tf.gather(class_ids, keep), tf.float32)[:, tf.newaxis],
                tf.gather(scores, keep)[:, tf.newaxis],
            ]
            found = tf.concat(columns, axis=1)
            return tf.pad(found, [(0, limit - tf.shape(found)[0]), (0, 0)])

    def compute_output_shape(self, input_shape: Any) -> Any:
        """(batch, detections, 6)."""
        return tf.TensorShape((BATCH, self.config.detections, 6))
