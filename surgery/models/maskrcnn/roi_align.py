"""`PyramidROIAlign`: crop each box from the pyramid level its size selects, bilinearly."""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf
import tf_keras as keras

from surgery.models.maskrcnn.config import MaskRCNNConfig
from surgery.models.maskrcnn.naming import op_name, sub_scope

LEVELS = (2, 3, 4, 5)
CANONICAL_SIZE = 224.0  # a box of this many pixels on a side maps to level 4


class PyramidROIAlign(keras.layers.Layer):
    """[boxes, P2, P3, P4, P5] -> pooled [batch, boxes, C, s, s] (NCHW) / [.., s, s, C]."""

    def __init__(self, config: MaskRCNNConfig, pool_size: int, **kwargs: Any) -> None:
        """Keep the config and the output side `pool_size`."""
        super().__init__(**kwargs)
        self.config = config
        self.pool_size = pool_size

    def _crop(self, feature_map: Any, boxes: Any, box_indices: Any) -> Any:
        """tf.image.crop_and_resize, wrapped in transposes when the map is NCHW."""
        cfg = self.config
        size = (self.pool_size, self.pool_size)
        if not cfg.nchw:
            return tf.image.crop_and_resize(feature_map, boxes, box_indices, size)
        nhwc = tf.transpose(feature_map, [0, 2, 3, 1], name=op_name(cfg, "to_nhwc"))
        crops = tf.image.crop_and_resize(nhwc, boxes, box_indices, size)
        return tf.transpose(crops, [0, 3, 1, 2], name=op_name(cfg, "to_nchw"))

    def call(self, inputs: list[Any]) -> Any:
        """Assign levels, crop per level, then restore the boxes' order."""
        cfg = self.config
        boxes, *feature_maps = inputs
        with sub_scope(cfg, "levels"):
            y1, x1, y2, x2 = tf.split(boxes, 4, axis=2)
            area = (y2 - y1) * (x2 - x1)
            scale = CANONICAL_SIZE / float(cfg.image_size)  # image area is size^2
            level = tf.math.log(tf.sqrt(area) / scale) / math.log(2.0)
            level = 4 + tf.cast(tf.round(level), tf.int32)
            level = tf.squeeze(tf.clip_by_value(level, LEVELS[0], LEVELS[-1]), 2)
        crops, where = [], []
        for index, value in enumerate(LEVELS):
            with sub_scope(cfg, f"level{value}"):
                ix = tf.where(tf.equal(level, value))
                level_boxes = tf.stop_gradient(tf.gather_nd(boxes, ix))
                box_indices = tf.stop_gradient(tf.cast(ix[:, 0], tf.int32))
                crops.append(self._crop(feature_maps[index], level_boxes, box_indices))
                where.append(ix)
        with sub_scope(cfg, "reorder"):
            pooled = tf.concat(crops, axis=0)
            ix = tf.concat(where, axis=0)
            count = tf.shape(boxes, out_type=tf.int64)[1]
            position = ix[:, 0] * count + ix[:, 1]
            order = tf.argsort(position, name=op_name(cfg, "restore_order"))
            pooled = tf.gather(pooled, order)
            shape = tf.concat([tf.shape(boxes)[:2], tf.shape(pooled)[1:]], axis=0)
            pooled = tf.reshape(pooled, shape)
        pooled.set_shape(self.compute_output_shape([b.shape for b in inputs]))
        return pooled

    def compute_output_shape(self, input_shape: Any) -> Any:
        """(batch, boxes) + the pooled map of one box in the build's layout."""
        boxes = tf.TensorShape(input_shape[0])
        channels = tf.TensorShape(input_shape[1])[self.config.channel_axis]
        side = (self.pool_size, self.pool_size)
        tail = (channels, *side) if self.config.nchw else (*side, channels)
        return tf.TensorShape((boxes[0], boxes[1], *tail))
