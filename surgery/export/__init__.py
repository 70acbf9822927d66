"""ONNX export internals: plugin-node fields, TensorFlow stand-ins, the tf2onnx run."""
