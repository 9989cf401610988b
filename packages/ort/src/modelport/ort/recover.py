"""ONNX INT8 recovery knobs: onnxruntime's calibration methods and ``nodes_to_exclude`` (common/recovery.py searches).

``TARGET`` is `convert onnx-int8` (the descriptor's target): the configured QDQ model, or the variant the search keeps.
"""

from __future__ import annotations

from typing import Any

from modelport.convert.qdq import SOURCE, calibration_for, qdq_knobs, with_method
from modelport.convert.recover import QdqKnobs, Searched

from .int8 import ORT
from .runtime import OnnxFp32Runtime, OnnxInt8Runtime


class OnnxKnobs(QdqKnobs):
    key, display = "onnx-int8", "ONNX INT8"
    qdq_role = "model"
    outputs = {"model": ORT.output}
    files = {"model": "onnx/variants/int8-{id}.onnx"}
    runtimes = (OnnxInt8Runtime, OnnxFp32Runtime)
    sources = {"onnx": SOURCE}
    builder = ORT

    def space(self) -> tuple[list[str], list[str]]:
        return qdq_knobs(self.ctx.config.quantization)  # the methods are modelport.convert.qdq.METHODS

    def make(self, method: str, float_layers: list[str], files: dict[str, str]) -> None:
        settings = with_method(self.ctx.config.quantization.quantizer_settings(), method) | {"nodes_to_exclude": float_layers}
        ORT.quantize(self.ctx, self.force, files["model"], settings, gate=False)

    def options(self) -> dict[str, Any]:
        q = self.ctx.config.quantization
        return q.quantizer_settings() | {"calibration_images": len(calibration_for(self.ctx, q.calibrate_method))}


TARGET = Searched(ORT, OnnxKnobs)
