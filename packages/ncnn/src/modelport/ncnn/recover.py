"""NCNN INT8 recovery knobs: calibration methods (minmax, KL, ACIQ) and table entries kept in float
(``#`` lines, which both the builtin writer and ncnn2int8 leave FP32); common/recovery.py searches."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path

from modelport.common import recovery
from modelport.common.artifacts import file_inputs
from modelport.common.context import StepContext
from modelport.common.recovery import Variant, variant_id
from modelport.common.reference import REFERENCE
from modelport.convert.recover import ranked, runtime_timers

from .convert import BIN, PARAM
from .int8 import OUTPUTS, TARGET
from .runtime import NcnnInt8Runtime, NcnnRuntime
from .table import METHODS, Table


class NcnnKnobs:
    key, display = "ncnn-int8", "NCNN INT8"

    def __init__(self, ctx: StepContext, force: bool):
        self.ctx, self.force = ctx, force
        c = ctx.config.ncnn
        self.methods = [c.calibration_method, *(m for m in METHODS if m != c.calibration_method)]
        self.float_layers = list(c.float_layers)

    @cached_property
    def ncnn_names(self) -> dict[str, list[str]]:
        """ONNX layer -> its ncnn layers (names.py); read only when layer names are needed."""
        from .analyze import mapping

        _, m = mapping(self.ctx, self.ctx.store.path(PARAM))
        out: dict[str, list[str]] = {}
        for ncnn_name, onnx_layer in m.layers.items():
            out.setdefault(onnx_layer.node, []).append(ncnn_name)
        return out

    def to_ncnn(self, layers: list[str]) -> list[str]:
        if not layers:
            return []
        return list(dict.fromkeys(n for la in layers for n in self.ncnn_names.get(la, [la])))

    def build(self, method: str, float_layers: list[str]) -> Variant:
        vid = variant_id(method, float_layers)
        outputs = {role: f"ncnn/variants/{vid}/{rel.rsplit('/', 1)[1]}" for role, rel in OUTPUTS.items()}
        TARGET.quantize(self.ctx, self.force, outputs, method, self.to_ncnn(float_layers), gate=False)
        manifest = self.ctx.store.read_manifest(outputs["param"]) or {}
        size = sum(self.ctx.store.path(outputs[r]).stat().st_size for r in ("param", "bin"))
        return Variant(
            vid,
            method,
            float_layers,
            outputs,
            recovery.brief(manifest.get("extra", {}).get("agreement")),
            size_bytes=size,
            build_seconds=manifest.get("seconds"),
        )

    def worst_layers(self, variant: Variant) -> list[str]:
        from modelport.convert.analyze import run

        files = {r: self.ctx.store.path(variant.files[r]) for r in ("param", "bin")}
        return ranked(run(self.ctx, self.key, files=files, out=f"analysis/variants/{self.key}-{variant.id}.json")["layers"])

    def quantized_layers(self, variant: Variant) -> set[str]:
        """The layers with an int8 ncnn layer: those the variant's calibration table enables (a ``#`` line,
        a depthwise layer left float, a layer ncnn has no int8 kernel for: not there)."""
        enabled = set(Table.read(self.ctx.store.path(variant.files["table"])).enabled())
        return {node for node, names in self.ncnn_names.items() if enabled.intersection(names)}

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        cfg, store = self.ctx.config, self.ctx.store
        runtimes = {v.id: NcnnInt8Runtime(cfg, {r: store.path(v.files[r]) for r in ("param", "bin")}) for v in variants}
        return runtime_timers(self.ctx, {**runtimes, "fp32": NcnnRuntime.from_store(store, cfg)})


def recover(ctx: StepContext, force: bool) -> list[Path]:
    store, calib = ctx.store, ctx.calibration
    calib.validate()
    c = ctx.config.ncnn
    inputs = {
        "param": store.path(PARAM),
        "bin": store.path(BIN),
        "reference": store.path(REFERENCE),
        **file_inputs("calibration", calib.paths),
        **file_inputs("image", ctx.eval_images),
    }
    options = {
        "tools": c.tools,
        "method": c.calibration_method,
        "int8_depthwise": c.int8_depthwise,
        "bias_correction": c.bias_correction,
        "requantize": c.requantize,
        "float_layers": c.float_layers,
        "input": ctx.config.input.signature,
        "calibration_images": len(calib),
    }
    recovery.produce(
        ctx, NcnnKnobs(ctx, force), OUTPUTS, inputs=inputs, tool_version=TARGET.tool_version(), options=options, force=force
    )
    return [store.path(rel) for rel in OUTPUTS.values()]
