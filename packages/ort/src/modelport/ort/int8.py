"""The QDQ model onnxruntime runs, quantized as [quantization] says (U8S8 by default: the fast one for
onnxruntime on x86); `convert onnx-int8` runs it through the INT8 search (recover.py), which keeps this
configured model when it meets the floors."""

from __future__ import annotations

from modelport.convert.qdq import Quantizer

from .runtime import OnnxInt8Runtime

ORT = Quantizer(OnnxInt8Runtime.artifacts["model"])
