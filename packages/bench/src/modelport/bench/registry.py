"""Every runtime modelport knows, by key, imported only when used."""

from __future__ import annotations

from modelport.common.doctor import Check
from modelport.common.registry import load

RUNTIMES: dict[str, str] = {
    "tflite": "modelport.bench.runtimes.tflite:TfliteRuntime",
    "onnx-source": "modelport.bench.runtimes.onnxruntime:OnnxSourceRuntime",
    "onnx": "modelport.bench.runtimes.onnxruntime:OnnxFp32Runtime",
    "onnx-int8": "modelport.bench.runtimes.onnxruntime:OnnxInt8Runtime",
    "ncnn": "modelport.bench.runtimes.ncnn:NcnnRuntime",
    "ncnn-int8": "modelport.bench.runtimes.ncnn:NcnnInt8Runtime",
    "tensorrt-fp32": "modelport.bench.runtimes.tensorrt:TensorrtFp32Runtime",
    "tensorrt-fp16": "modelport.bench.runtimes.tensorrt:TensorrtFp16Runtime",
    "tensorrt-int8": "modelport.bench.runtimes.tensorrt:TensorrtInt8Runtime",
}


SOURCE = "source"  # `bench source`: whichever of the two runs this source model
SOURCE_KEYS = ("tflite", "onnx-source")  # the source model's own row: the reference of every other row


def source_key(contract) -> str:
    """The runtime key of the source model itself (the reference row)."""
    return "onnx-source" if contract is not None and contract.kind == "onnx" else "tflite"


def runtime_class(key: str):
    return load(RUNTIMES, key, "backend")


def doctor_rows() -> list[Check]:
    rows = []
    for key in RUNTIMES:
        cls = runtime_class(key)
        reason = cls.unavailable_reason()
        rows.append(Check("runtime", key, reason is None, reason or f"{cls.backend} {cls.version()}"))
    return rows
