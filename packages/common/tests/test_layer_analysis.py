"""Per-layer metrics and the ONNX layer naming, on numbers and a tiny onnx.helper graph."""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed in this env")
from onnx import ModelProto, TensorProto, helper, numpy_helper  # noqa: E402

from modelport.common import layer_analysis, onnx_layers  # noqa: E402
from modelport.common.onnx_layers import OnnxLayer  # noqa: E402


def tiny_model() -> ModelProto:
    """input -> Conv -> Clip -> Conv -> Add(residual with the Clip output) -> Softmax."""
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    w2 = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w2")
    lo, hi = (
        numpy_helper.from_array(cast(np.ndarray, np.float32(0)), "lo"),
        numpy_helper.from_array(cast(np.ndarray, np.float32(6)), "hi"),
    )
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Softmax", ["a"], ["y"], name="softmax"),
    ]
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2])],
        [w, w2, lo, hi],
    )
    return helper.make_model(g)


def test_a_conv_and_its_activation_are_one_layer_named_by_the_conv() -> None:
    graph = onnx_layers.from_model(tiny_model())
    assert [(la.node, la.op, la.tensors) for la in graph.layers] == [
        ("conv1", "Conv+Clip", ["c1", "r1"]),
        ("conv2", "Conv", ["c2"]),
        ("add", "Add", ["a"]),
        ("softmax", "Softmax", ["y"]),
    ]
    assert graph.layer_of("c1") is graph.layer_of("r1") is graph.by_node("relu1")
    assert cast(OnnxLayer, graph.by_node("add")).inputs == ["c2", "r1"] and graph.graph_input == "x"


def test_tensor_error() -> None:
    x = np.random.default_rng(0).normal(size=1000)
    assert cast(tuple[object, ...], layer_analysis.tensor_error(x, x)) == (pytest.approx(1.0), layer_analysis.SQNR_CAP_DB)
    noise = 0.1 * np.random.default_rng(1).normal(size=1000)
    cos, sqnr = layer_analysis.tensor_error(x, x + noise)
    assert sqnr == pytest.approx(20 * math.log10(np.linalg.norm(x) / np.linalg.norm(noise)))
    assert layer_analysis.sqnr_from_cosine(cos) == pytest.approx(sqnr, abs=0.5)  # uncorrelated noise


def test_rows_keep_the_layers_last_tensor_and_own_error_subtracts_the_inputs_noise() -> None:
    graph = onnx_layers.from_model(tiny_model())
    errors = layer_analysis.LayerErrors(graph)
    rng = np.random.default_rng(2)
    ref = {t: rng.normal(size=64) for t in ("c1", "r1", "c2", "a", "y")}
    noise = {"c1": 0.5, "r1": 0.01, "c2": 0.02, "a": 0.02, "y": 0.02}  # c1 is overwritten by r1: same layer
    for t, n in noise.items():
        errors.add(cast(OnnxLayer, graph.layer_of(t)), t, "img", ref[t], ref[t] + n * rng.normal(size=64), t)
    rows = {r["node"]: r for r in errors.rows()}
    assert list(rows) == ["conv1", "conv2", "add", "softmax"] and rows["conv1"]["tensor"] == "r1"
    assert rows["conv1"]["sqnr_db_mean"] > 30  # from r1 (noise 0.01), not c1 (0.5)
    # conv2's own noise = its noise minus what came in from conv1 (both ~ same power): well above its output SQNR
    assert rows["conv2"]["own_sqnr_db"] > rows["conv2"]["sqnr_db_mean"]
    assert layer_analysis.worst(list(rows.values()), 1)[0]["node"] in ("conv2", "add", "softmax")


def test_a_detector_head_is_its_last_convs_and_the_decode_path_after_them(tmp_path: Path) -> None:
    """YOLOX-shaped: per stride a 1x1 conv, reshaped, concatenated, transposed, sigmoid. The head stops at
    those convs: the backbone conv, its ReLU and the pools before them are not part of it."""
    from tiny_models import tiny_detector

    model = onnx.load(str(tiny_detector(tmp_path / "det.onnx")))
    graph = onnx_layers.from_model(model)
    ops = {la.node: la.op for la in graph.layers}
    head = onnx_layers.head(graph)
    assert sorted(ops[n] for n in head) == sorted(["Conv"] * 3 + ["Reshape"] * 3 + ["Concat", "Transpose+Sigmoid"])
    assert all(ops[n] not in ("Conv+Relu", "AveragePool") for n in head)
    assert head == [la.node for la in graph.layers if la.node in head]  # in graph order


def test_an_ssd_head_without_the_shape_arithmetic_of_its_reshapes(tmp_path: Path) -> None:
    """SSD-shaped (RFB-320's two outputs): both branches' convs and their reshapes, transposes and softmax.
    A Reshape whose shape is computed from a feature map (Shape -> Slice -> Concat, as PyTorch exports it)
    takes the feature map's values only through its data input: the shape arithmetic is not head."""
    from tiny_models import tiny_boxes_scores

    model = onnx.load(str(tiny_boxes_scores(tmp_path / "ssd.onnx")))
    g = model.graph
    reshape = next(n for n in g.node if n.op_type == "Reshape" and n.output[0] == "box_cells")
    reshape.input[1] = "box_shape_dyn"
    at = list(g.node).index(reshape)
    for k, node in enumerate(
        [
            helper.make_node("Shape", ["box_map"], ["dims"], name="shape"),
            helper.make_node("Slice", ["dims", "first", "second"], ["batch"], name="batch"),
            helper.make_node("Concat", ["batch", "rest"], ["box_shape_dyn"], name="shape_concat", axis=0),
        ]
    ):
        g.node.insert(at + k, node)
    for name, value in (("first", [0]), ("second", [1]), ("rest", [4, -1])):
        g.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
    onnx.checker.check_model(model)
    graph = onnx_layers.from_model(model)
    ops = {la.node: la.op for la in graph.layers}
    head = onnx_layers.head(graph)
    assert sorted(ops[n] for n in head) == sorted(["Conv"] * 2 + ["Reshape"] * 2 + ["Transpose"] * 2 + ["Softmax"])
    assert not {"shape", "batch", "shape_concat"} & set(head)
