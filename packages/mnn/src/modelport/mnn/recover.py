"""MNN INT8 recovery knobs: nn.compress's activation-range update methods (common/recovery.py searches).

No layers are kept in float: MNN's train_quant quantizes every convolution of the module and takes no
list of layers to leave out, so the search ends after the methods.
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
from modelport.convert.recover import runtime_timers

from .convert import INT8, METHODS, SOURCE
from .runtime import MnnFp32Runtime, MnnInt8Runtime

OUTPUTS = dict(MnnInt8Runtime.artifacts)  # role -> the INT8 model bench reads


class MnnKnobs:
    key, display = "mnn-int8", "MNN INT8"

    def __init__(self, ctx: StepContext, force: bool):
        self.ctx, self.force = ctx, force
        c = ctx.config.mnn
        self.methods = [c.scale_update, *(m for m in METHODS if m != c.scale_update)]
        self.float_layers: list[str] = []

    def build(self, method: str, float_layers: list[str]) -> Variant:
        vid = variant_id(method, float_layers)
        files = {"model": f"mnn/variants/int8-{vid}.mnn"}
        INT8.build(self.ctx, self.force, files, method, gate=False)
        store = self.ctx.store
        manifest = store.read_manifest(files["model"]) or {}
        return Variant(
            vid,
            method,
            float_layers,
            files,
            recovery.brief(manifest.get("extra", {}).get("agreement")),
            size_bytes=sum(store.path(f).stat().st_size for f in files.values()),
            build_seconds=manifest.get("seconds"),
        )

    def worst_layers(self, variant: Variant) -> list[str]:
        return []  # no per-layer float fallback in MNN's quantizer (see the module docstring)

    def quantized_layers(self, variant: Variant) -> set[str]:
        return set()  # nothing can be put back in float, so no layer is a candidate

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        cfg, store = self.ctx.config, self.ctx.store
        runtimes = {v.id: MnnInt8Runtime(cfg, {r: store.path(f) for r, f in v.files.items()}) for v in variants}
        return runtime_timers(self.ctx, {**runtimes, "fp32": MnnFp32Runtime.from_store(store, cfg)})


def recover(ctx: StepContext, force: bool) -> list[Path]:
    """mnn/model.int8.mnn = the configured calibration's model, or the variant the search kept."""
    store, calib = ctx.store, ctx.calibration
    calib.validate()
    c = ctx.config.mnn
    inputs = {
        "onnx": store.path(SOURCE),
        "reference": store.path(REFERENCE),
        **file_inputs("calibration", calib.paths),
        **file_inputs("image", ctx.eval_images),
    }
    options = {
        "scale_update": c.scale_update,
        "feature_scale": c.feature_scale,
        "precision": c.precision,
        "input": ctx.config.input.signature,
        "calibration_images": len(calib),
    }
    recovery.produce(
        ctx, MnnKnobs(ctx, force), OUTPUTS, inputs=inputs, tool_version=INT8.tool_version(), options=options, force=force
    )
    return [store.path(rel) for rel in OUTPUTS.values()]
