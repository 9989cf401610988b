"""Per-layer time through the real MNN op callbacks on a tiny model made here: MNN keeps the ONNX node names,
so the layers come back named as the per-layer INT8 analysis names them. No timing is asserted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from modelport.bench.measure import layer_profile
from modelport.common.config import Config
from modelport.common.onnx_layers import load
from modelport.mnn.runtime import MnnFp32Runtime
from tiny_models import tiny_onnx

pytest.importorskip("MNN")


def test_layers_are_named_by_the_onnx_nodes(tmp_path: Path) -> None:
    from modelport.mnn.convert import convert_onnx

    config = Config()
    model = tiny_onnx(tmp_path / "tiny.onnx", size=config.input.size, batch=1)
    proto = onnx.load(str(model))
    for i, node in enumerate(proto.graph.node):  # named unlike their tensors: a mapped name is a node name
        node.name = f"{node.op_type.lower()}_node{i}"
    onnx.save(proto, str(model))
    convert_onnx(model, tmp_path / "model.mnn", tmp_path / "convert.log")
    graph = load(model)
    x = np.random.default_rng(1).random(config.input.shape("NCHW"), dtype=np.float32)
    with MnnFp32Runtime(config, {"model": tmp_path / "model.mnn"}) as rt:
        profile = layer_profile(rt, x, 3, graph)
        assert rt.infer(x).shape == (1, 10)  # the callback runs left the session usable
    nodes = {la.node for la in graph.layers}
    assert profile.reason is None and profile.slowest and "runSessionWithCallBackInfo" in profile.how
    assert all(t.name in nodes for t in profile.slowest if t.onnx)
    assert "conv_node0" in {t.name for t in profile.slowest if t.onnx}
    assert all(math.isfinite(t.ms) and t.ms >= 0 and 0 <= t.share <= 1 for t in profile.slowest)
