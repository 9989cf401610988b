"""Focus (space-to-depth as step-2 slices) through pnnx and ncnn, against the ONNX model itself.

The ncnn env has no onnxruntime: the ONNX side runs in onnx's own reference evaluator (on
YOLOX-nano it agrees with onnxruntime within 2e-5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from modelport.common.config import Config
from modelport.common.preprocess import InputSpec
from modelport.ncnn.convert import pnnx_ready, run_pnnx
from modelport.ncnn.focus import rewrite_focus
from modelport.ncnn.format import read_param
from modelport.ncnn.runtime import NcnnRuntime

pytestmark = pytest.mark.ncnn

# YOLOX's order: top-left, bottom-left, top-right, bottom-right ((row, column) offsets)
YOLOX_ORDER = [(0, 0), (1, 0), (0, 1), (1, 1)]


def focus_onnx(
    path: Path, order: list[tuple[int, int]] = YOLOX_ORDER, size: int = 16, axes_first: int = 2, second_output: bool = True
) -> Path:
    """input [1,3,size,size] -> four step-2 slice pairs -> Concat -> Conv 3x3 -> Relu (and a second head)."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.005, (8, 12, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([2**63 - 1], np.int64), "end"),
    ]
    for v in (0, 1):
        inits.append(numpy_helper.from_array(np.array([v], np.int64), f"start{v}"))
    for a in (2, 3):
        inits.append(numpy_helper.from_array(np.array([a], np.int64), f"axis{a}"))
    first, second = axes_first, 5 - axes_first
    nodes, outs = [], []
    for off in (0, 1):
        nodes.append(helper.make_node("Slice", ["image", f"start{off}", "end", f"axis{first}", "two"], [f"half{off}"]))
    for dy, dx in order:
        outer, inner = (dy, dx) if first == 2 else (dx, dy)
        name = f"p{dy}{dx}"
        nodes.append(helper.make_node("Slice", [f"half{outer}", f"start{inner}", "end", f"axis{second}", "two"], [name]))
        outs.append(name)
    nodes += [
        helper.make_node("Concat", outs, ["focus"], axis=1),
        helper.make_node("Conv", ["focus", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["features"]),
    ]
    outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8, size // 2, size // 2])]
    if second_output:
        nodes.append(helper.make_node("Conv", ["features", "w2"], ["head"]))
        nodes.append(helper.make_node("Sigmoid", ["head"], ["scores"]))
        outputs.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4, size // 2, size // 2]))
    graph = helper.make_graph(
        nodes, "focus", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def config(size: int) -> Config:
    """Plain [0, 255] float input, so ncnn's pixel path and the float reference see the same numbers."""
    return Config(input=InputSpec(size=(size, size), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))


def detector_config(size: int, src: Path) -> Config:
    """config(size) completed by a two-output contract, as `fetch` leaves it for a detector."""
    from modelport.common.config import ModelConfig
    from modelport.common.contract import Contract, TensorInfo

    outputs = tuple(
        TensorInfo(name=o.name, shape=[d.dim_value for d in o.type.tensor_type.shape.dim])
        for o in onnx.load(str(src)).graph.output
    )
    contract = Contract(
        kind="onnx",
        input_name="image",
        input_shape=[1, 3, size, size],
        layout="NCHW",
        size=(size, size),
        channels=3,
        dtype="float32",
        output_name=outputs[0].name,
        classes=4,
        task="detect",
        outputs=outputs,
    )
    cfg = config(size).model_copy(update={"model": ModelConfig(task="detect")})
    return cfg.with_contract(contract, src)


def pixels(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, size, size, 3), dtype=np.uint8)


def convert(onnx_path: Path, tmp_path: Path, size: int) -> tuple[Path, Path, int]:
    ready, count = pnnx_ready(onnx_path, tmp_path, (1, 3, size, size))
    param, binfile = run_pnnx(ready, tmp_path, (1, 3, size, size), fp16=False)
    return param, binfile, count


@pytest.mark.parametrize("order", [YOLOX_ORDER, [(1, 1), (0, 0), (1, 0), (0, 1)]])
@pytest.mark.parametrize("axes_first", [2, 3])
def test_focus_model_runs_in_ncnn_and_matches_onnx(tmp_path: Path, order: list[tuple[int, int]], axes_first: int) -> None:
    size = 16
    src = focus_onnx(tmp_path / "focus.onnx", order=order, axes_first=axes_first)
    param, binfile, count = convert(src, tmp_path, size)
    assert count == 1
    types = [line.split()[0] for line in param.read_text().splitlines()[2:]]
    assert "Reorg" in types and not any(t.startswith("Tensor.") for t in types), types
    x = pixels(size)
    expected = ReferenceEvaluator(str(src)).run(None, {"image": x.transpose(0, 3, 1, 2).astype(np.float32)})
    with NcnnRuntime(config(size), {"param": param, "bin": binfile}) as rt:
        got = rt.outputs(x)
        first = rt.infer(x)  # the timed call: every output computed, the first returned
    np.testing.assert_array_equal(first, got["out0"].reshape(1, -1))
    assert len(got) == 2
    for want, have in zip(expected, got.values(), strict=True):
        np.testing.assert_allclose(have, want[0], rtol=1e-5, atol=1e-4)
    with NcnnRuntime(detector_config(size, src), {"param": param, "bin": binfile}) as rt:
        named = rt.infer_all(x)
    assert list(named) == ["features", "scores"]  # the source's names and shapes, in its order
    for want, (name, have) in zip(expected, named.items(), strict=True):
        assert have.shape == want.shape, name
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-4)


