"""The ONNX Runtime backends (entry point group ``modelport.backends``): plain data, nothing here imports onnxruntime."""

from modelport.common.backends import THREADS, Backend

_M = "modelport.ort"
_TUNING = {
    "onnxruntime.intra_op_threads": THREADS,
    "onnxruntime.graph_optimization_level": ("basic", "extended", "all"),
    "onnxruntime.execution_mode": ("sequential", "parallel"),
    "onnxruntime.inter_op_threads": THREADS,
}
_NUMERIC = ("onnxruntime.graph_optimization_level",)
BACKENDS = [
    Backend(
        key="onnx-source",
        display="ONNX FP32 (source)",
        env="tf-onnx",
        precision="fp32",
        rank=1,
        runtime=f"{_M}.runtime:OnnxSourceRuntime",
        source=True,
    ),
    Backend(
        key="onnx",
        display="ONNX FP32",
        env="tf-onnx",
        precision="fp32",
        rank=10,
        runtime=f"{_M}.runtime:OnnxFp32Runtime",
        # The source -> ONNX step (the TFLite converters' race; an ONNX source made static NCHW) is the
        # tflite package's: named here as a string for the convert registry, not imported.
        target="modelport.tflite.convert:TARGET",
        batch_twin=f"{_M}.runtime:OnnxFp32DynamicRuntime",
        depth=True,
        tuning=_TUNING,
        numeric=_NUMERIC,
    ),
    Backend(
        key="onnx-int8",
        display="ONNX INT8",
        env="tf-onnx",
        precision="int8",
        rank=11,
        runtime=f"{_M}.runtime:OnnxInt8Runtime",
        target=f"{_M}.recover:TARGET",
        fp32_twin="onnx",
        batch_twin=f"{_M}.runtime:OnnxInt8DynamicRuntime",
        depth=True,
        tuning=_TUNING,
        numeric=_NUMERIC,
        analysis=f"{_M}.analyze:TARGET",
    ),
]
