"""What ops and plugins exist: op registries (TensorFlow's, ONNX's), the plugin catalog and its
schemas, the TensorRT targets, and the structural checks that read them."""
