"""The NCNN backends (entry point group ``modelport.backends``): plain data, nothing here imports ncnn."""

from modelport.common.backends import THREADS, Backend

_M = "modelport.ncnn"
# lightmode is not here: it frees intermediate blobs early (memory, not speed) and modelport
# does not expose it as a setting.
_TUNING = {
    "ncnn.threads": THREADS,
    "ncnn.packing_layout": (True, False),
    "ncnn.winograd": (True, False),
    "ncnn.sgemm": (True, False),
    "ncnn.fp16_storage": (False, True),
    "ncnn.fp16_packed": (False, True),
    "ncnn.fp16_arithmetic": (False, True),
}
_NUMERIC = ("ncnn.fp16_storage", "ncnn.fp16_packed", "ncnn.fp16_arithmetic")
BACKENDS = [
    Backend(
        key="ncnn",
        display="NCNN FP32",
        env="ncnn",
        precision="fp32",
        rank=30,
        runtime=f"{_M}.runtime:NcnnRuntime",
        target=f"{_M}.convert:TARGET",
        depth=True,
        tuning=_TUNING,
        numeric=_NUMERIC,
    ),
    Backend(
        key="ncnn-int8",
        display="NCNN INT8",
        env="ncnn",
        precision="int8",
        rank=31,
        runtime=f"{_M}.runtime:NcnnInt8Runtime",
        target=f"{_M}.recover:TARGET",
        fp32_twin="ncnn",
        depth=True,
        tuning=_TUNING,
        numeric=_NUMERIC,
        analysis=f"{_M}.analyze:TARGET",
    ),
]
