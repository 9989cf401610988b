"""modelport's OpenVINO backend (imports no toolchain: openvino/nncf load inside the methods)."""
