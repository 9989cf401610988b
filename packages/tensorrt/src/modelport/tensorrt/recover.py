"""TensorRT INT8 recovery knobs (common/recovery.py searches), on the explicit-quantization path.

In a strongly typed network TensorRT takes each layer's precision from the Q/DQ nodes around it:
a layer left without them runs in float. So the per-layer precision knob is the symmetric QDQ
model's ``nodes_to_exclude`` (the layer and its consumers, as for onnxruntime), and the calibration
knob is the method that QDQ model's scales come from. Each variant is a QDQ model verified on
onnxruntime's side and an engine verified on the GPU; the engines are timed with the FP32 one.
Entropy calibration (``[tensorrt] int8_mode = "calibrate"``) keeps its single configured build.
"""

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

from . import cuda
from .convert import ENGINES, INT8
from .qdq import QDQ
from .runtime import TensorrtFp32Runtime, TensorrtInt8Runtime


class TensorrtKnobs(QdqCandidates):
    key, display = "tensorrt-int8", "TensorRT INT8"
    qdq_role = "qdq"  # the engine is built from it

    def __init__(self, ctx: StepContext, force: bool):
        self.ctx, self.force = ctx, force
        self.methods, self.float_layers = qdq_knobs(ctx.config.quantization)  # the symmetric QDQ model's

    def build(self, method: str, float_layers: list[str]) -> Variant:
        store = self.ctx.store
        vid = variant_id(method, float_layers)
        qdq = f"onnx/variants/int8-sym-{vid}.onnx"
        settings = with_method(QDQ.settings(self.ctx.config.quantization), method) | {"nodes_to_exclude": float_layers}
        QDQ.quantize(self.ctx, self.force, qdq, settings, gate=False)
        engine = f"tensorrt/variants/int8-{vid}.engine"
        path = INT8.build(self.ctx, self.force, qdq=store.path(qdq), engine_rel=engine, gate=False)[0]
        manifest = store.read_manifest(engine) or {}
        return Variant(
            vid,
            method,
            float_layers,
            {"engine": engine, "qdq": qdq},
            recovery.brief(manifest.get("extra", {}).get("agreement")),
            size_bytes=path.stat().st_size,
            build_seconds=manifest.get("seconds"),
        )

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        cfg, store = self.ctx.config, self.ctx.store
        runtimes = {v.id: TensorrtInt8Runtime(cfg, {"engine": store.path(v.files["engine"])}) for v in variants}
        return runtime_timers(self.ctx, {**runtimes, "fp32": TensorrtFp32Runtime.from_store(store, cfg)})


def recover(ctx: StepContext, force: bool) -> list[Path]:
    """``tensorrt/int8.engine`` = the configured explicit-quantization engine, or the variant the search kept."""
    tcfg, store, q = ctx.config.tensorrt, ctx.store, ctx.config.quantization
    gpu = cuda.require(tcfg.device)
    calib = ctx.calibration
    calib.validate()
    inputs = {
        "onnx": store.path(SOURCE),
        "reference": store.path(REFERENCE),
        **file_inputs("calibration", calib.paths),
        **file_inputs("image", ctx.eval_images),
    }
    options = QDQ.settings(q) | {
        "calibration_images": len(calibration_for(ctx, q.calibrate_method)),
        "gpu": gpu.name,
        "compute_capability": gpu.compute_capability,
        "workspace_mb": tcfg.workspace_mb,
        "builder_optimization_level": tcfg.builder_optimization_level,
    }
    recovery.produce(
        ctx,
        TensorrtKnobs(ctx, force),
        {"engine": ENGINES["int8"]},
        inputs=inputs,
        tool_version=INT8.tool_version(),
        options=options,
        force=force,
    )
    return [store.path(ENGINES["int8"])]
