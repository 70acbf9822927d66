"""Small frozen TF graphs whose name scopes imitate SSD and Mask R-CNN (built with tf.compat.v1)."""

from __future__ import annotations

import numpy as np


def _freeze(graph, outputs: list[str]) -> bytes:
    """Initialise random variables and freeze `graph` to GraphDef bytes."""
    import tensorflow as tf

    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), outputs
        )
    return frozen.SerializeToString(deterministic=True)


def _conv(tf, x, name: str, out_ch: int, stride: int = 1):
    """A conv with a random variable kernel (frozen to Const + Identity `read`)."""
    in_ch = int(x.shape[-1])
    with tf.compat.v1.variable_scope(name):
        kernel = tf.compat.v1.get_variable(
            "kernel",
            [3, 3, in_ch, out_ch],
            initializer=tf.compat.v1.random_normal_initializer(seed=len(name)),
            use_resource=False,
        )
        return tf.nn.conv2d(x, kernel, [1, stride, stride, 1], "SAME", name="Conv2D")


def ssd_graph() -> bytes:
    """SSD-like: Preprocessor, box predictors, concat/concat_1, anchors, Postprocessor with TopK."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, 32, 32, 3], name="image_tensor")
        with tf.name_scope("Preprocessor"):
            pre = tf.subtract(image * 2.0, 1.0, name="sub")
        with tf.compat.v1.variable_scope("FeatureExtractor"):
            f1 = tf.nn.relu(_conv(tf, pre, "conv1", 8, 2))  # 16x16
            f2 = tf.nn.relu(_conv(tf, f1, "conv2", 8, 2))  # 8x8
        locs, confs = [], []
        for i, feat in enumerate((f1, f2)):
            with tf.compat.v1.variable_scope(f"BoxPredictor_{i}"):
                loc = _conv(tf, feat, "BoxEncodingPredictor", 4)
                conf = _conv(tf, feat, "ClassPredictor", 3)
                locs.append(tf.reshape(loc, [1, -1, 1, 4], name="Reshape"))
                confs.append(tf.reshape(conf, [1, -1, 3], name="Reshape_1"))
        box_loc = tf.concat(locs, axis=1, name="concat")
        box_conf = tf.concat(confs, axis=1, name="concat_1")
        with tf.name_scope("MultipleGridAnchorGenerator"):
            anchors = []
            for i, feat in enumerate((f1, f2)):
                size = tf.cast(tf.shape(feat)[1], tf.float32, name=f"ToFloat_{i}")
                grid = tf.fill([int(feat.shape[1]) ** 2, 4], size, name=f"anchors_{i}")
                anchors.append(tf.reshape(grid, [-1, 4], name=f"Reshape_{i}"))
            with tf.name_scope("Concatenate"):
                all_anchors = tf.concat(anchors, axis=0, name="concat")
        with tf.name_scope("Postprocessor"):
            scale = (
                tf.reduce_max(pre, axis=[1, 2, 3], name="image_max") + 32.0
            )  # reads Preprocessor (-> Input)
            boxes = tf.squeeze(box_loc, 2) + all_anchors[tf.newaxis] / scale
            scores = tf.reduce_max(tf.sigmoid(box_conf), axis=2, name="scores")
            top = tf.math.top_k(scores, k=10, name="TopKV2")
            picked = tf.gather(boxes, top.indices, batch_dims=1, name="boxes")
            kept = tf.reduce_sum(top.values, axis=1, name="keep_me")
        tf.identity(picked, name="detection_boxes")
        tf.identity(top.values, name="detection_scores")
        tf.identity(top.indices, name="detection_classes")  # reads Postprocessor/TopKV2:1
        tf.identity(kept, name="num_detections")
        outputs = ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
        return _freeze(graph, outputs)


def maskrcnn_graph() -> bytes:
    """Mask R-CNN-like: fpn upsampling, rpn heads, ROI (Unpack ports), roi_align, detection."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, 16, 16, 3], name="input_image")
        meta = tf.compat.v1.placeholder(tf.float32, [1, 10], name="input_image_meta")
        c1 = tf.nn.relu(_conv(tf, image, "conv1", 4), name="activation_1/Relu")  # 16x16
        c2 = tf.nn.relu(_conv(tf, c1, "conv2", 4, 2), name="activation_2/Relu")  # 8x8
        with tf.name_scope("fpn_p5upsampled"):
            up = tf.compat.v1.image.resize_nearest_neighbor(c2, [16, 16])
        p4 = tf.add(c1, up, name="fpn_p4add/add")
        with tf.compat.v1.variable_scope("rpn_class"):
            logits = tf.reshape(_conv(tf, p4, "conv", 2), [1, -1, 2])
            rpn_class = tf.concat([logits, logits], axis=1, name="concat")
        with tf.compat.v1.variable_scope("rpn_bbox"):
            deltas = tf.reshape(_conv(tf, p4, "conv", 4), [1, -1, 4])
            rpn_bbox = tf.concat([deltas, deltas], axis=1, name="concat")
        with tf.name_scope("ROI"):
            scores = rpn_class[:, :, 1]
            top = tf.math.top_k(scores, k=8, name="TopKV2")
            boxes = tf.gather(rpn_bbox, top.indices, batch_dims=1)
            y, x = tf.unstack(boxes[..., :2], axis=2, name="unstack")  # ROI/unstack:1 used
            rois = tf.stack([y, x, y + 1.0, x + 1.0], axis=2, name="packed")
        with tf.name_scope("roi_align_classifier"):
            level = tf.reduce_mean(meta) + tf.reduce_mean(c1) + tf.reduce_mean(up)
            pooled = tf.reshape(rois * level, [1, 8, 1, 1, 4], name="pooled")
        with tf.compat.v1.variable_scope("mrcnn_class_conv1"):
            flat = tf.reshape(pooled, [8, 1, 1, 4], name="Reshape")
            conv = _conv(tf, flat, "inner", 6)
            td = tf.reshape(conv, [1, 8, 6], name="Reshape_1")
        probs = tf.nn.softmax(td, name="mrcnn_class/Softmax")
        with tf.name_scope("mrcnn_detection"):
            det = tf.concat([rois, probs[..., :4]], axis=2, name="concat")
            det = tf.identity(det * tf.reduce_mean(meta), name="out")
        tf.identity(det, name="output_detections")
        tf.identity(rois, name="output_rois")
        tf.identity(top.indices, name="output_roi_indices")  # reads ROI/TopKV2:1
        tf.identity(x, name="output_roi_x")  # reads ROI/unstack:1
        outputs = ["output_detections", "output_rois", "output_roi_indices", "output_roi_x"]
        return _freeze(graph, outputs)


def random_input(shape: list[int]) -> np.ndarray:
    """Deterministic test input."""
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)
