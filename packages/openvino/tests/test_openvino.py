"""The OpenVINO backend with the real OpenVINO: a tiny ONNX model made here, and the pipeline's model
when its artifacts exist (MODELPORT_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from conftest import make_context
from modelport.common.calibration import CalibrationSet
from modelport.common.context import StepContext
from modelport.common.reference import REFERENCE
from modelport.convert.registry import TARGETS, target_module
from modelport.openvino.runtime import OpenvinoFp32Runtime, OpenvinoInt8Runtime
from modelport.runtime.registry import RUNTIMES, runtime_class

pytest.importorskip("openvino")


def tiny_onnx(path: Path, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Conv 1x1 (3->4) + bias -> Relu -> GlobalAveragePool -> Flatten; returns (weights, bias)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = rng.standard_normal((4, shape[1], 1, 1)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["conv"]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["output"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [shape[0], 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w, b


def reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    conv: np.ndarray = np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0]) + b[None, :, None, None]
    return cast(np.ndarray, np.maximum(conv, 0).mean(axis=(2, 3)))


@pytest.fixture(scope="module")
def ctx(test_env: dict[str, str]) -> StepContext:
    return make_context(test_env)


def save_ir(onnx_path: Path, out: Path) -> tuple[Path, Path]:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(out), compress_to_fp16=False)
    return out, out.with_suffix(".bin")


def test_registered_through_entry_points() -> None:
    for key in ("openvino-fp32", "openvino-int8"):
        assert key in RUNTIMES and key in TARGETS
        assert target_module(key).unavailable_reason() is None
    assert runtime_class("openvino-fp32") is OpenvinoFp32Runtime
    assert runtime_class("openvino-int8") is OpenvinoInt8Runtime
    assert all(not where.startswith("modelport.openvino.") for k, where in RUNTIMES.items() if not k.startswith("openvino-"))


def test_fp32_matches_numpy_reference(ctx: StepContext, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shape = ctx.config.input.shape("NCHW")
    w, b = tiny_onnx(tmp_path / "tiny.onnx", shape, rng)
    xml, bin_ = save_ir(tmp_path / "tiny.onnx", tmp_path / "model.xml")
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    with OpenvinoFp32Runtime(ctx.config, {"model": xml, "weights": bin_}) as rt:
        outs = [rt.infer(x) for x in xs]
        call = rt.own_call(xs[0])
        call()
        bare = rt.request.get_output_tensor(0).data
        np.testing.assert_allclose(bare, reference(xs[0], w, b), rtol=1e-5, atol=1e-5)
        settings = rt.settings()
    for x, o in zip(xs, outs, strict=True):
        assert o.shape == (1, 4)
        np.testing.assert_allclose(o, reference(x, w, b), rtol=1e-5, atol=1e-5)
    assert not np.allclose(outs[0], outs[1])  # each call gives its own result (the output is copied)
    assert settings["INFERENCE_PRECISION_HINT"] == "f32" and cast(int, settings["INFERENCE_NUM_THREADS"]) >= 1


def test_config_knobs_reach_compile_model(ctx: StepContext, tmp_path: Path) -> None:
    from modelport.bench.tuning import config_with

    tiny_onnx(tmp_path / "tiny.onnx", ctx.config.input.shape("NCHW"), np.random.default_rng(3))
    xml, bin_ = save_ir(tmp_path / "tiny.onnx", tmp_path / "model.xml")
    # 2 threads: the plugin caps the streams at the thread count
    cfg = config_with(
        ctx.config,
        {
            "openvino.threads": 2,
            "openvino.performance_hint": "throughput",
            "openvino.num_streams": 2,
            "openvino.cpu_pinning": False,
        },
    )
    with OpenvinoFp32Runtime(cfg, {"model": xml, "weights": bin_}) as rt:
        got = {k: rt.compiled.get_property(k) for k in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "ENABLE_CPU_PINNING")}
        hint = str(rt.compiled.get_property("PERFORMANCE_HINT"))
    assert got == {"INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 2, "ENABLE_CPU_PINNING": False}
    assert hint.endswith("THROUGHPUT")


def test_nncf_quantize_tiny_model(ctx: StepContext, tmp_path: Path) -> None:
    """NNCF INT8 of the tiny model through the same helper the target uses, close to the reference."""
    import openvino as ov

    from modelport.openvino.convert import nncf_quantize

    rng = np.random.default_rng(1)
    shape = ctx.config.input.shape("NCHW")
    w, b = tiny_onnx(tmp_path / "tiny.onnx", shape, rng)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]

    class Calib:
        def tensors(self, layout: str, dtype: str) -> Iterator[np.ndarray]:
            assert (layout, dtype) == ("NCHW", "float32")
            return iter(xs)

    model = nncf_quantize(ov.convert_model(str(tmp_path / "tiny.onnx")), cast(CalibrationSet, Calib()))
    ov.save_model(model, str(tmp_path / "model.int8.xml"), compress_to_fp16=False)
    assert "FakeQuantize" in (tmp_path / "model.int8.xml").read_text()
    with OpenvinoInt8Runtime(ctx.config, {"model": tmp_path / "model.int8.xml", "weights": tmp_path / "model.int8.bin"}) as rt:
        out = rt.infer(xs[0])
    ref = reference(xs[0], w, b)
    cos = float((out.ravel() @ ref.ravel()) / (np.linalg.norm(out) * np.linalg.norm(ref)))
    assert cos > 0.99


def test_quantized_layers_are_read_from_the_int8_ir(ctx: StepContext, tmp_path: Path) -> None:
    """The recovery search's candidates: layers with a FakeQuantize on an input in the INT8 IR; a layer in
    NNCF's ignored_scope, and the FP32 IR, have none."""
    import openvino as ov

    from modelport.openvino.convert import nncf_quantize, ov_ops, quantized_layers

    rng = np.random.default_rng(1)
    shape = ctx.config.input.shape("NCHW")
    tiny_onnx(tmp_path / "tiny.onnx", shape, rng)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]

    class Calib:
        def tensors(self, layout: str, dtype: str) -> Iterator[np.ndarray]:
            return iter(xs)

    def int8(name: str, ignored: Sequence[str] = ()) -> set[str]:
        model = ov.convert_model(str(tmp_path / "tiny.onnx"))
        ignored = ov_ops(model, tmp_path / "tiny.onnx", list(ignored))
        ov.save_model(
            nncf_quantize(model, cast(CalibrationSet, Calib()), ignored=ignored), str(tmp_path / name), compress_to_fp16=False
        )
        return quantized_layers(tmp_path / name, tmp_path / "tiny.onnx")

    # the Conv (+Relu), and the pool: NNCF's CPU config quantizes a GlobalAveragePool's input; Flatten has none
    assert int8("all.xml") == {"conv", "pool"}
    assert int8("ignored.xml", ["conv"]) == {"pool"}  # an ignored layer loses its quantizer, the others keep theirs
    assert int8("both.xml", ["conv", "pool"]) == set()
    save_ir(tmp_path / "tiny.onnx", tmp_path / "fp32.xml")
    assert quantized_layers(tmp_path / "fp32.xml", tmp_path / "tiny.onnx") == set()


