"""`convert onnx-int8`: the QDQ model onnxruntime runs, quantized as [quantization] says (U8S8 by default:
the fast one for onnxruntime on x86), or the variant the INT8 search keeps (recover.py)."""

from __future__ import annotations

from pathlib import Path

from modelport.common.context import StepContext
from modelport.convert.qdq import Quantizer

from .runtime import OnnxInt8Runtime


class OrtQuantizer(Quantizer):
    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        from .recover import recover

        return recover(ctx, force, self.output)


ORT = OrtQuantizer(OnnxInt8Runtime.artifacts["model"])
