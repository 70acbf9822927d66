# An SSD preprocessing config in the style of TensorRT's sampleUffSSD config.py, written for the
# tests: it must run unmodified under `surgery preprocess`.
import graphsurgeon as gs
import tensorflow as tf

Input = gs.create_plugin_node(
    name="Input", op="Placeholder", dtype=tf.float32, shape=[1, 3, 32, 32]
)
PriorBox = gs.create_plugin_node(
    name="GridAnchor",
    op="GridAnchor_TRT",
    numLayers=2,
    minSize=0.2,
    maxSize=0.95,
    aspectRatios=[1.0, 2.0, 0.5],
    variance=[0.1, 0.1, 0.2, 0.2],
    featureMapShapes=[16, 8],
)
NMS = gs.create_plugin_node(
    name="NMS",
    op="NMS_TRT",
    shareLocation=True,
    varianceEncodedInTarget=False,
    backgroundLabelId=0,
    confidenceThreshold=1e-8,
    nmsThreshold=0.6,
    topK=10,
    keepTopK=10,
    numClasses=3,
    inputOrder=[0, 2, 1],
    confSigmoid=True,
    isNormalized=True,
)
concat_priorbox = gs.create_node(name="concat_priorbox", op="ConcatV2", dtype=tf.float32, axis=2)
concat_box_loc = gs.create_plugin_node(
    "concat_box_loc", op="FlattenConcat_TRT", dtype=tf.float32, axis=1, ignoreBatch=0
)
concat_box_conf = gs.create_plugin_node(
    "concat_box_conf", op="FlattenConcat_TRT", dtype=tf.float32, axis=1, ignoreBatch=0
)

namespace_plugin_map = {
    "MultipleGridAnchorGenerator": PriorBox,
    "Postprocessor": NMS,
    "Preprocessor": Input,
    "ToFloat": Input,
    "image_tensor": Input,
    "MultipleGridAnchorGenerator/Concatenate": concat_priorbox,
    "concat": concat_box_loc,
    "concat_1": concat_box_conf,
}


def preprocess(dynamic_graph):
    # Weights arrive as Const -> Identity(read): bypass the reads.
    dynamic_graph.forward_inputs(dynamic_graph.find_nodes_by_name("read"))
    # Collapse, keeping the score sum (and its axis constant) as ordinary nodes.
    keep = dynamic_graph.find_nodes_by_path(
        ["Postprocessor/keep_me", "Postprocessor/keep_me/reduction_indices"]
    )
    dynamic_graph.collapse_namespaces(namespace_plugin_map, exclude_nodes=keep)
    # NMS reads exactly three inputs: disconnect the Input it picked up from the Preprocessor.
    dynamic_graph.find_nodes_by_op("NMS_TRT")[0].input.remove("Input")
