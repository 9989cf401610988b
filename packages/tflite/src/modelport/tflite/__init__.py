"""modelport's tflite backend (imports no toolchain: it loads inside the methods)."""
