"""The `ROI` proposal layer: top-k anchors by score, refined by the RPN deltas, then NMS."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from surgery.models.maskrcnn.boxes import apply_deltas, clip_boxes, per_image
from surgery.models.maskrcnn.config import MaskRCNNConfig
from surgery.models.maskrcnn.naming import op_name, sub_scope

BATCH = 1  # images per inference call; the graph's batch dimension is static


class ProposalLayer(keras.layers.Layer):
    """[rpn_class, rpn_bbox, anchors] -> proposals [batch, proposals, (y1, x1, y2, x2)]."""

    def __init__(self, config: MaskRCNNConfig, **kwargs: Any) -> None:
        """Keep the config; everything else is Keras' business."""
        super().__init__(**kwargs)
        self.config = config

    def call(self, inputs: list[Any]) -> Any:
        """Select, refine, clip and suppress anchors for each image."""
        cfg = self.config
        probs, deltas, anchors = inputs
        scores = probs[:, :, 1]
        std = np.reshape(np.asarray(cfg.rpn_bbox_std, np.float32), (1, 1, 4))
        deltas = deltas * std
        limit = min(cfg.pre_nms_limit, cfg.num_anchors)
        with sub_scope(cfg, "select"):
            order = tf.nn.top_k(scores, limit, sorted=True, name=op_name(cfg, "top_anchors"))
            ix = order.indices
            scores = per_image([scores, ix], tf.gather, BATCH)
            deltas = per_image([deltas, ix], tf.gather, BATCH)
            anchors = per_image(
                [anchors, ix], tf.gather, BATCH, names=[op_name(cfg, "pre_nms_anchors")]
            )
        with sub_scope(cfg, "refine"):
            boxes = per_image(
                [anchors, deltas],
                lambda a, d: apply_deltas(a, d, op_name(cfg, "apply_box_deltas_out")),
                BATCH,
                names=[op_name(cfg, "refined_anchors")],
            )
            boxes = per_image(
                [boxes],
                lambda b: clip_boxes(b, (0.0, 0.0, 1.0, 1.0), op_name(cfg, "clipped_boxes")),
                BATCH,
                names=[op_name(cfg, "refined_anchors_clipped")],
            )
        with sub_scope(cfg, "suppress"):
            proposals = per_image([boxes, scores], self._suppress, BATCH)
        proposals.set_shape((BATCH, cfg.proposals, 4))
        return proposals

    def _suppress(self, boxes: Any, scores: Any) -> Any:
        """NMS on one image's boxes, zero-padded to exactly `proposals` rows."""
        cfg = self.config
        keep = tf.image.non_max_suppression(
            boxes,
            scores,
            cfg.proposals,
            cfg.rpn_nms_threshold,
            name=op_name(cfg, "rpn_non_max_suppression"),
        )
        kept = tf.gather(boxes, keep)
        missing = tf.maximum(cfg.proposals - tf.shape(kept)[0], 0)
        return tf.pad(kept, [(0, missing), (0, 0)])

    def compute_output_shape(self, input_shape: Any) -> Any:
        """(batch, proposals, 4)."""
        return tf.TensorShape((BATCH, self.config.proposals, 4))
