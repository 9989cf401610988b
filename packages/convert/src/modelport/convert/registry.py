"""Every conversion target, by name, imported only when used.

A target module defines ``run(ctx, force) -> list[Path]`` and ``unavailable_reason() -> str | None``.
"""

from __future__ import annotations

import importlib

from modelport.common.doctor import Check

TARGETS: dict[str, str] = {
    "reference": "modelport.convert.reference",
    "onnx": "modelport.convert.tflite_onnx",
    "onnx-int8": "modelport.convert.onnx_int8",
    "tensorrt-fp32": "modelport.convert.tensorrt_fp32",
    "tensorrt-fp16": "modelport.convert.tensorrt_fp16",
    "tensorrt-int8": "modelport.convert.tensorrt_int8",
}


def target_module(name: str):
    try:
        return importlib.import_module(TARGETS[name])
    except KeyError:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}") from None


def doctor_rows() -> list[Check]:
    rows = []
    for name in TARGETS:
        mod = target_module(name)
        reason = mod.unavailable_reason()
        rows.append(Check("convert", name, reason is None, reason or mod.tool_version()))
    return rows
