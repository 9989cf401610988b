"""`convert onnx-int8-tensorrt`: the QDQ model TensorRT builds its INT8 engine from.

Symmetric int8 activations and weights with float biases: the only QDQ form TensorRT's
explicit quantization accepts. Made by onnxruntime.quantization (modelport.convert.qdq) in
the env that has onnxruntime and the calibration set (tf-onnx), verified there on onnxruntime;
TensorRT's own INT8 build is judged (and recovered) on its side (convert.py, recover.py).
"""

from __future__ import annotations

from typing import Any

from modelport.common.config import QuantizationConfig
from modelport.convert.qdq import Quantizer


class SymmetricQuantizer(Quantizer):
    def settings(self, q: QuantizationConfig) -> dict[str, Any]:
        return q.quantizer_settings() | {
            "activation_type": "int8",
            "weight_type": "int8",
            "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        }


QDQ = SymmetricQuantizer("onnx/model.int8.sym.onnx")
