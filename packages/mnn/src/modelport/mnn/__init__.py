"""modelport's MNN backend (imports no toolchain: MNN loads inside the methods, and converts in a child process)."""
