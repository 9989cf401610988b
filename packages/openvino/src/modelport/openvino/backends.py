"""The OpenVINO backends (entry point group ``modelport.backends``): plain data, nothing here imports OpenVINO."""

from modelport.common.backends import Backend

_M = "modelport.openvino"
BACKENDS = [
    Backend("openvino-fp32", "OpenVINO FP32", "openvino", "fp32", 50, f"{_M}.runtime:OpenvinoFp32Runtime", f"{_M}.convert:FP32"),
    Backend("openvino-int8", "OpenVINO INT8", "openvino", "int8", 51, f"{_M}.runtime:OpenvinoInt8Runtime", f"{_M}.convert:INT8",
            fp32_twin="openvino-fp32"),
]
