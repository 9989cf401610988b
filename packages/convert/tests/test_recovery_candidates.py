"""Which layers an INT8 model really quantizes, read from the model itself: the recovery search's only
candidates for float (common/recovery.py). A tiny ONNX model quantized here by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from modelport.common import onnx_layers
from modelport.convert.recover import qdq_quantized
from tiny_models import ort_qdq, tiny_onnx

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed in this env")


def named_tiny(path: Path) -> Path:
    """tiny_onnx with its nodes named by their outputs, as the converters name theirs."""
    model = onnx.load(str(tiny_onnx(path, size=(8, 8), batch=1)))
    for n in model.graph.node:
        n.name = n.output[0]
    onnx.save(model, str(path))
    return path


def test_qdq_quantized_layers_leave_out_what_the_qdq_model_keeps_in_float(tmp_path: Path) -> None:
    source = named_tiny(tmp_path / "tiny.onnx")
    graph = onnx_layers.load(source)
    every = qdq_quantized(ort_qdq(source, tmp_path / "all.onnx", []), graph)
    assert {"conv", "logits"} <= every  # the Conv (with its fused Relu) and the Gemm read dequantized tensors
    assert qdq_quantized(source, graph) == set()  # the FP32 model quantizes nothing
    fewer = qdq_quantized(ort_qdq(source, tmp_path / "no-gemm.onnx", ["logits"]), graph)
    assert fewer == every - {"logits"}  # a layer in nodes_to_exclude is no candidate any more


def test_a_float_bias_still_counts_as_quantized(tmp_path: Path) -> None:
    """The symmetric QDQ model TensorRT builds from keeps its biases float (QuantizeBias off): its layers
    are quantized all the same."""
    source = named_tiny(tmp_path / "tiny.onnx")
    graph = onnx_layers.load(source)
    every = qdq_quantized(ort_qdq(source, tmp_path / "all.onnx", []), graph)
    sym = ort_qdq(source, tmp_path / "sym.onnx", [], ActivationSymmetric=True, WeightSymmetric=True, QuantizeBias=False)
    assert qdq_quantized(sym, graph) == every
