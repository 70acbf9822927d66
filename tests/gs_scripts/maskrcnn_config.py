# A Mask R-CNN preprocessing config in the style of TensorRT's sampleUffMaskRCNN config.py,
# written for the tests: it must run unmodified under `surgery preprocess`.
import graphsurgeon as gs
import tensorflow as tf

fpn_p5upsampled = gs.create_plugin_node(
    "fpn_p5upsampled", op="ResizeNearest_TRT", dtype=tf.float32, scale=2.0
)
roi = gs.create_plugin_node(
    "ROI",
    op="ProposalLayer_TRT",
    prenms_topk=16,
    keep_topk=8,
    iou_threshold=0.7,
    image_size=[3, 16, 16],
)
roi_align_classifier = gs.create_plugin_node(
    "roi_align_classifier", op="PyramidROIAlign_TRT", pooled_size=7
)
mrcnn_detection = gs.create_plugin_node(
    "mrcnn_detection",
    op="DetectionLayer_TRT",
    num_classes=6,
    keep_topk=8,
    score_threshold=0.7,
    iou_threshold=0.3,
)

namespace_plugin_map = {
    "fpn_p5upsampled": fpn_p5upsampled,
    "ROI": roi,
    "roi_align_classifier": roi_align_classifier,
    "mrcnn_detection": mrcnn_detection,
}

timedistributed_remove_list = [
    "mrcnn_class_conv1/Reshape/shape",
    "mrcnn_class_conv1/Reshape",
    "mrcnn_class_conv1/Reshape_1/shape",
    "mrcnn_class_conv1/Reshape_1",
]

timedistributed_connect_pairs = [
    ("roi_align_classifier", "mrcnn_class_conv1/inner/Conv2D"),
    ("mrcnn_class_conv1/inner/Conv2D", "mrcnn_class/Softmax"),
]


def connect(dynamic_graph, connections_list):
    # Raw NodeDef edits, as the original sample did them.
    for node_a_name, node_b_name in connections_list:
        if node_a_name not in dynamic_graph.node_map[node_b_name].input:
            dynamic_graph.node_map[node_b_name].input.insert(0, node_a_name)


def remove(dynamic_graph, remove_list):
    for node_name in remove_list:
        dynamic_graph.remove(dynamic_graph.node_map[node_name])


def preprocess(dynamic_graph):
    dynamic_graph.collapse_namespaces(namespace_plugin_map, unique_inputs=True)
    # Drop the Keras output heads but one, which checks the `ROI/unstack:1` consumer.
    outputs = [n for n in dynamic_graph.graph_outputs if n.name != "output_roi_x"]
    dynamic_graph.remove(outputs, remove_exclusive_dependencies=False)
    remove(dynamic_graph, timedistributed_remove_list)
    connect(dynamic_graph, timedistributed_connect_pairs)
    dynamic_graph.forward_inputs(dynamic_graph.find_nodes_by_name("read"))
