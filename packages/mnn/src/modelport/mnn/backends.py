"""The MNN backends (entry point group ``modelport.backends``): plain data, nothing here imports MNN."""

from modelport.common.backends import THREADS, Backend

_M = "modelport.mnn"
# The session's schedule as [mnn] keys. Precision can change the outputs (fp16/bf16 where the CPU has them):
# a non-default one is kept only above the floors.
_TUNING = {
    "mnn.threads": THREADS,
    "mnn.precision": ("normal", "low"),
    "mnn.memory": ("normal", "low"),
    "mnn.power": ("normal", "high"),
}
_NUMERIC = ("mnn.precision",)
BACKENDS = [
    Backend(
        key="mnn-fp32",
        display="MNN FP32",
        env="mnn",
        precision="fp32",
        rank=55,
        runtime=f"{_M}.runtime:MnnFp32Runtime",
        target=f"{_M}.convert:FP32",
        depth=True,
        tuning=_TUNING,
        numeric=_NUMERIC,
    ),
    Backend(
        key="mnn-int8",
        display="MNN INT8",
        env="mnn",
        precision="int8",
        rank=56,
        runtime=f"{_M}.runtime:MnnInt8Runtime",
        target=f"{_M}.recover:TARGET",
        fp32_twin="mnn-fp32",
        # A default row that may fail (envs/mnn [steps] may_fail): train_quant misses the INT8 floors on the shipped
        # calibration crops, and the row says so with its numbers.
        analysis=f"{_M}.analyze:TARGET",
        depth=True,
        tuning=_TUNING,
        numeric=_NUMERIC,
    ),
]
