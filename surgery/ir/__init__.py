"""The graph IR and model files: nodes, ports, control edges, attributes, tensors; TensorFlow
GraphDef and ONNX ModelProto loaded into it and saved from it."""
