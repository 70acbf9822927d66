"""Where a rewritten graph goes: ONNX export, TensorRT builds and runs, validation against
TensorFlow or onnxruntime, plugin dumps, and what a target supports."""
