"""Wire the inference graph: backbone, RPN, ROI, heads, detection, masks -> a tf-keras Model."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from surgery.models.maskrcnn.anchors import generate_anchors
from surgery.models.maskrcnn.backbone import pyramid, resnet
from surgery.models.maskrcnn.config import MaskRCNNConfig
from surgery.models.maskrcnn.detection import DetectionLayer
from surgery.models.maskrcnn.heads import classifier_head, mask_head
from surgery.models.maskrcnn.proposal import BATCH, ProposalLayer
from surgery.models.maskrcnn.rpn import rpn_outputs

L = keras.layers
OUTPUT_NAMES = ("mrcnn_detection", "mrcnn_mask")


class AnchorsLayer(keras.layers.Layer):
    """The pyramid anchors as an in-graph constant [batch, anchors, 4] (no weights)."""

    def __init__(self, anchors: np.ndarray, **kwargs: Any) -> None:
        """Keep the anchors (not a weight: fixtures randomise every weight)."""
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, np.float32)

    def call(self, image: Any) -> Any:
        """The constant, batched like `image` (the input only places it in the graph)."""
        del image
        return tf.constant(self.anchors[np.newaxis].repeat(BATCH, axis=0))

    def compute_output_shape(self, input_shape: Any) -> Any:
        """(batch, anchors, 4)."""
        return tf.TensorShape((BATCH, *self.anchors.shape))


def build_keras_model(config: MaskRCNNConfig) -> Any:
    """The Mask R-CNN inference model (weights as Keras initialised them)."""
    image = keras.Input(shape=config.image_shape, batch_size=BATCH, name="input_image")
    inputs = [image]
    if config.anchors == "input":
        anchors = keras.Input(shape=(config.num_anchors, 4), batch_size=BATCH, name="input_anchors")
        inputs.append(anchors)
    else:
        anchors = AnchorsLayer(generate_anchors(config), name="anchors")(image)
    levels = pyramid(resnet(image, config), config)
    _, rpn_class, rpn_bbox = rpn_outputs(levels, config)
    rois = ProposalLayer(config, name="ROI")([rpn_class, rpn_bbox, anchors])
    heads_in = levels[:4]  # P2..P5; P6 only feeds the RPN
    _, mrcnn_class, mrcnn_bbox = classifier_head(rois, heads_in, config)
    detections = DetectionLayer(config, name="mrcnn_detection")([rois, mrcnn_class, mrcnn_bbox])
    boxes = L.Lambda(lambda t: t[..., :4], name="lambda_1")(detections)
    masks = mask_head(boxes, heads_in, config)
    return keras.Model(inputs, [detections, masks], name="mask_rcnn")