def test_wrong_input_shape_is_an_input_error(ctx: StepContext, tmp_path: Path) -> None:
    from modelport.common.errors import InputError

    tiny_onnx(tmp_path / "tiny.onnx", (1, 3, 8, 8), np.random.default_rng(2))
    xml, bin_ = save_ir(tmp_path / "tiny.onnx", tmp_path / "model.xml")
    with pytest.raises(InputError, match="does not match the config"):
        OpenvinoFp32Runtime(ctx.config, {"model": xml, "weights": bin_}).activate()


def test_throughput_is_async_infer_requests_on_streams_of_one_compiled_model(ctx: StepContext, tmp_path: Path) -> None:
    from modelport.bench.measure import throughput_point

    tiny_onnx(tmp_path / "tiny.onnx", ctx.config.input.shape("NCHW"), np.random.default_rng(5))
    xml, bin_ = save_ir(tmp_path / "tiny.onnx", tmp_path / "model.xml")
    x = np.random.default_rng(6).standard_normal(ctx.config.input.shape("NCHW")).astype(np.float32)
    with OpenvinoFp32Runtime(ctx.config, {"model": xml, "weights": bin_}) as rt:
        assert rt.compiled_for(1) is rt.compiled  # one request: the row's own compiled model, as batch-1 timed it
        three = rt.compiled_for(3)
        streams, per = three.get_property("NUM_STREAMS"), rt.worker_threads(3)
        assert 1 <= streams <= 3 and f"on {streams} stream" in rt.concurrency_mechanism(3)  # capped at the cores
        assert per == three.get_property("INFERENCE_NUM_THREADS") // streams >= 1
        del three
        for n in (1, 3):
            p = throughput_point(rt, x, n, 0.1)
            assert p.concurrency == n and p.mechanism.startswith(f"AsyncInferQueue: {n} infer request")
            assert p.threads_per_worker == rt.worker_threads(n) and p.inferences >= 1 and p.fps > 0
            assert 0 < p.p50 <= p.p90 <= p.p99
        assert rt.active and np.allclose(rt.infer(x), rt.infer(x))  # the row's own request still answers


