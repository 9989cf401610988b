"""OpenVINO INT8 recovery knobs: NNCF's presets with its bias correction and range estimators (convert.METHODS),
NNCF's accuracy control last among them (``+qac``: the layers it reverts are the variant's float layers), then
layers in its ``ignored_scope`` (common/recovery.py searches).

``TARGET`` is `convert openvino-int8` (the descriptor's target): the configured NNCF model, or the variant the search keeps.
"""

from __future__ import annotations

import time
from typing import Any

from modelport.common.context import StepContext
from modelport.common.recovery import Variant
from modelport.convert.recover import Searched, analysed, ranked
from modelport.runtime.knobs import Knobs, configured_first

from .convert import INT8, METHODS, SOURCE, parse_method, quantized_layers
from .runtime import OpenvinoFp32Runtime, OpenvinoInt8Runtime


class OpenvinoKnobs(Knobs):
    key, display = "openvino-int8", "OpenVINO INT8"
    outputs = dict(OpenvinoInt8Runtime.artifacts)  # role -> the INT8 IR bench and analyze read
    files = {"model": "openvino/variants/int8-{id}.xml", "weights": "openvino/variants/int8-{id}.bin"}
    runtimes = (OpenvinoInt8Runtime, OpenvinoFp32Runtime)
    sources = {"onnx": SOURCE}
    builder = INT8

    def __init__(self, ctx: StepContext, force: bool):
        # the search starts with these knobs: NNCF's accuracy control stops where the search's budget ends
        self.deadline = time.monotonic() + ctx.config.quantization.recover_minutes * 60
        super().__init__(ctx, force)

    def space(self) -> tuple[list[str], list[str]]:
        c = self.ctx.config.openvino
        methods = METHODS if self.ctx.config.detector is None else tuple(m for m in METHODS if "qac" not in parse_method(m)[1])
        return configured_first(c.preset, methods), list(c.float_layers)  # METHODS: convert.py

    def make(self, method: str, float_layers: list[str], files: dict[str, str]) -> None:
        INT8.build(self.ctx, self.force, files, method, float_layers, gate=False, deadline=self.deadline)

    def worst_layers(self, variant: Variant) -> list[str]:
        return ranked(analysed(self.ctx, self.key, variant.files, variant.id))

    def quantized_layers(self, variant: Variant) -> set[str]:
        store = self.ctx.store
        return quantized_layers(store.path(variant.files["model"]), store.path(SOURCE))

    def options(self) -> dict[str, Any]:
        c = self.ctx.config.openvino
        return self.with_input(
            {
                "preset": c.preset,
                "float_layers": c.float_layers,
                "inference_precision": c.inference_precision,
            }
        )


TARGET = Searched(INT8, OpenvinoKnobs)
