"""`convert tensorrt-fp32`: ONNX -> tensorrt/fp32.engine (see modelport.convert.tensorrt)."""

from __future__ import annotations

from pathlib import Path

from modelport.common.context import StepContext

from .tensorrt import build, tool_version, unavailable_reason

__all__ = ["run", "tool_version", "unavailable_reason"]


def run(ctx: StepContext, force: bool) -> list[Path]:
    return build(ctx, "fp32", force)