def test_peer_throughput_runs_benchmark_app_on_the_same_ir(ctx: StepContext, tmp_path: Path) -> None:
    tiny_onnx(tmp_path / "tiny.onnx", ctx.config.input.shape("NCHW"), np.random.default_rng(7))
    xml, bin_ = save_ir(tmp_path / "tiny.onnx", tmp_path / "model.xml")
    x = np.zeros(ctx.config.input.shape("NCHW"), np.float32)
    with OpenvinoFp32Runtime(ctx.config, {"model": xml, "weights": bin_}) as rt:
        got = rt.peer_throughput(x, 1.0)
    assert str(got["tool"]).startswith("benchmark_app -m " + str(xml)) and "-hint throughput" in str(got["tool"])
    assert str(got["tool"]).endswith("-ip f32")  # the tool's requests carry what ours do (it would make them u8)
    assert got["ours_fps"] > 0 and got["tool_fps"] > 0  # type: ignore[operator]
    assert got["ours_requests"] >= got["ours_streams"] >= 1  # type: ignore[operator]


@pytest.fixture(scope="module")
def real(test_env: dict[str, str]) -> StepContext:
    """The pipeline's artifacts: this env needs only the ONNX model and the reference the tf-onnx env made."""
    root = os.environ.get("MODELPORT_TEST_ARTIFACTS")
    needed = ("onnx/model.onnx", REFERENCE)
    if not root or not all((Path(root) / rel).is_file() for rel in needed):
        pytest.skip(f"no pipeline artifacts (MODELPORT_TEST_ARTIFACTS with {' and '.join(needed)})")
    return make_context(test_env)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["openvino-fp32", "openvino-int8"])
def test_real_model_converts_and_verifies(real: StepContext, key: str) -> None:
    paths = target_module(key).run(real, force=False)
    assert all(p.is_file() for p in paths)
    from modelport.common.preprocess import to_tensor
    from modelport.runtime.run import prepared_images

    cls = runtime_class(key)
    with cls.from_store(real.store, real.config) as rt:
        out = rt.infer(to_tensor(prepared_images(real)[0], real.config.input, cls.input_layout, cls.input_dtype))
    assert out.shape[0] == 1 and out.shape[1] >= 1000


@pytest.fixture(scope="module")
def real_fp32(real: StepContext) -> StepContext:
    target_module("openvino-fp32").run(real, force=False)
    return real


