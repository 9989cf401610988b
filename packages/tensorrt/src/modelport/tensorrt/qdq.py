"""`convert onnx-int8-tensorrt`: the QDQ model TensorRT builds its INT8 engine from.

Symmetric int8 activations and weights with float biases: the only QDQ form TensorRT's
explicit quantization accepts. Made by onnxruntime.quantization (modelport.convert.qdq) in
the env that has onnxruntime and the calibration set (tf-onnx), verified there on onnxruntime;
TensorRT's own INT8 build is judged (and recovered) on its side (convert.py, recover.py).
Below the [accuracy] floors it goes through the same search as ONNX INT8 (common/recovery.py):
the QDQ methods (calibrators, fast bias correction), then float layers. Its variants are not timed
here: onnxruntime's speed on a symmetric model says nothing about TensorRT's engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.common.config import QuantizationConfig
from modelport.common.context import StepContext
from modelport.common.recovery import Variant
from modelport.convert.qdq import SOURCE, VERIFIED_BY, Quantizer, calibration_for, qdq_knobs, with_method
from modelport.convert.recover import QdqKnobs, analysed, ranked


class SymmetricQuantizer(Quantizer):
    def settings(self, q: QuantizationConfig) -> dict[str, Any]:
        return q.quantizer_settings() | {
            "activation_type": "int8",
            "weight_type": "int8",
            "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        }

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        """``output`` = the configured symmetric QDQ model, or the variant the search kept."""
        return SymmetricKnobs(ctx, force).run()


class SymmetricKnobs(QdqKnobs):
    """The symmetric QDQ model's search: ONNX INT8's methods and float layers on the symmetric settings,
    ranked by onnxruntime's per-layer analysis (the runtime that verifies it); not timed (``runtimes`` None)."""

    key, display = "onnx-int8-tensorrt", "ONNX INT8 for TensorRT"
    qdq_role = "model"
    untimed = "timed as its TensorRT engine (onnxruntime's speed on the symmetric model says nothing about it)"
    outputs = {"model": "onnx/model.int8.sym.onnx"}
    files = {"model": "onnx/variants/int8-sym-{id}.onnx"}
    sources = {"onnx": SOURCE}

    def space(self) -> tuple[list[str], list[str]]:
        return qdq_knobs(self.ctx.config.quantization)  # modelport.convert.qdq.METHODS

    def make(self, method: str, float_layers: list[str], files: dict[str, str]) -> None:
        settings = with_method(QDQ.settings(self.ctx.config.quantization), method) | {"nodes_to_exclude": float_layers}
        QDQ.quantize(self.ctx, self.force, files["model"], settings, gate=False)

    def options(self) -> dict[str, Any]:
        q = self.ctx.config.quantization
        return QDQ.settings(q) | {"calibration_images": len(calibration_for(self.ctx, q.calibrate_method))}

    def worst_layers(self, variant: Variant) -> list[str]:
        # onnxruntime's analysis of a QDQ model, this one's file: its own cache name beside ONNX INT8's variants
        return ranked(analysed(self.ctx, VERIFIED_BY, {"model": variant.files["model"]}, f"sym-{variant.id}"))


QDQ = SymmetricQuantizer(SymmetricKnobs.outputs["model"])
SymmetricKnobs.builder = QDQ
