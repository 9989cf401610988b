"""modelport's ncnn backend (imports no toolchain: it loads inside the methods)."""
