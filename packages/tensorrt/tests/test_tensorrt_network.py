"""What the TensorRT build reads from the ONNX before TensorRT is involved: input, profile, QDQ.

Not marked ``tensorrt`` on purpose: these need only ``onnx``, so they run in the tf-onnx
env, next to the real onnx/model.onnx and onnx/model.int8.onnx the pipeline makes there
(the GPU-less tensorrt env installs no onnx). The small graphs below are real ONNX
models built with onnx.helper, checked by onnx.checker.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.common.context import StepContext

onnx = pytest.importorskip("onnx", reason="needs onnx (installed in the tf-onnx and tensorrt envs)")
from onnx import ModelProto, TensorProto, helper, numpy_helper  # noqa: E402

from conftest import make_context  # noqa: E402
from modelport.common.errors import InputError  # noqa: E402
from modelport.common.preprocess import InputSpec  # noqa: E402
from modelport.tensorrt import convert as trt_convert  # noqa: E402
from modelport.tensorrt import network as net  # noqa: E402
from modelport.tensorrt.qdq import QDQ  # noqa: E402

SPEC = InputSpec()


def qdq_model(
    zp_type: int = TensorProto.INT8,
    zp_value: int = 0,
    zero_point: str | None = "initializer",
    shape: Sequence[int | str] = ("N", 3, 224, 224),
) -> ModelProto:
    """x -> QuantizeLinear -> DequantizeLinear -> y, with the zero point given as asked."""
    nodes, inits = [], [numpy_helper.from_array(np.array(0.02, np.float32), "scale")]
    zp = helper.make_tensor("zp", zp_type, [], [zp_value])
    if zero_point == "initializer":
        inits.append(zp)
    elif zero_point == "constant":
        nodes.append(helper.make_node("Constant", [], ["zp"], value=zp, name="zp_const"))
    q_inputs = ["x", "scale"] + (["zp"] if zero_point else [])
    nodes += [
        helper.make_node("QuantizeLinear", q_inputs, ["q"], name="x_QuantizeLinear"),
        helper.make_node("DequantizeLinear", ["q", "scale"] + (["zp"] if zero_point else []), ["y"], name="x_DequantizeLinear"),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def test_symmetric_int8_qdq_is_accepted() -> None:
    assert net.qdq_nodes(qdq_model()) == 2
    assert net.qdq_problems(qdq_model()) == []
    assert net.qdq_problems(qdq_model(zero_point="constant")) == []


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"zp_type": TensorProto.UINT8, "zp_value": 128}, "2 node(s) with uint8 zero point (e.g. x_QuantizeLinear)"),
        ({"zp_type": TensorProto.UINT8, "zp_value": 0}, "2 node(s) with uint8 zero point (e.g. x_QuantizeLinear)"),
        ({"zp_type": TensorProto.INT8, "zp_value": 3}, "2 node(s) with non-zero zero point (e.g. x_QuantizeLinear)"),
        ({"zero_point": None}, "2 node(s) with uint8 (no zero point given) (e.g. x_QuantizeLinear)"),
    ],
)
def test_qdq_tensorrt_would_refuse_is_named(kwargs: dict[str, Any], why: str) -> None:
    assert net.qdq_problems(qdq_model(**kwargs)) == [why]


def test_model_input_layout_and_profiles() -> None:
    dyn = net.model_input(qdq_model())
    assert dyn.name == "x" and dyn.shape == (-1, 3, 224, 224) and dyn.dynamic and dyn.layout == "NCHW"
    assert net.profile_shapes(dyn.shape, SPEC, max_batch=8) == ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))

    nhwc = net.model_input(qdq_model(shape=(1, 224, 224, 3)))
    assert not nhwc.dynamic and nhwc.layout == "NHWC"
    assert net.profile_shapes(nhwc.shape, SPEC, max_batch=8) == ((1, 224, 224, 3),) * 3

    open_hw = (1, 3, -1, -1)
    assert net.static_shape(open_hw, SPEC) == (1, 3, 224, 224)  # height/width from [input]


def test_model_that_does_not_match_the_config_is_refused() -> None:
    with pytest.raises(InputError, match=r"does not match \[input\]"):
        net.static_shape((1, 3, 299, 299), SPEC)
    with pytest.raises(InputError, match="cannot tell the layout"):
        net.layout_of((1, 4, 224, 224))
    with pytest.raises(InputError, match="rank 2"):
        graph = helper.make_graph(
            [],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1001])],
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1001])],
        )
        net.model_input(helper.make_model(graph))


def test_unreadable_onnx_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00not onnx" * 50)
    with pytest.raises(InputError) as e:
        net.load(bad)
    assert str(bad) in str(e.value)


# -- on the pipeline's real models -------------------------------------------------------


@pytest.mark.slow
def test_real_fp32_onnx_is_static_nchw(pipeline: StepContext) -> None:
    path = pipeline.store.path("onnx/model.onnx")
    inp = net.model_input(net.load(path), path)
    assert inp.shape == (1, 3, 224, 224) and not inp.dynamic and inp.layout == pipeline.config.input.layout


@pytest.mark.slow
def test_int8_plan_takes_the_symmetric_qdq_model(pipeline: StepContext) -> None:
    """auto: the backbone's symmetric QDQ model (onnx-int8-tensorrt) is what TensorRT explicit quantization takes."""
    path = pipeline.store.path(QDQ.output)
    model = net.load(path)
    assert net.qdq_nodes(model) > 100 and net.qdq_problems(model) == []
    plan = trt_convert.int8_plan(pipeline)
    assert plan.mode == "qdq" and plan.onnx == path and plan.why is None


@pytest.mark.slow
def test_int8_plan_falls_back_from_the_u8s8_model(pipeline: StepContext, test_env: dict[str, str]) -> None:
    """onnxruntime's U8S8 QDQ (uint8 activations, int32 biases) is not something TensorRT can run: calibrate, saying why."""
    u8s8 = make_context(test_env, overrides=["tensorrt.qdq_onnx=onnx/model.int8.onnx"])
    assert any("uint8 zero point" in p for p in net.qdq_problems(net.load(pipeline.store.path("onnx/model.int8.onnx"))))
    plan = trt_convert.int8_plan(u8s8)
    assert plan.mode == "calibrate" and plan.onnx == pipeline.store.path("onnx/model.onnx")
    assert plan.why is not None and plan.why.startswith(
        "onnx/model.int8.onnx cannot be used for TensorRT explicit quantization: "
    )
    strict = make_context(test_env, overrides=["tensorrt.int8_mode=qdq", "tensorrt.qdq_onnx=onnx/model.int8.onnx"])
    with pytest.raises(InputError, match='TensorRT needs symmetric int8 Q/DQ .* int8_mode = "calibrate"'):
        trt_convert.int8_plan(strict)


@pytest.mark.slow
def test_int8_plan_honours_calibrate_and_a_missing_qdq_model(pipeline: StepContext, test_env: dict[str, str]) -> None:
    calibrate = make_context(test_env, overrides=["tensorrt.int8_mode=calibrate"])
    assert trt_convert.int8_plan(calibrate).mode == "calibrate"
    missing = make_context(test_env, overrides=["tensorrt.qdq_onnx=onnx/nope.onnx"])
    plan = trt_convert.int8_plan(missing)
    assert (
        plan.mode == "calibrate"
        and plan.why is not None
        and "does not exist (run `modelport convert onnx-int8-tensorrt` first)" in plan.why
    )
