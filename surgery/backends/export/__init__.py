"""ONNX export internals: plugin-node fields, TensorFlow stand-ins for plugins and weights, the
tf2onnx run, the weights back as initializers, the streamed file."""
