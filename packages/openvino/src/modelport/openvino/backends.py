"""The OpenVINO backends (entry point group ``modelport.backends``): plain data, nothing here imports OpenVINO."""

from modelport.common.backends import THREADS, Backend

_M = "modelport.openvino"
# compile_model properties as [openvino] keys. Streams: with one synchronous request, more than one
# splits the threads between idle streams; the search measures it rather than assuming.
_TUNING = {
    "openvino.threads": THREADS,
    "openvino.performance_hint": ("latency", "throughput"),
    "openvino.num_streams": (1, 2),
    "openvino.cpu_pinning": (True, False),
}
BACKENDS = [
    Backend(
        key="openvino-fp32",
        display="OpenVINO FP32",
        env="openvino",
        precision="fp32",
        rank=50,
        runtime=f"{_M}.runtime:OpenvinoFp32Runtime",
        target=f"{_M}.convert:FP32",
        depth=True,
        tuning=_TUNING,
    ),
    Backend(
        key="openvino-int8",
        display="OpenVINO INT8",
        env="openvino",
        precision="int8",
        rank=51,
        runtime=f"{_M}.runtime:OpenvinoInt8Runtime",
        target=f"{_M}.recover:TARGET",
        fp32_twin="openvino-fp32",
        depth=True,
        tuning=_TUNING,
        analysis=f"{_M}.analyze:TARGET",
    ),
]
