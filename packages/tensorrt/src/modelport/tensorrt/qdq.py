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

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from modelport.common import recovery
from modelport.common.artifacts import file_inputs
from modelport.common.config import QuantizationConfig
from modelport.common.context import StepContext
from modelport.common.recovery import Variant, variant_id
from modelport.common.reference import REFERENCE
from modelport.convert.qdq import SOURCE, VERIFIED_BY, Quantizer, calibration_for, qdq_knobs, with_method
from modelport.convert.recover import QdqCandidates, analysed, ranked


class SymmetricQuantizer(Quantizer):
    def settings(self, q: QuantizationConfig) -> dict[str, Any]:
        return q.quantizer_settings() | {
            "activation_type": "int8",
            "weight_type": "int8",
            "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        }

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        """``output`` = the configured symmetric QDQ model, or the variant the search kept."""
        calib = ctx.calibration
        calib.validate()
        q = ctx.config.quantization
        inputs = {
            "onnx": ctx.store.path(SOURCE),
            "reference": ctx.store.path(REFERENCE),
            **file_inputs("calibration", calib.paths),
            **file_inputs("image", ctx.eval_images),
        }
        recovery.produce(
            ctx,
            SymmetricKnobs(ctx, force, self),
            {"model": self.output},
            inputs=inputs,
            tool_version=self.tool_version(),
            options=self.settings(q) | {"calibration_images": len(calibration_for(ctx, q.calibrate_method))},
            force=force,
        )
        return [ctx.store.path(self.output)]


class SymmetricKnobs(QdqCandidates):
    """The symmetric QDQ model's search: ONNX INT8's methods and float layers on the symmetric settings,
    ranked by onnxruntime's per-layer analysis (the runtime that verifies it)."""

    key, display = "onnx-int8-tensorrt", "ONNX INT8 for TensorRT"
    qdq_role = "model"
    untimed = "timed as its TensorRT engine (onnxruntime's speed on the symmetric model says nothing about it)"

    def __init__(self, ctx: StepContext, force: bool, quantizer: SymmetricQuantizer):
        self.ctx, self.force, self.quantizer = ctx, force, quantizer
        self.methods, self.float_layers = qdq_knobs(ctx.config.quantization)

    def build(self, method: str, float_layers: list[str]) -> Variant:
        vid = variant_id(method, float_layers)
        rel = f"onnx/variants/int8-sym-{vid}.onnx"
        settings = with_method(self.quantizer.settings(self.ctx.config.quantization), method) | {"nodes_to_exclude": float_layers}
        (path,) = self.quantizer.quantize(self.ctx, self.force, rel, settings, gate=False)
        manifest = self.ctx.store.read_manifest(rel) or {}
        return Variant(
            vid,
            method,
            float_layers,
            {"model": rel},
            recovery.brief(manifest.get("extra", {}).get("agreement")),
            size_bytes=path.stat().st_size,
            build_seconds=manifest.get("seconds"),
        )

    def worst_layers(self, variant: Variant) -> list[str]:
        # onnxruntime's analysis of a QDQ model, this one's file: its own cache name beside ONNX INT8's variants
        return ranked(analysed(self.ctx, VERIFIED_BY, {"model": variant.files["model"]}, f"sym-{variant.id}"))

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        return contextlib.nullcontext(None)


QDQ = SymmetricQuantizer("onnx/model.int8.sym.onnx")
