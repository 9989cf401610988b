"""TensorRT INT8 recovery knobs (common/recovery.py searches), on the explicit-quantization path.

In a strongly typed network TensorRT takes each layer's precision from the Q/DQ nodes around it:
a layer left without them runs in float. So the per-layer precision knob is the symmetric QDQ
model's ``nodes_to_exclude`` (the layer and its consumers, as for onnxruntime), and the calibration
knob is the method that QDQ model's scales come from. Each variant is a QDQ model verified on
onnxruntime's side and an engine verified on the GPU; the engines are timed with the FP32 one.
Entropy calibration (``[tensorrt] int8_mode = "calibrate"``) keeps its single configured build.
``TARGET`` is `convert tensorrt-int8` (the descriptor's target).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.common.context import StepContext
from modelport.convert.qdq import SOURCE, calibration_for, qdq_knobs, with_method
from modelport.convert.recover import QdqKnobs, Searched

from . import cuda
from .convert import ENGINES, INT8, int8_plan
from .qdq import QDQ
from .runtime import TensorrtFp32Runtime, TensorrtInt8Runtime


class TensorrtKnobs(QdqKnobs):
    key, display = "tensorrt-int8", "TensorRT INT8"
    qdq_role = "qdq"  # the engine is built from it
    outputs = {"engine": ENGINES["int8"]}
    files = {"engine": "tensorrt/variants/int8-{id}.engine", "qdq": "onnx/variants/int8-sym-{id}.onnx"}
    sized = ("engine",)
    runtimes = (TensorrtInt8Runtime, TensorrtFp32Runtime)
    sources = {"onnx": SOURCE}
    builder = INT8

    def space(self) -> tuple[list[str], list[str]]:
        return qdq_knobs(self.ctx.config.quantization)  # the symmetric QDQ model's; modelport.convert.qdq.METHODS

    def make(self, method: str, float_layers: list[str], files: dict[str, str]) -> None:
        store = self.ctx.store
        settings = with_method(QDQ.settings(self.ctx.config.quantization), method) | {"nodes_to_exclude": float_layers}
        QDQ.quantize(self.ctx, self.force, files["qdq"], settings, gate=False)
        INT8.build(self.ctx, self.force, qdq=store.path(files["qdq"]), engine_rel=files["engine"], gate=False)

    def inputs(self) -> dict[str, Path]:
        cuda.require(self.ctx.config.tensorrt.device)  # before the calibration set is read
        return super().inputs()

    def options(self) -> dict[str, Any]:
        tcfg, q = self.ctx.config.tensorrt, self.ctx.config.quantization
        gpu = cuda.require(tcfg.device)
        return QDQ.settings(q) | {
            "calibration_images": len(calibration_for(self.ctx, q.calibrate_method)),
            "gpu": gpu.name,
            "compute_capability": gpu.compute_capability,
            "workspace_mb": tcfg.workspace_mb,
            "builder_optimization_level": tcfg.builder_optimization_level,
        }


def searches(ctx: StepContext) -> bool:
    """Only the explicit-quantization path has a search space; entropy calibration is one configured build."""
    return ctx.config.tensorrt.int8_mode != "calibrate" and int8_plan(ctx).mode == "qdq"


TARGET = Searched(INT8, TensorrtKnobs, searches)
