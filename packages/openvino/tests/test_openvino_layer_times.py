"""Per-layer time through the real OpenVINO profiler (PERF_COUNT) on a tiny model made here: the compiled
graph's nodes come back named by the ONNX nodes the IR came from. No timing is asserted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from modelport.bench.measure import layer_profile
from modelport.common.config import Config
from modelport.common.onnx_layers import load
from modelport.openvino.runtime import OpenvinoFp32Runtime
from tiny_models import tiny_onnx

pytest.importorskip("openvino")


def named_tiny(path: Path, config: Config) -> Path:
    tiny_onnx(path, size=config.input.size, batch=1)
    model = onnx.load(str(path))
    for i, node in enumerate(model.graph.node):
        node.name = f"{node.op_type.lower()}_node{i}"
    onnx.save(model, str(path))
    return path


def test_layers_are_named_by_the_onnx_nodes(tmp_path: Path) -> None:
    import openvino as ov

    config = Config()
    model = named_tiny(tmp_path / "tiny.onnx", config)
    xml = tmp_path / "model.xml"
    ov.save_model(ov.convert_model(str(model)), str(xml), compress_to_fp16=False)
    graph = load(model)
    x = np.random.default_rng(1).random(config.input.shape("NCHW"), dtype=np.float32)
    with OpenvinoFp32Runtime(config, {"model": xml, "weights": xml.with_suffix(".bin")}) as rt:
        profile = layer_profile(rt, x, 3, graph)
        assert rt.infer(x).shape == (1, 10)  # the profiled copy left the runtime's own request as it was
    nodes = {la.node for la in graph.layers}
    assert profile.reason is None and profile.slowest and "PERF_COUNT" in profile.how
    assert all(t.name in nodes for t in profile.slowest if t.onnx)
    assert "conv_node0" in {t.name for t in profile.slowest if t.onnx}
    assert all(math.isfinite(t.ms) and t.ms >= 0 and 0 <= t.share <= 1 for t in profile.slowest)
    assert set(profile.shares) == {"quantize", "dequantize", "reorder"}
