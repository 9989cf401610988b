"""OpenVINO INT8 recovery knobs: NNCF's presets with its bias correction, channel alignment and range estimators
(convert.METHODS), then layers in its ``ignored_scope`` (common/recovery.py searches)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from modelport.common import recovery
from modelport.common.artifacts import file_inputs
from modelport.common.context import StepContext
from modelport.common.recovery import Variant, variant_id
from modelport.common.reference import REFERENCE
from modelport.convert.recover import analysed, ranked, runtime_timers

from .convert import INT8, METHODS, SOURCE, quantized_layers
from .runtime import OpenvinoFp32Runtime, OpenvinoInt8Runtime

OUTPUTS = dict(OpenvinoInt8Runtime.artifacts)  # role -> the INT8 IR bench and analyze read


class OpenvinoKnobs:
    key, display = "openvino-int8", "OpenVINO INT8"

    def __init__(self, ctx: StepContext, force: bool):
        self.ctx, self.force = ctx, force
        c = ctx.config.openvino
        self.methods = [c.preset, *(m for m in METHODS if m != c.preset)]
        self.float_layers = list(c.float_layers)

    def build(self, method: str, float_layers: list[str]) -> Variant:
        vid = variant_id(method, float_layers)
        files = {"model": f"openvino/variants/int8-{vid}.xml", "weights": f"openvino/variants/int8-{vid}.bin"}
        INT8.build(self.ctx, self.force, files, method, float_layers, gate=False)
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
        return ranked(analysed(self.ctx, self.key, variant.files, variant.id))

    def quantized_layers(self, variant: Variant) -> set[str]:
        store = self.ctx.store
        return quantized_layers(store.path(variant.files["model"]), store.path(SOURCE))

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        cfg, store = self.ctx.config, self.ctx.store
        runtimes = {v.id: OpenvinoInt8Runtime(cfg, {r: store.path(f) for r, f in v.files.items()}) for v in variants}
        return runtime_timers(self.ctx, {**runtimes, "fp32": OpenvinoFp32Runtime.from_store(store, cfg)})


def recover(ctx: StepContext, force: bool) -> list[Path]:
    """openvino/model.int8.xml/.bin = the configured NNCF model, or the variant the search kept."""
    store, calib = ctx.store, ctx.calibration
    calib.validate()
    c = ctx.config.openvino
    inputs = {
        "onnx": store.path(SOURCE),
        "reference": store.path(REFERENCE),
        **file_inputs("calibration", calib.paths),
        **file_inputs("image", ctx.eval_images),
    }
    options = {
        "preset": c.preset,
        "float_layers": c.float_layers,
        "inference_precision": c.inference_precision,
        "input": ctx.config.input.signature,
        "calibration_images": len(calib),
    }
    recovery.produce(
        ctx, OpenvinoKnobs(ctx, force), OUTPUTS, inputs=inputs, tool_version=INT8.tool_version(), options=options, force=force
    )
    return [store.path(rel) for rel in OUTPUTS.values()]