def test_real_depth_overhead_sweep_and_tune(real_fp32: StepContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """`modelport depth` on the real IR: the harness vs a bare loop of OpenVINO's own infer, a batch sweep
    (sequential batch-1 requests: no batch twin) and a small tuning search over the descriptor's knobs."""
    from modelport.bench import overhead, sweep, tuning

    data = overhead.measure_overhead(real_fp32, "openvino-fp32", rounds=2, runs=3, warmup=1, settings={"openvino.threads": 1})
    assert data["settings"]["INFERENCE_NUM_THREADS"] == 1 and data["bare_mean_ms"] > 0
    assert data["ratio_rounds"]["min"] <= data["ratio"] <= data["ratio_rounds"]["max"]
    monkeypatch.setattr(sweep, "IMAGES_PER_POINT", 4)
    s = sweep.sweep(real_fp32, "openvino-fp32", batches=[1, 4], threads=[1])
    assert s["batch_support"] == "loop" and s["thread_setting"] == "openvino.threads"
    assert [(p["batch"], p["mode"]) for p in s["points"]] == [(1, "loop"), (4, "loop")]
    monkeypatch.setattr(tuning, "ROUNDS", {"search": (1, 2, 2), "final": (1, 2, 2)})
    monkeypatch.setitem(tuning.SPACE, "openvino-fp32", {"openvino.threads": [1, 2], "openvino.num_streams": [1]})
    entry = tuning.tune(real_fp32, "openvino-fp32")
    assert (
        set(entry["winner"]) == {"openvino.threads", "openvino.num_streams"} and len(entry["trials"]) == 5
    )  # threads None (= [tflite] threads), 1, 2; streams None, 1
    assert entry["agreement"]["cosine_min"] > 0.999  # the winner still meets the FP32 floor


def test_real_int8_per_layer_analysis(real_fp32: StepContext) -> None:
    """`analyze openvino-int8` on the real model: named by its descriptor, every ONNX layer matched."""
    from modelport.common.layer_analysis import TARGETS
    from modelport.convert.analyze import run, targets
    from modelport.openvino.analyze import TARGET

    assert "openvino-int8" in TARGETS and targets()["openvino-int8"] is TARGET
    target_module("openvino-int8").run(real_fp32, force=False)
    data = run(real_fp32, "openvino-int8")
    assert data["backend"] == "openvino-int8" and data["images"] == [p.name for p in real_fp32.eval_images]
    assert len(data["layers"]) == data["mapping"]["onnx_layers"] and not data["mapping"]["int8_only"]
    first, last = data["layers"][0], data["layers"][-1]
    assert first["sqnr_db_mean"] > last["sqnr_db_mean"]  # quantization noise accumulates through the network
    assert min(r["own_sqnr_db"] for r in data["layers"]) < 40  # INT8 adds noise of its own somewhere


def test_real_int8_recovery_keeps_layers_in_float_through_ignored_scope(
    real_fp32: StepContext, test_env: dict[str, str], tmp_path: Path
) -> None:
    """Floors no NNCF method meets with every layer INT8: the search keeps the analysis' worst layers in float through NNCF's
    ignored_scope, and only layers the INT8 IR really quantizes (FakeQuantize on an input), so every such
    variant leaves the IR with fewer FakeQuantize ops. Which layers rank worst depends on the CPU's kernels;
    these properties do not."""
    import json
    import shutil

    from modelport.common.errors import AccuracyGateError
    from modelport.common.recovery import record_path
    from modelport.openvino.convert import METHODS, quantized_layers
    from modelport.openvino.recover import OpenvinoKnobs

    shutil.copytree(real_fp32.store.path("source"), tmp_path / "source")
    for rel in ("onnx/model.onnx", "openvino/model.xml", "openvino/model.bin"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        for f in (rel, f"{rel}.manifest.json"):
            shutil.copyfile(real_fp32.store.path(f), tmp_path / f)
    # the methods the search tries before float layers (the configured preset and one other: every method is
    # the same kind of variant), built where the search runs: its own variants, the floor being no part of a
    # variant's identity, are these
    knobs = [
        "quantization.recover_minutes=6",
        "quantization.recover_max_float_layers=2",
        "quantization.recover_rounds=1",
        'quantization.recover_methods=["mixed"]',
    ]
    env = test_env | {"MODELPORT_ARTIFACTS": str(tmp_path)}
    searched = OpenvinoKnobs(make_context(env, overrides=knobs), False)
    assert searched.methods == ["performance", "mixed"] and set(searched.methods) < set(METHODS)
    methods = [searched.build(m, []) for m in searched.methods]
    floor = round(max(cast(dict[str, Any], v.agreement)["cosine_min"] for v in methods) + 0.004, 4)
    ctx = make_context(env, overrides=[f"accuracy.int8_cosine_min={floor}", *knobs, "bench.runs=8"])
    try:
        target_module("openvino-int8").run(ctx, force=False)
    except AccuracyGateError:
        pass  # the best variant is below even these floors: the record still says what was tried
    record = json.loads((tmp_path / record_path("openvino-int8")).read_text())
    assert record["searched"] and record["default"] == "performance"
    default = record["variants"][0]
    quantized = quantized_layers(tmp_path / default["files"]["model"], tmp_path / "onnx/model.onnx")
    assert "MobilenetV2/Predictions/Reshape_1" not in quantized  # the Softmax has no FakeQuantize
    floated = [v for v in record["variants"] if v["float_layers"] and v["files"]]
    assert floated  # no method meets the floor: the search went on to float layers
    fq: Callable[[dict[str, Any]], int] = lambda v: (tmp_path / v["files"]["model"]).read_text().count('type="FakeQuantize"')  # noqa: E731
    for v in floated:
        assert set(v["float_layers"]) <= quantized, v["id"]  # only layers the INT8 model quantizes
        assert fq(v) < fq(default), v["id"]  # and ignored_scope took effect: a different model
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    assert kept["passes"] == (not record["below_floors"])


def test_infer_all_returns_a_detectors_outputs_by_name(tmp_path: Path) -> None:
    """A YOLOX-like head through OpenVINO: every output under the model's own name, as onnx's reference
    evaluator computes it (what the detector path decodes after every runtime)."""
    import onnx.reference

    from tiny_models import tiny_detector_pipeline

    env = tiny_detector_pipeline(tmp_path)
    config = make_context(env, overrides=["input.size=[32,32]"]).config
    xml, bin_ = save_ir(Path(env["MODELPORT_MODEL"]), tmp_path / "model.xml")
    x = np.random.default_rng(4).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    (want,) = onnx.reference.ReferenceEvaluator(env["MODELPORT_MODEL"]).run(None, {"image": x})
    assert isinstance(want, np.ndarray)
    with OpenvinoFp32Runtime(config, {"model": xml, "weights": bin_}) as rt:
        outs = rt.infer_all(x)
        assert list(outs) == ["output"] and outs["output"].shape == (1, 21, 8)
        np.testing.assert_allclose(outs["output"], want, atol=1e-5)
        np.testing.assert_array_equal(outs["output"], rt.infer(x))
