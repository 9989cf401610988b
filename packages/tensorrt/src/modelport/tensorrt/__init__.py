"""modelport's tensorrt backend (imports no toolchain: it loads inside the methods)."""
