"""ncnn (pnnx-renamed) layers -> ONNX layers by graph walk, on a tiny onnx.helper model and a hand-written .param."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed in this env")
from onnx import ModelProto, TensorProto, helper, numpy_helper  # noqa: E402

from modelport.common import onnx_layers  # noqa: E402
from modelport.ncnn.format import read_param  # noqa: E402
from modelport.ncnn.names import Mapping, map_model  # noqa: E402


def model() -> ModelProto:
    """x -> Conv(8)+Clip -> Conv(8) -> Add(residual) -> Reshape (pnnx drops it) -> Conv(3) -> Softmax."""
    init = [
        numpy_helper.from_array(np.ones(s, np.float32), n)
        for n, s in (("w1", (8, 3, 3, 3)), ("w2", (8, 8, 1, 1)), ("w3", (3, 8, 1, 1)))
    ]
    init += [
        numpy_helper.from_array(cast(np.ndarray, np.float32(0)), "lo"),
        numpy_helper.from_array(cast(np.ndarray, np.float32(6)), "hi"),
        numpy_helper.from_array(np.array([1, 8, 4, 4], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["t_conv1"], name="Conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["t_conv1", "lo", "hi"], ["t_relu1"], name="Relu1"),
        helper.make_node("Conv", ["t_relu1", "w2"], ["t_conv2"], name="Conv2"),
        helper.make_node("Add", ["t_conv2", "t_relu1"], ["t_add"], name="Add"),
        helper.make_node("Reshape", ["t_add", "shape"], ["t_reshape"], name="Reshape"),
        helper.make_node("Conv", ["t_reshape", "w3"], ["t_conv3"], name="Conv3"),
        helper.make_node("Softmax", ["t_conv3"], ["y"], name="Softmax"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        init,
    )
    return helper.make_model(g)


PARAM = """7767517
7 9
Input                    in0          0 1 in0
Convolution              convclip_0   1 1 in0 1 0=8 1=3 4=1 5=0 6=216 9=3 -23310=2,0.0,6.0
Split                    splitncnn_0  1 2 1 2 3
Convolution              conv_1       1 1 3 4 0=8 1=1 5=0 6={w2}
BinaryOp                 add_0        2 1 4 2 5 0=0
Convolution              conv_2       1 1 5 6 0=3 1=1 5=0 6=24
Softmax                  softmax_0    1 1 6 out0 0=0
"""


def mapped(tmp_path: Path, w2: int = 64) -> Mapping:
    path = tmp_path / "model.param"
    path.write_text(PARAM.format(w2=w2))
    m = model()
    return map_model(read_param(path), onnx_layers.from_model(m), m)


def test_every_ncnn_layer_lands_on_its_onnx_layer(tmp_path: Path) -> None:
    m = mapped(tmp_path)
    assert {k: v.node for k, v in m.layers.items()} == {
        "convclip_0": "Conv1",
        "conv_1": "Conv2",
        "add_0": "Add",
        "conv_2": "Conv3",
        "softmax_0": "Softmax",
    }
    # The fused activation: the conv's blob is the Clip's output; both Split tops are that tensor.
    assert m.blobs["1"] == m.blobs["2"] == m.blobs["3"] == "t_relu1"
    assert m.blobs["out0"] == "y" and m.unmapped == []


def test_a_weight_count_that_disagrees_stops_the_walk_there(tmp_path: Path) -> None:
    m = mapped(tmp_path, w2=63)
    assert "conv_1" not in m.layers and m.unmapped == ["conv_1", "add_0", "conv_2", "softmax_0"]
    assert m.layers["convclip_0"].node == "Conv1"  # what came before is still named
