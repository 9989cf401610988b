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
    # Weights stored as INT8 (MNNConvert --weightQuantBits=8, MNN's "w8"), compute in float: a quarter of the
    # file, not an INT8 engine. Its key is not "-int8" and its precision names both halves so no one reads it as
    # one; "int8" in the precision holds its rounded weights to the INT8 floors (the float floors mean every
    # weight kept). No FP32 twin: the INT8-vs-FP32 comparisons are for INT8 kernels.
    Backend(
        key="mnn-w8",
        display="MNN INT8 weights (FP32 compute)",
        env="mnn",
        precision="int8-weights+fp32",
        rank=57,
        runtime=f"{_M}.runtime:MnnW8Runtime",
        target=f"{_M}.convert:W8",
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
        # A row that may fail (envs/mnn [steps] may_fail): its margin over the INT8 floors is slim.
        analysis=f"{_M}.analyze:TARGET",
        depth=True,
        tuning=_TUNING,
        numeric=_NUMERIC,
    ),
]
