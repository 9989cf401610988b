"""Every conversion target, by name, imported only when used.

A target is a module (``"pkg.mod"``) or an object in one (``"pkg.mod:NAME"``) with
``run(ctx, force) -> list[Path]``, ``unavailable_reason() -> str | None`` and ``tool_version() -> str``.
"""

from __future__ import annotations

from modelport.common.doctor import Check
from modelport.common.registry import load

TARGETS: dict[str, str] = {
    "reference": "modelport.convert.reference",
    "onnx": "modelport.convert.tflite_onnx",
    "onnx-int8": "modelport.convert.onnx_int8:ORT",
    "onnx-int8-tensorrt": "modelport.convert.onnx_int8:TENSORRT",
    "onnx-dynamic": "modelport.convert.onnx_dynamic",  # batch sweeps only; static model stays the default
    "tflite-dynamic": "modelport.convert.tflite_dynamic",  # batch sweeps only; the reference stays source/
    "ncnn": "modelport.convert.ncnn",
    "ncnn-int8": "modelport.convert.ncnn_int8",
    "tensorrt-fp32": "modelport.convert.tensorrt:FP32",
    "tensorrt-fp16": "modelport.convert.tensorrt:FP16",
    "tensorrt-int8": "modelport.convert.tensorrt:INT8",
}


def target_module(name: str):
    return load(TARGETS, name, "target")


def doctor_rows() -> list[Check]:
    rows = []
    for name in TARGETS:
        mod = target_module(name)
        reason = mod.unavailable_reason()
        rows.append(Check("convert", name, reason is None, reason or mod.tool_version()))
    return rows
