"""ONNX INT8 recovery knobs: onnxruntime's calibration methods and ``nodes_to_exclude`` (common/recovery.py searches)."""

from __future__ import annotations

from modelport.common import recovery
from modelport.common.artifacts import file_inputs
from modelport.common.context import StepContext
from modelport.common.recovery import Variant, variant_id
from modelport.common.reference import REFERENCE
from modelport.runtime.onnxruntime import OnnxFp32Runtime, OnnxInt8Runtime

from .onnx_int8 import ORT, SOURCE, calibration_for
from .recover import QdqCandidates, runtime_timers

# onnxruntime's calibration methods, plus percentile at a wider clip than its 99.999 default:
# on MobileNetV2 / the shipped photos cosine min 0.968 (99.999) -> 0.977 (99.9999); 99.99 loses (0.948).
METHODS = ("minmax", "percentile", "entropy", "percentile@99.9999")


def method_settings(method: str) -> dict:
    """``percentile@P`` -> percentile with CalibPercentile P; the others as onnxruntime names them."""
    name, _, pct = method.partition("@")
    return {"calibrate_method": name, **({"extra_options": {"CalibPercentile": float(pct)}} if pct else {})}


def qdq_knobs(q) -> tuple[list[str], list[str]]:
    """A QDQ model's search knobs from [quantization]: calibration methods (the configured one first), float layers."""
    return [q.calibrate_method, *(m for m in METHODS if m != q.calibrate_method)], list(q.nodes_to_exclude)


class OnnxBackend(QdqCandidates):
    key, display = "onnx-int8", "ONNX INT8"
    qdq_role = "model"

    def __init__(self, ctx: StepContext, force: bool):
        self.ctx, self.force = ctx, force
        self.methods, self.float_layers = qdq_knobs(ctx.config.quantization)

    def build(self, method: str, float_layers: list[str]) -> Variant:
        vid = variant_id(method, float_layers)
        rel = f"onnx/variants/int8-{vid}.onnx"
        settings = (
            self.ctx.config.quantization.quantizer_settings() | method_settings(method) | {"nodes_to_exclude": float_layers}
        )
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

    def timers(self, variants: list[Variant]):
        cfg, store = self.ctx.config, self.ctx.store
        runtimes = {v.id: OnnxInt8Runtime(cfg, {"model": store.path(v.files["model"])}) for v in variants}
        return runtime_timers(self.ctx, {**runtimes, "fp32": OnnxFp32Runtime.from_store(store, cfg)})


def recover(ctx: StepContext, force: bool, output: str):
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
        OnnxBackend(ctx, force),
        {"model": output},
        inputs=inputs,
        tool_version=ORT.tool_version(),
        options=ctx.config.quantization.quantizer_settings()
        | {"calibration_images": len(calibration_for(ctx, ctx.config.quantization.calibrate_method))},
        force=force,
    )
    return [store.path(output)]
