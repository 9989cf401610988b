"""NCNN INT8 recovery knobs: calibration methods (minmax, KL, ACIQ, eq), each also with a bias correction measured in
ncnn (``+bc``, ``+fbc``), and table entries kept in float (``#`` lines, which both the builtin writer and ncnn2int8
leave FP32); common/recovery.py searches.

``TARGET`` is `convert ncnn-int8` (the descriptor's target): the configured model, or the variant the search keeps.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from modelport.common.recovery import Variant
from modelport.convert.analyze import run as analyze
from modelport.convert.recover import Searched, ranked
from modelport.runtime.knobs import Knobs, configured_first

from .analyze import mapping
from .convert import BIN, PARAM
from .int8 import OUTPUTS
from .int8 import TARGET as INT8
from .runtime import NcnnInt8Runtime, NcnnRuntime
from .table import Table

# The calibrations (table.py METHODS, eq.py), and with a bias correction measured in ncnn (bias.py): every one keeps
# all layers INT8, so each is tried before any float layer, the full corrections first. MobileNetV2 on the 12 shipped +
# 23 harder photos, top-1 / cosine min / mean: minmax 94% / 0.850 / 0.989, +bc 94% / 0.864 / 0.989, +fbc 94% / 0.964 /
# 0.992; eq 97% / 0.925 / 0.994, +bc 100% / 0.936 / 0.995, +fbc 97% / 0.967 / 0.994; kl 86% / 0.809 / 0.976, +bc 83% /
# 0.877 / 0.982, +fbc 89% / 0.851 / 0.966; aciq 83% / 0.750 / 0.953, +bc 83% / 0.798 / 0.970, +fbc 74% / 0.710 / 0.907.
# Seconds to build on 2 shared cores: minmax 8, +fbc 13, eq 42, eq+fbc 17 more (the calibration is cached).
METHODS = (
    "minmax",
    "minmax+fbc",
    "eq+fbc",
    "eq",
    "eq+bc",
    "minmax+bc",
    "kl",
    "kl+bc",
    "kl+fbc",
    "aciq",
    "aciq+bc",
    "aciq+fbc",
)


class NcnnKnobs(Knobs):
    key, display = "ncnn-int8", "NCNN INT8"
    outputs = OUTPUTS
    files = {role: f"ncnn/variants/{{id}}/{rel.rsplit('/', 1)[1]}" for role, rel in OUTPUTS.items()}
    sized = ("param", "bin")
    runtimes = (NcnnInt8Runtime, NcnnRuntime)
    sources = {"param": PARAM, "bin": BIN}
    builder = INT8

    def space(self) -> tuple[list[str], list[str]]:
        c = self.ctx.config.ncnn
        methods = list(METHODS)
        if self.ctx.config.detector is not None:
            # A detector's calibration crops are not its eval photos' statistics, and the corrections fitted to them
            # did not transfer on YOLOX-nano (boxes F1 vs source, all INT8: minmax 0.891, +fbc 0.862; the head in float:
            # kl 0.909, +fbc 0.832, minmax 0.876, +bc 0.876), while eq alone met the floors all INT8 (0.956). RFB-320:
            # minmax 0.933, eq 0.933, +fbc 0.955, +bc 0.933. The plain calibrations first, the corrections after.
            methods.sort(key=lambda m: "+" in m)
        return configured_first(c.calibration_method, methods), list(c.float_layers)

    @cached_property
    def ncnn_names(self) -> dict[str, list[str]]:
        """ONNX layer -> its ncnn layers (names.py); read only when layer names are needed."""
        _, m = mapping(self.ctx, self.ctx.store.path(PARAM))
        out: dict[str, list[str]] = {}
        for ncnn_name, onnx_layer in m.layers.items():
            out.setdefault(onnx_layer.node, []).append(ncnn_name)
        return out

    def to_ncnn(self, layers: list[str]) -> list[str]:
        if not layers:
            return []
        return list(dict.fromkeys(n for la in layers for n in self.ncnn_names.get(la, [la])))

    def make(self, method: str, float_layers: list[str], files: dict[str, str]) -> None:
        INT8.quantize(self.ctx, self.force, files, method, self.to_ncnn(float_layers), gate=False)

    def worst_layers(self, variant: Variant) -> list[str]:
        files = {r: self.ctx.store.path(variant.files[r]) for r in ("param", "bin")}
        return ranked(analyze(self.ctx, self.key, files=files, out=f"analysis/variants/{self.key}-{variant.id}.json")["layers"])

    def quantized_layers(self, variant: Variant) -> set[str]:
        """The layers with an int8 ncnn layer: those the variant's calibration table enables (a ``#`` line,
        a depthwise layer left float, a layer ncnn has no int8 kernel for: not there)."""
        enabled = set(Table.read(self.ctx.store.path(variant.files["table"])).enabled())
        return {node for node, names in self.ncnn_names.items() if enabled.intersection(names)}

    def options(self) -> dict[str, Any]:
        c = self.ctx.config.ncnn
        return self.with_input(
            {
                "tools": c.tools,
                "method": c.calibration_method,
                "int8_depthwise": c.int8_depthwise,
                "bias_correction": c.bias_correction,
                "requantize": c.requantize,
                "float_layers": c.float_layers,
            }
        )


TARGET = Searched(INT8, NcnnKnobs)
