"""The TFLite backend (entry point group ``modelport.backends``): plain data, nothing here imports TensorFlow."""

from modelport.common.backends import THREADS, Backend

_M = "modelport.tflite"
BACKENDS = [
    Backend(
        key="tflite",
        display="TFLite FP32",
        env="tf-onnx",
        precision="fp32",
        rank=0,
        runtime=f"{_M}.runtime:TfliteRuntime",
        source=True,
        batch_twin=f"{_M}.runtime:TfliteDynamicRuntime",
        depth=True,
        tuning={"tflite.threads": THREADS, "tflite.xnnpack": (True, False)},
    ),
]
