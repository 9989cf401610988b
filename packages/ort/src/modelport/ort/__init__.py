"""modelport's ort backend (imports no toolchain: it loads inside the methods)."""
