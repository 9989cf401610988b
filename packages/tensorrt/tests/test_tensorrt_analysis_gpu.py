"""TensorRT INT8 per layer on a real GPU. Skipped with the missing layer as reason where TensorRT cannot run."""

import json

import pytest

from modelport.common.context import StepContext
from modelport.tensorrt import cuda

REASON = cuda.missing_layer()
pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=f"needs a CUDA GPU with TensorRT: {REASON}"),
]


def test_layers_are_named_by_the_onnx_model(pipeline: StepContext) -> None:
    from modelport.convert.analyze import run

    data = run(pipeline, "tensorrt-int8")
    assert len(data["layers"]) >= 50 and data["mapping"]["onnx_layers"] >= len(data["layers"])
    assert all(r["images"] == 12 and r["sqnr_db_mean"] > 5 for r in data["layers"])
    assert json.loads(pipeline.store.path("analysis/tensorrt-int8.json").read_text())["backend"] == "tensorrt-int8"
