"""modelport's Caffe source (imports no toolchain: OpenCV and caffe2onnx load inside the functions)."""
