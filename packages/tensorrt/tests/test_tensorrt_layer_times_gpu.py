"""TensorRT per-layer time (IProfiler) on a real GPU, named by the ONNX model's layers. Skipped with the missing
layer as reason where TensorRT cannot run (always, on this project's machines and CI). No timing is asserted."""

import math

import numpy as np
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


@pytest.mark.parametrize("key", ["tensorrt-fp32", "tensorrt-int8"])
def test_layers_are_named_by_the_onnx_model(pipeline: StepContext, key: str) -> None:
    from modelport.bench.measure import layer_profile
    from modelport.common.onnx_layers import load
    from modelport.convert.registry import target_module
    from modelport.runtime.base import ONNX_MODEL
    from modelport.runtime.registry import runtime_class

    target_module(key).run(pipeline, False)
    graph = load(pipeline.store.path(ONNX_MODEL))
    rt = runtime_class(key).from_store(pipeline.store, pipeline.config)
    x = np.zeros(rt.input_shape(), dtype=np.float32)
    with rt:
        profile = layer_profile(rt, x, 5, graph)
        assert rt.infer(x).shape[0] == 1  # the profiler is off again and the context still runs
    nodes = {la.node for la in graph.layers}
    assert profile.reason is None and profile.slowest and "IProfiler" in profile.how
    assert any(t.onnx for t in profile.slowest) and all(t.name in nodes for t in profile.slowest if t.onnx)
    assert all(math.isfinite(t.ms) and t.ms >= 0 for t in profile.slowest)
