"""MNN INT8 recovery knobs: nn.compress's activation-range update methods, each with and without the input
convolution in float (common/recovery.py searches).

No other layer is kept in float: MNN's train_quant quantizes every convolution of the module it is given and
takes no list of layers to leave out (the input convolution stays float as a float module in front of the
quantized rest), so the search ends after the methods (the base's empty candidates).
``TARGET`` is `convert mnn-int8` (the descriptor's target): the configured model, or the variant the search keeps.
"""

from __future__ import annotations

from typing import Any

from modelport.convert.recover import Searched
from modelport.runtime.knobs import Knobs, configured_first

from .convert import INT8, METHODS, SOURCE, configured_method
from .runtime import MnnFp32Runtime, MnnInt8Runtime


class MnnKnobs(Knobs):
    key, display = "mnn-int8", "MNN INT8"
    outputs = dict(MnnInt8Runtime.artifacts)  # role -> the INT8 model bench reads
    files = {"model": "mnn/variants/int8-{id}.mnn"}
    runtimes = (MnnInt8Runtime, MnnFp32Runtime)
    sources = {"onnx": SOURCE}
    builder = INT8
    float_unsupported = (
        "keeps no layers in float: MNN's train_quant quantizes every convolution of the module it is given "
        "and takes no list of layers to leave out"
    )

    def space(self) -> tuple[list[str], list[str]]:
        return configured_first(configured_method(self.ctx.config.mnn), METHODS), []  # METHODS: convert.py

    def make(self, method: str, float_layers: list[str], files: dict[str, str]) -> None:
        INT8.build(self.ctx, self.force, files, method, gate=False)

    def options(self) -> dict[str, Any]:
        c = self.ctx.config.mnn
        return self.with_input(
            {
                "scale_update": c.scale_update,
                "float_input": c.float_input,
                "feature_scale": c.feature_scale,
                "precision": c.precision,
            }
        )


TARGET = Searched(INT8, MnnKnobs)