def test_a_graph_without_focus_is_left_as_it_was(tmp_path: Path) -> None:
    src = focus_onnx(tmp_path / "focus.onnx")
    model = onnx.load(str(src))
    model.graph.node[-5].input[3] = "p00"  # the concat now reads one phase twice: no space-to-depth
    before = model.SerializeToString()
    assert rewrite_focus(model, (1, 3, 16, 16)) == 0
    assert model.SerializeToString() == before


def test_rewrite_keeps_the_onnx_outputs(tmp_path: Path) -> None:
    src = focus_onnx(tmp_path / "focus.onnx")
    model = onnx.load(str(src))
    assert rewrite_focus(model, (1, 3, 16, 16)) == 1
    assert not [n for n in model.graph.node if n.op_type in ("Slice", "Concat")]
    x = {"image": np.random.default_rng(2).uniform(0, 255, (1, 3, 16, 16)).astype(np.float32)}
    for a, b in zip(ReferenceEvaluator(str(src)).run(None, x), ReferenceEvaluator(model).run(None, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_yolox_nano_fp32_in_ncnn_matches_onnx(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "detection" / "yolox_nano.onnx"
    param, binfile, count = convert(src, tmp_path, 416)
    assert count == 1
    x = pixels(416, seed=3)
    want = np.asarray(next(iter(ReferenceEvaluator(str(src)).run(None, {"images": x.transpose(0, 3, 1, 2).astype(np.float32)}))))
    with NcnnRuntime(config(416), {"param": param, "bin": binfile}) as rt:
        (got,) = rt.outputs(x).values()
        single = rt.infer(x)
    assert got.shape == (3549, 85)
    np.testing.assert_array_equal(single.reshape(got.shape), got)
    np.testing.assert_allclose(got, want[0], rtol=0, atol=1e-3)


def letterboxed(path: Path, size: int = 416) -> np.ndarray:
    """YOLOX's input: BGR 0..255, resized keeping the aspect ratio, top-left, padded with 114 (NHWC uint8)."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    r = min(size / im.width, size / im.height)
    im = im.resize((round(im.width * r), round(im.height * r)), Image.Resampling.BILINEAR)
    canvas = np.full((size, size, 3), 114, np.uint8)
    pixels = np.asarray(im)[:, :, ::-1]
    canvas[: pixels.shape[0], : pixels.shape[1]] = pixels
    return canvas[None]


@pytest.mark.slow
def test_yolox_nano_through_our_int8_writer_loads_and_runs(data_dir: Path, tmp_path: Path) -> None:
    """Not a floor (defaults are far off on YOLOX, as onnxruntime's and RKNN's are): the model loads, ncnn runs
    its int8 kernels, and the outputs are the detector's, not garbage."""
    from modelport.ncnn.format import load, write_bin, write_param
    from modelport.ncnn.quantize import quantize_model
    from modelport.ncnn.runtime import NcnnInt8Runtime
    from modelport.ncnn.table import Table, calibrate

    src = data_dir / "detection" / "yolox_nano.onnx"
    param, binfile, _ = convert(src, tmp_path, 416)
    calibration = [letterboxed(p) for p in sorted((data_dir / "images" / "calibration").glob("*.jpg"))[::4]]
    photos = [letterboxed(p) for p in sorted((data_dir / "detection" / "coco" / "images").glob("*.jpg"))[:4]]
    cfg = config(416)
    model = load(param, binfile)
    with NcnnRuntime(cfg, {"param": param, "bin": binfile}) as fp32:
        scales, stats = calibrate(model, fp32.blobs, lambda: iter(calibration), "minmax")
        want = [fp32.outputs(x)["out0"] for x in photos]
    table = Table.build(model, scales)
    table.disabled |= {la.name for la in model.layers if la.type == "ConvolutionDepthWise"} & set(table.weights)
    layers = quantize_model(model, table, input_means={k: s.channel_mean for k, s in stats.items()})
    p8, b8 = tmp_path / "int8.param", tmp_path / "int8.bin"
    write_param(model, p8)
    write_bin(model, b8)
    assert len(layers["quantized"]) > 50
    with NcnnInt8Runtime(cfg, {"param": p8, "bin": b8}) as int8:
        got = [int8.outputs(x)["out0"] for x in photos]
        assert int8.settings()["int8_layers"] == len(layers["quantized"])
    for w, g in zip(want, got, strict=True):
        assert g.shape == (3549, 85) and np.isfinite(g).all()
        objectness = np.dot(w[:, 4], g[:, 4]) / np.linalg.norm(w[:, 4]) / np.linalg.norm(g[:, 4])
        assert objectness > 0.5, objectness  # measured 0.73..0.99 over the 13 photos


def yolox_like_onnx(path: Path) -> Path:
    """focus_onnx's Focus + Conv, then SiLU written as x * Sigmoid(x) and two 1x1 convs with the same weight
    count reading it (a CSP block's two branches), one through its own SiLU, concatenated."""
    model = onnx.load(str(focus_onnx(path, second_output=False)))
    rng = np.random.default_rng(4)
    g = model.graph
    g.initializer.extend(
        [numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 1, 1)).astype(np.float32), name) for name in ("wa", "wb")]
    )
    g.node.extend(
        [
            helper.make_node("Sigmoid", ["features"], ["gate"], name="act/Sigmoid"),
            helper.make_node("Mul", ["features", "gate"], ["silu"], name="act/Mul"),
            helper.make_node("Conv", ["silu", "wa"], ["branch_a"], name="a/Conv"),
            helper.make_node("Conv", ["silu", "wb"], ["branch_b"], name="b/Conv"),
            helper.make_node("Sigmoid", ["branch_b"], ["gate_b"], name="b/act/Sigmoid"),
            helper.make_node("Mul", ["branch_b", "gate_b"], ["silu_b"], name="b/act/Mul"),
            helper.make_node("Concat", ["silu_b", "branch_a"], ["joined"], name="Concat", axis=1),
        ]
    )
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("joined", TensorProto.FLOAT, [1, 16, 8, 8]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_every_layer_of_a_focus_silu_model_is_named_and_holds_its_onnx_tensor(tmp_path: Path) -> None:
    """Per-layer names (what the INT8 analysis and the search's float layers go by) on YOLOX's patterns: the
    Reorg pnnx makes of the rewritten Focus, Swish for SiLU, two convs reading one tensor. Each mapped ncnn
    blob must hold the values of the ONNX tensor it is mapped to."""
    from modelport.common import onnx_layers
    from modelport.ncnn.names import map_model

    size = 16
    src = yolox_like_onnx(tmp_path / "yolox_like.onnx")
    param, binfile, count = convert(src, tmp_path, size)
    assert count == 1
    ready = onnx.load(str(tmp_path / "focus-rewritten.onnx"))  # the graph pnnx read, as analyze.mapping rebuilds it
    mapping = map_model(read_param(param), onnx_layers.from_model(ready), ready)
    types = {la.name: la.type for la in read_param(param).layers}
    assert {"Reorg", "Swish"} <= set(types.values()), types
    assert [n for n in mapping.unmapped if types[n] not in ("Reshape", "Permute")] == [], mapping.unmapped
    assert {la.node for la in mapping.layers.values()} >= {"a/Conv", "b/Conv", "act/Mul", "b/act/Mul", "Concat"}
    x = pixels(size, seed=7)
    blobs = [b for b in mapping.blobs if b != "in0"]
    tensors = sorted({mapping.blobs[b] for b in blobs})
    want = dict(
        zip(tensors, ReferenceEvaluator(ready).run(tensors, {"image": x.transpose(0, 3, 1, 2).astype(np.float32)}), strict=True)
    )
    with NcnnRuntime(config(size), {"param": param, "bin": binfile}) as rt:
        got = rt.blobs(x, blobs)
    for blob in blobs:
        np.testing.assert_allclose(
            got[blob].reshape(-1), want[mapping.blobs[blob]].reshape(-1), rtol=1e-4, atol=1e-3, err_msg=blob
        )
