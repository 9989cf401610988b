"""Per-layer time through the real onnxruntime profiler on a tiny model made here: layers come back named by the
ONNX nodes (the names the per-layer INT8 analysis uses), and a QDQ model's quantize work is told apart. No timing
is asserted: only that numbers exist and the names and categories are right."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from modelport.bench.measure import layer_category, layer_profile
from modelport.common.config import Config
from modelport.common.onnx_layers import OnnxGraph, load
from modelport.common.schema import LayerProfile
from modelport.ort.runtime import OnnxFp32Runtime, OnnxInt8Runtime
from tiny_models import tiny_onnx

pytest.importorskip("onnxruntime")


def named_tiny(path: Path, config: Config) -> Path:
    """tiny_onnx at the config's input size, every node named unlike its output tensor (so a name that maps is
    a node name, not a tensor name)."""
    tiny_onnx(path, size=config.input.size, batch=1)
    model = onnx.load(str(path))
    for i, node in enumerate(model.graph.node):
        node.name = f"{node.op_type.lower()}_node{i}"
    onnx.save(model, str(path))
    return path


def qdq(src: Path, dst: Path, config: Config) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.data = iter([{"image": rng.random(config.input.shape("NCHW"), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.data, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8)
    return dst


def check(profile: LayerProfile, graph: OnnxGraph) -> None:
    nodes = {la.node for la in graph.layers}
    assert profile.reason is None and profile.layers >= len(profile.slowest) > 0
    assert all(t.name in nodes for t in profile.slowest if t.onnx)
    assert all(math.isfinite(t.ms) and t.ms >= 0 and 0 <= t.share <= 1 for t in profile.slowest)
    assert [t.ms for t in profile.slowest] == sorted((t.ms for t in profile.slowest), reverse=True)
    assert set(profile.shares) == {"quantize", "dequantize", "reorder"} and sum(profile.shares.values()) <= 1 + 1e-9


def test_fp32_layers_carry_the_onnx_node_names(tmp_path: Path) -> None:
    config = Config()
    model = named_tiny(tmp_path / "tiny.onnx", config)
    graph = load(model)
    x = np.random.default_rng(1).random(config.input.shape("NCHW"), dtype=np.float32)
    with OnnxFp32Runtime(config, {"model": model}) as rt:
        profile = layer_profile(rt, x, 3, graph)
    check(profile, graph)
    named = {t.name for t in profile.slowest if t.onnx}
    assert "conv_node0" in named  # the conv (with the ReLU ORT fused into it) is found under its ONNX node
    assert "onnxruntime profiling" in profile.how and profile.runs == 3


def test_int8_qdq_layers_keep_the_fp32_names_and_the_quantize_work_is_its_own(tmp_path: Path) -> None:
    config = Config()
    model = named_tiny(tmp_path / "tiny.onnx", config)
    int8 = qdq(model, tmp_path / "tiny.int8.onnx", config)
    graph = load(model)  # named by the FP32 model, as bench does (onnx/model.onnx)
    x = np.random.default_rng(1).random(config.input.shape("NCHW"), dtype=np.float32)
    with OnnxInt8Runtime(config, {"model": int8}) as rt:
        profile = layer_profile(rt, x, 3, graph)
    check(profile, graph)
    assert "conv_node0" in {t.name for t in profile.slowest if t.onnx}
    quantize = [t for t in profile.slowest if t.category == "quantize"]
    assert quantize and all(not t.onnx for t in quantize)  # the input's QuantizeLinear is not an FP32 layer


def test_without_a_graph_the_toolchain_names_stay(tmp_path: Path) -> None:
    config = Config()
    model = named_tiny(tmp_path / "tiny.onnx", config)
    x = np.zeros(config.input.shape("NCHW"), dtype=np.float32)
    with OnnxFp32Runtime(config, {"model": model}) as rt:
        profile = layer_profile(rt, x, 2, None)
    assert profile.slowest and not any(t.onnx for t in profile.slowest)


@pytest.mark.parametrize(
    "op, category",
    [
        ("QuantizeLinear", "quantize"),
        ("FakeQuantize", "quantize"),
        ("DequantizeLinear", "dequantize"),
        ("Int8ToFloat", "dequantize"),
        ("FloatToInt8 [ DT_INT8 ] ", "quantize"),
        ("ReorderOutput", "reorder"),
        ("Reorder", "reorder"),
        ("Raster", "reorder"),
        ("Reformat", "reorder"),
        ("QLinearConv", "other"),
        ("Convolution", "other"),
    ],
)
def test_layer_categories(op: str, category: str) -> None:
    assert layer_category(op) == category
