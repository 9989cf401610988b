"""ONNX INT8 recovery knobs: onnxruntime's calibration methods and ``nodes_to_exclude`` (common/recovery.py searches)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from modelport.common import recovery
from modelport.common.artifacts import file_inputs
from modelport.common.context import StepContext
from modelport.common.recovery import Variant, variant_id
from modelport.common.reference import REFERENCE
from modelport.convert.qdq import SOURCE, calibration_for, qdq_knobs, with_method
from modelport.convert.recover import QdqCandidates, runtime_timers

from .int8 import ORT
from .runtime import OnnxFp32Runtime, OnnxInt8Runtime


class OnnxKnobs(QdqCandidates):
    key, display = "onnx-int8", "ONNX INT8"
    qdq_role = "model"

    def __init__(self, ctx: StepContext, force: bool):
        self.ctx, self.force = ctx, force
        self.methods, self.float_layers = qdq_knobs(ctx.config.quantization)

    def build(self, method: str, float_layers: list[str]) -> Variant:
        vid = variant_id(method, float_layers)
        rel = f"onnx/variants/int8-{vid}.onnx"
        settings = with_method(self.ctx.config.quantization.quantizer_settings(), method) | {"nodes_to_exclude": float_layers}
        (path,) = ORT.quantize(self.ctx, self.force, rel, settings, gate=False)
        extra = (self.ctx.store.read_manifest(rel) or {}).get("extra", {})
        return Variant(
            vid,
            method,
            float_layers,
            {"model": rel},
            recovery.brief(extra.get("agreement")),
            size_bytes=path.stat().st_size,
            build_seconds=(self.ctx.store.read_manifest(rel) or {}).get("seconds"),
        )

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        cfg, store = self.ctx.config, self.ctx.store
        runtimes = {v.id: OnnxInt8Runtime(cfg, {"model": store.path(v.files["model"])}) for v in variants}
        return runtime_timers(self.ctx, {**runtimes, "fp32": OnnxFp32Runtime.from_store(store, cfg)})


def recover(ctx: StepContext, force: bool, output: str) -> list[Path]:
    """``output`` (onnx/model.int8.onnx) = the configured QDQ model, or the variant the search kept."""
    store, calib = ctx.store, ctx.calibration
    calib.validate()
    inputs = {
        "onnx": store.path(SOURCE),
        "reference": store.path(REFERENCE),
        **file_inputs("calibration", calib.paths),
        **file_inputs("image", ctx.eval_images),
    }
    recovery.produce(
        ctx,
        OnnxKnobs(ctx, force),
        {"model": output},
        inputs=inputs,
        tool_version=ORT.tool_version(),
        options=ctx.config.quantization.quantizer_settings()
        | {"calibration_images": len(calibration_for(ctx, ctx.config.quantization.calibrate_method))},
        force=force,
    )
    return [store.path(output)]
