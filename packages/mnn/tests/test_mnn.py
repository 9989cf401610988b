"""The MNN backend with the real MNN: a tiny ONNX model made here (compared with onnxruntime), the conversion
sandbox (no pip, no network), and the pipeline's model when its artifacts exist (MODELPORT_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import make_context
from modelport.common.context import StepContext
from modelport.common.reference import REFERENCE
from modelport.convert.registry import TARGETS, target_module
from modelport.mnn.runtime import MnnFp32Runtime, MnnInt8Runtime, MnnW8Runtime
from modelport.runtime.registry import RUNTIMES, runtime_class
from tiny_models import tiny_onnx

pytest.importorskip("MNN")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def ctx(test_env: dict[str, str]) -> StepContext:
    return make_context(test_env)


def tiny(ctx: StepContext, tmp_path: Path) -> Path:
    """The tiny classifier at the config's input size, NCHW, batch 1."""
    _, c, h, w = ctx.config.input.shape("NCHW")
    return tiny_onnx(tmp_path / "tiny.onnx", size=(h, w), channels=c, batch=1)


def onnxruntime_outputs(onnx: Path, xs: list[np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: x})[0] for x in xs]


def wide_onnx(path: Path, shape: tuple[int, ...]) -> Path:
    """Conv 3x3 (32) -> ReLU -> Conv 3x3 (64) -> global average pool -> Gemm (10): enough weights (20k) that
    how they are stored shows in the file size, unlike the tiny classifier's few hundred."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    c = shape[1]
    weights = {
        "w1": rng.normal(0, 0.3, (32, c, 3, 3)),
        "b1": rng.normal(0, 0.1, (32,)),
        "w2": rng.normal(0, 0.1, (64, 32, 3, 3)),
        "b2": rng.normal(0, 0.1, (64,)),
        "fc": rng.normal(0, 0.3, (64, 10)),
        "fb": rng.normal(0, 0.1, (10,)),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fb"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [shape[0], 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what every env's onnxruntime reads
    onnx.save(model, path)
    return path


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_registered_through_entry_points() -> None:
    for key in ("mnn-fp32", "mnn-w8", "mnn-int8"):
        assert key in RUNTIMES and key in TARGETS
        assert target_module(key).unavailable_reason() is None
    assert runtime_class("mnn-fp32") is MnnFp32Runtime
    assert runtime_class("mnn-w8") is MnnW8Runtime
    assert runtime_class("mnn-int8") is MnnInt8Runtime


def test_weight_only_int8_is_reported_as_float_compute() -> None:
    """The W8 row says what it is: INT8 weights with float compute, its rounded weights judged by the INT8 floors,
    no INT8-vs-FP32 twin."""
    from modelport.common.backends import backends
    from modelport.mnn.convert import W8

    b = backends()["mnn-w8"]
    assert b.floors == W8.kind == "int8" and b.fp32_twin is None and b.analysis is None
    assert "INT8 weights" in b.display and "FP32 compute" in b.display and b.precision == "int8-weights+fp32"


def test_fp32_tiny_model_matches_onnxruntime(ctx: StepContext, tmp_path: Path) -> None:
    from modelport.mnn.convert import convert_onnx

    onnx = tiny(ctx, tmp_path)
    convert_onnx(onnx, tmp_path / "model.mnn", tmp_path / "convert.log")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(ctx.config.input.shape("NCHW")).astype(np.float32) for _ in range(3)]
    with MnnFp32Runtime(ctx.config, {"model": tmp_path / "model.mnn"}) as rt:
        outs = [rt.infer(x) for x in xs]
        rt.own_call(xs[0])()
        bare = np.array(next(iter(rt.outputs.values())).getNumpyData())
    refs = onnxruntime_outputs(onnx, xs)
    for o, r in zip(outs, refs, strict=True):
        assert o.shape == r.shape == (1, 10)
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bare, refs[0], rtol=1e-4, atol=1e-5)  # the bare call runs the same session
    assert not np.allclose(outs[0], outs[1])  # each call gives its own result (the output is copied)


def test_int8_tiny_model_is_quantized_and_close(ctx: StepContext, tmp_path: Path) -> None:
    """MNN's own calibration on the tiny model: outputs close to onnxruntime's but not identical (INT8 ran)."""
    from modelport.mnn.convert import convert_onnx, quantize

    onnx = tiny(ctx, tmp_path)
    convert_onnx(onnx, tmp_path / "float.mnn", tmp_path / "convert.log")
    rng = np.random.default_rng(1)
    shape = ctx.config.input.shape("NCHW")
    calib = np.stack([rng.standard_normal(shape).astype(np.float32) for _ in range(4)])
    quantize(
        tmp_path / "float.mnn", tmp_path / "model.int8.mnn", calib, tmp_path, tmp_path / "q.log", "moving_average", "per_tensor"
    )
    x = calib[0]
    with MnnInt8Runtime(ctx.config, {"model": tmp_path / "model.int8.mnn"}) as rt:
        out = rt.infer(x)
    (ref,) = onnxruntime_outputs(onnx, [x])
    assert cosine(out, ref) > 0.99 and not np.allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_int8_of_a_two_output_detector_head_keeps_each_output_under_its_name(ctx: StepContext, tmp_path: Path) -> None:
    """MNN's calibration on an SSD-like head (scores, boxes): both outputs come out of the INT8 model under their
    own names, each close to onnxruntime's (and not bit-equal: INT8 ran)."""
    import MNN

    from modelport.mnn.convert import convert_onnx, quantize
    from tiny_models import tiny_boxes_scores

    onnx = tiny_boxes_scores(tmp_path / "head.onnx", size=(32, 32))
    convert_onnx(onnx, tmp_path / "float.mnn", tmp_path / "convert.log")
    rng = np.random.default_rng(2)
    calib = np.stack([rng.uniform(0, 255, (1, 3, 32, 32)).astype(np.float32) for _ in range(4)])
    quantize(tmp_path / "float.mnn", tmp_path / "int8.mnn", calib, tmp_path, tmp_path / "q.log", "maximum", "per_tensor")
    F = MNN.expr
    net = MNN.nn.load_module_from_file(str(tmp_path / "int8.mnn"), ["image"], ["boxes", "scores"])
    x = calib[0]
    got = [np.array(y.read()) for y in net.forward([F.const(x.ravel().tolist(), list(x.shape), F.NCHW)])]

    want = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(["boxes", "scores"], {"image": x})
    for name, g, w in zip(("boxes", "scores"), got, want, strict=True):
        assert g.shape == w.shape, name
        assert cosine(g, w) > 0.99 and not np.allclose(g, w, rtol=1e-5, atol=1e-6), name


def test_weight_only_int8_tiny_model_stores_int8_weights_and_matches_onnxruntime(ctx: StepContext, tmp_path: Path) -> None:
    """--weightQuantBits=8 on the tiny model: a smaller file than the float conversion (the weights are stored
    in 8 bits), outputs within weight rounding of onnxruntime's, and not bit-equal to the float model's."""
    from modelport.mnn.convert import convert_onnx

    onnx = wide_onnx(tmp_path / "wide.onnx", ctx.config.input.shape("NCHW"))
    convert_onnx(onnx, tmp_path / "model.mnn", tmp_path / "f.log")
    convert_onnx(onnx, tmp_path / "model.w8.mnn", tmp_path / "w.log", weight_bits=8)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(ctx.config.input.shape("NCHW")).astype(np.float32) for _ in range(3)]
    with MnnW8Runtime(ctx.config, {"model": tmp_path / "model.w8.mnn"}) as rt:
        w8 = [rt.infer(x) for x in xs]
    with MnnFp32Runtime(ctx.config, {"model": tmp_path / "model.mnn"}) as rt:
        fp32 = [rt.infer(x) for x in xs]
    assert (tmp_path / "model.w8.mnn").stat().st_size < (tmp_path / "model.mnn").stat().st_size / 2
    for have, ref, f in zip(w8, onnxruntime_outputs(onnx, xs), fp32, strict=True):
        assert have.shape == ref.shape and cosine(have, ref) > 0.999
        assert not np.array_equal(have, f)  # the stored weights are not the float ones


def conv_kernels(model: Path) -> list[str]:
    """The kernel type MNN runs for each convolution of ``model``, in order ("Convolution [ DT_INT8 ]" when INT8)."""
    import MNN

    interpreter = MNN.Interpreter(str(model))
    session = interpreter.createSession({"numThread": 1})
    kinds: list[str] = []

    def before(_tensors: Any, _info: Any) -> bool:
        return True

    def after(_tensors: Any, info: Any) -> bool:
        if "Conv" in info.getType():
            kinds.append(info.getType().strip())
        return True

    interpreter.runSessionWithCallBackInfo(session, before, after)
    return kinds


def test_int8_with_the_input_conv_in_float_keeps_exactly_that_conv_float(ctx: StepContext, tmp_path: Path) -> None:
    """+float_input on a model of three convolutions (the Gemm becomes one): MNN runs the one on the input with
    its float kernel and the others INT8, where plain train_quant runs all three INT8; outputs close to
    onnxruntime's."""
    from modelport.mnn.convert import convert_onnx, quantize

    onnx = wide_onnx(tmp_path / "wide.onnx", ctx.config.input.shape("NCHW"))
    convert_onnx(onnx, tmp_path / "float.mnn", tmp_path / "convert.log")
    rng = np.random.default_rng(4)
    calib = np.stack([rng.standard_normal(ctx.config.input.shape("NCHW")).astype(np.float32) for _ in range(4)])
    for name, float_input in (("all.mnn", False), ("head.mnn", True)):
        quantize(
            tmp_path / "float.mnn", tmp_path / name, calib, tmp_path, tmp_path / "q.log", "maximum", "per_tensor", float_input
        )
    int8 = "Convolution [ DT_INT8 ]"
    assert conv_kernels(tmp_path / "float.mnn") == ["Convolution"] * 3
    assert conv_kernels(tmp_path / "all.mnn") == [int8] * 3
    assert conv_kernels(tmp_path / "head.mnn") == ["Convolution", int8, int8]
    with MnnInt8Runtime(ctx.config, {"model": tmp_path / "head.mnn"}) as rt:
        out = rt.infer(calib[0])
    (ref,) = onnxruntime_outputs(onnx, [calib[0]])
    assert cosine(out, ref) > 0.99


def test_the_input_conv_is_found_behind_slices_and_a_concat(ctx: StepContext, tmp_path: Path) -> None:
    """A model whose input reaches its first convolution through Slice and Concat (as YOLOX's Focus does): that
    convolution is the one +float_input keeps float, and the others are INT8."""
    import onnx as onnx_lib
    from onnx import helper, numpy_helper

    from modelport.mnn.convert import convert_onnx, quantize

    model = onnx_lib.load(str(wide_onnx(tmp_path / "wide.onnx", ctx.config.input.shape("NCHW"))))
    g, x = model.graph, model.graph.input[0].name
    first = next(n for n in g.node if n.op_type == "Conv")
    for name, value in (("s0", 0), ("s2", 2), ("s3", 3), ("axis", 1)):
        g.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    focus = [
        helper.make_node("Slice", [x, "s0", "s2", "axis"], ["lo"], name="lo"),
        helper.make_node("Slice", [x, "s2", "s3", "axis"], ["hi"], name="hi"),
        helper.make_node("Concat", ["lo", "hi"], ["joined"], name="joined", axis=1),
    ]
    first.input[0] = "joined"
    for i, node in enumerate(focus):
        g.node.insert(i, node)
    onnx_lib.save(model, str(tmp_path / "focus.onnx"))
    convert_onnx(tmp_path / "focus.onnx", tmp_path / "float.mnn", tmp_path / "convert.log")
    rng = np.random.default_rng(5)
    calib = np.stack([rng.standard_normal(ctx.config.input.shape("NCHW")).astype(np.float32) for _ in range(4)])
    quantize(tmp_path / "float.mnn", tmp_path / "head.mnn", calib, tmp_path, tmp_path / "q.log", "maximum", "per_tensor", True)
    assert conv_kernels(tmp_path / "head.mnn") == ["Convolution", "Convolution [ DT_INT8 ]", "Convolution [ DT_INT8 ]"]


def test_an_unknown_int8_method_is_refused_in_one_line() -> None:
    from modelport.common.errors import InputError
    from modelport.mnn.convert import METHODS, parse_method

    assert [parse_method(m) for m in METHODS[:2]] == [("maximum", True), ("maximum", False)]
    with pytest.raises(InputError, match="MNN INT8 method 'maximum\\+kl' is not one of maximum\\+float_input, maximum,"):
        parse_method("maximum+kl")


def test_config_knobs_reach_the_session(ctx: StepContext, tmp_path: Path) -> None:
    from modelport.bench.tuning import config_with
    from modelport.mnn.convert import convert_onnx

    convert_onnx(tiny(ctx, tmp_path), tmp_path / "model.mnn", tmp_path / "convert.log")
    cfg = config_with(ctx.config, {"mnn.threads": 1, "mnn.precision": "low", "mnn.memory": "low", "mnn.power": "high"})
    with MnnFp32Runtime(cfg, {"model": tmp_path / "model.mnn"}) as rt:
        sent = rt.session_config()
        # Session_Info_ThreadNumber (4) comes back as the int's bits in a float
        threads = struct.unpack("i", struct.pack("f", rt.interpreter.getSessionInfo(rt.session, 4)))[0]
    assert sent == {"backend": "CPU", "numThread": 1, "precision": 2, "memory": 2, "power": 1}
    assert threads == 1  # not the default ([tflite] threads = 2); MNN caps it at the cores it finds


def test_throughput_runs_an_interpreter_and_session_per_worker_at_the_split_thread_count(
    ctx: StepContext, tmp_path: Path
) -> None:
    from modelport.bench.measure import throughput_point
    from modelport.common.timing import cores
    from modelport.mnn.convert import convert_onnx

    convert_onnx(tiny(ctx, tmp_path), tmp_path / "model.mnn", tmp_path / "convert.log")
    x = np.random.default_rng(2).standard_normal(ctx.config.input.shape("NCHW")).astype(np.float32)
    with MnnFp32Runtime(ctx.config, {"model": tmp_path / "model.mnn"}) as rt:
        own = rt.thread_count()
        workers = rt.concurrent_workers(3)
        per = rt.worker_threads(3)
        assert per == max(1, min(own, cores() // 3)) and len({id(w) for w in workers}) == 3
        assert all(isinstance(w, MnnFp32Runtime) and w.session_config()["numThread"] == per for w in workers)
        np.testing.assert_allclose(workers[-1].infer(x), rt.infer(x), rtol=1e-5)
        rt.release_workers(workers)
        for n in (1, 3):
            p = throughput_point(rt, x, n, 0.1)
            assert p.mechanism == f"{n} thread{'s' if n > 1 else ''}, an Interpreter and session each"
            assert p.threads_per_worker == rt.worker_threads(n) and p.inferences >= 1 and p.fps > 0
        assert rt.active


def test_wrong_input_shape_is_an_input_error(ctx: StepContext, tmp_path: Path) -> None:
    from modelport.common.errors import InputError
    from modelport.mnn.convert import convert_onnx

    convert_onnx(tiny_onnx(tmp_path / "small.onnx", size=(8, 8), batch=1), tmp_path / "model.mnn", tmp_path / "c.log")
    with pytest.raises(InputError, match="does not match the config"):
        MnnFp32Runtime(ctx.config, {"model": tmp_path / "model.mnn"}).activate()


def test_a_model_mnn_refuses_is_one_error_line_naming_it(tmp_path: Path) -> None:
    """MNNConvert returns success and writes nothing for a file it cannot read: the step fails, with the log."""
    from modelport.common.errors import ModelportError
    from modelport.mnn.convert import convert_onnx

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07" + b"\x00" * 64)
    with pytest.raises(ModelportError, match="MNNConvert ONNX -> MNN failed \\(exit 1\\): MNNConvert wrote no model") as e:
        convert_onnx(bad, tmp_path / "out.mnn", tmp_path / "c.log")
    assert e.value.path == bad and not (tmp_path / "out.mnn").exists()


def test_an_abort_inside_mnn_is_a_failed_step_not_a_dead_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker runs in a child: a C++ abort there (as the offline quantizer's std::length_error) is an error."""
    from modelport.common.errors import ModelportError
    from modelport.mnn import convert

    monkeypatch.setattr(convert, "WORKER", "worker_that_aborts")
    (tmp_path / "worker_that_aborts.py").write_text(
        "import os, sys\nprint('terminate called: std::length_error', file=sys.stderr)\nos.abort()\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with pytest.raises(ModelportError, match="killed by signal 6\\): terminate called: std::length_error"):
        convert.convert_onnx(tmp_path / "x.onnx", tmp_path / "out.mnn", tmp_path / "c.log")


# Records, in every Python process that starts with it on its path, what would install packages or reach the network.
_AUDIT = textwrap.dedent(
    """
    import json, os, sys
    _LOG = os.environ["MODELPORT_AUDIT_LOG"]
    _WATCH = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "socket.connect",
              "socket.getaddrinfo", "urllib.Request")
    def _hook(event, args):
        if event.startswith(_WATCH):
            what = [str(a) for a in args[1]] if event == "subprocess.Popen" else repr(args)[:400]
            with open(_LOG, "a") as f:
                f.write(json.dumps([event, what]) + "\\n")
    sys.addaudithook(_hook)
    """
)


def test_conversion_starts_no_pip_and_opens_no_socket(ctx: StepContext, tmp_path: Path) -> None:
    """FP32, W8 and INT8 conversion of the tiny model, with an audit hook in the CLI's process and in MNN's worker:
    the only process started is the worker itself, nothing runs pip, nothing connects (the wheel's Python tool
    wrappers would pip-install their usage logger and upload logs)."""
    onnx = tiny(ctx, tmp_path)
    hooks, log = tmp_path / "hooks", tmp_path / "audit.jsonl"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_AUDIT)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from pathlib import Path
        from modelport.mnn.convert import convert_onnx, quantize
        d = Path({str(tmp_path)!r})
        convert_onnx(Path({str(onnx)!r}), d / "f.mnn", d / "c.log")
        convert_onnx(Path({str(onnx)!r}), d / "w.mnn", d / "w.log", weight_bits=8)
        calib = np.random.default_rng(0).standard_normal((2, *{tuple(ctx.config.input.shape("NCHW"))!r})).astype(np.float32)
        quantize(d / "f.mnn", d / "q.mnn", calib, d, d / "q.log", "moving_average", "per_tensor")
        """
    )
    env = {**os.environ, "MODELPORT_AUDIT_LOG": str(log), "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    started = [argv for ev, argv in events if ev == "subprocess.Popen"]
    # the hook saw both workers start, and nothing else: no pip, no os.system / exec, no socket
    worker = [sys.executable, "-m", "modelport.mnn.worker"]
    assert [argv[:4] for argv in started] == [[*worker, c] for c in ("convert", "convert", "quantize")]
    assert started[1][-4:] == ["--weight-bits", "8", "--weight-quant", "hqq"]
    assert [e for e in events if e[0] != "subprocess.Popen"] == []
    assert (tmp_path / "w.mnn").is_file() and (tmp_path / "q.mnn").is_file()


@pytest.fixture(scope="module")
def real(test_env: dict[str, str]) -> StepContext:
    """The pipeline's artifacts: this env needs only the ONNX model and the reference the tf-onnx env made."""
    root = os.environ.get("MODELPORT_TEST_ARTIFACTS")
    needed = ("onnx/model.onnx", REFERENCE)
    if not root or not all((Path(root) / rel).is_file() for rel in needed):
        pytest.skip(f"no pipeline artifacts (MODELPORT_TEST_ARTIFACTS with {' and '.join(needed)})")
    return make_context(test_env)


@pytest.mark.slow
def test_real_model_converts_and_verifies(real: StepContext) -> None:
    paths = target_module("mnn-fp32").run(real, force=False)
    assert all(p.is_file() for p in paths)
    manifest = real.store.read_manifest(real.store.rel(paths[0])) or {}
    agreement = manifest["extra"]["agreement"]
    assert agreement["top1"] == 1.0 and agreement["cosine_min"] >= 0.999


@pytest.mark.slow
def test_real_weight_only_int8_meets_the_int8_floors_at_a_third_of_the_size(real: StepContext) -> None:
    """`convert mnn-w8` on the pipeline's model: verified against the reference like every row and held to the INT8
    floors (what MNN's default symmetric weight rounding misses: cosine min 0.65), its file a quarter of the float
    model's."""
    w8 = target_module("mnn-w8").run(real, force=False)[0]
    fp32 = target_module("mnn-fp32").run(real, force=False)[0]
    manifest = real.store.read_manifest(real.store.rel(w8)) or {}
    agreement, floors = manifest["extra"]["agreement"], real.config.accuracy
    assert manifest["options"]["weight_quant"] == "hqq"
    assert agreement["top1"] >= floors.int8_top1_min and agreement["cosine_min"] >= floors.int8_cosine_min
    assert w8.stat().st_size < fp32.stat().st_size / 3


@pytest.mark.slow
def test_real_int8_is_int8_and_meets_the_floors_or_is_a_failed_row(real: StepContext, test_env: dict[str, str]) -> None:
    """The default mnn-int8 (maximum+float_input) on the pipeline's model meets the INT8 floors here (cosine min
    0.958): an ok row of a really INT8 model; on a CPU whose INT8 kernels land below them, the failed row of the
    test below."""
    from conftest import cli
    from modelport.common.schema import BackendResult

    target_module("mnn-fp32").run(real, force=False)
    made = cli(test_env, "convert", "mnn-int8")
    benched = cli(test_env, "bench", "mnn-int8")
    row = BackendResult.model_validate_json(real.store.path("results/mnn-int8.json").read_text())
    if made.returncode == 0:
        assert benched.returncode == 0 and row.status == "ok", row.reason
        model = real.store.path(MnnInt8Runtime.artifacts["model"])
        manifest = real.store.read_manifest(real.store.rel(model)) or {}
        assert manifest["extra"]["variant"] == "maximum+float_input", manifest["extra"]
    else:
        assert row.status == "failed" and "below the [accuracy] floors" in (row.reason or ""), row.reason
        model = real.store.path("mnn/model.int8.below-floor.mnn")
    fp32 = real.store.path(MnnFp32Runtime.artifacts["model"])
    assert model.is_file() and model.stat().st_size < fp32.stat().st_size / 3  # INT8 weights


@pytest.mark.slow
def test_real_int8_below_the_floors_is_one_error_line_and_a_failed_row_naming_them(
    real: StepContext, test_env: dict[str, str], tmp_path: Path
) -> None:
    """Floors above what MNN INT8 reaches (cosine min 0.999, no search): `convert mnn-int8` fails in one error line
    naming the numbers and the floors they missed, and `bench mnn-int8` then writes the row as failed with that
    reason, never an ok row (in a private copy of the artifacts: the shared folder's INT8 model stays)."""
    from conftest import cli, private_artifacts
    from modelport.common.agreement import gate_failures
    from modelport.common.schema import BackendResult

    target_module("mnn-fp32").run(real, force=False)
    art = private_artifacts(real, tmp_path / "art", "*int8*", "variants", "recover", "analysis")
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    sets = ["--set", "accuracy.int8_cosine_min=0.999", "--set", "quantization.recover=false"]
    made = cli(env, *sets, "convert", "mnn-int8")
    benched = cli(env, *sets, "bench", "mnn-int8")
    errors = [ln for ln in (made.stdout + made.stderr).splitlines() if ln.startswith("error:")]
    assert made.returncode != 0 and len(errors) == 1 and "below the [accuracy] floors" in errors[0], made.stderr
    row = BackendResult.model_validate_json((art / "results" / "mnn-int8.json").read_text())
    assert benched.returncode != 0 and row.status == "failed" and row.reason is not None
    assert errors[0].endswith(row.reason.split(": ", 1)[1])  # the conversion's own line
    a = row.agreement
    assert a is not None and a.cosine_min < 0.999 and f"cosine_min {a.cosine_min:.4f} < 0.999" in row.reason
    accuracy = real.config.accuracy.model_copy(update={"int8_cosine_min": 0.999})
    assert all(m in row.reason for m in gate_failures(a, "int8", accuracy)), row.reason
    assert (art / "mnn" / "model.int8.below-floor.mnn").is_file() and not (art / "mnn" / "model.int8.mnn").exists()


@pytest.mark.slow
def test_real_depth_overhead_and_sweep(real: StepContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """`modelport depth` on the real model: the harness vs a bare loop of MNN's own runSession, a batch sweep
    (sequential batch-1 calls: no batch twin)."""
    from modelport.bench import overhead, sweep

    target_module("mnn-fp32").run(real, force=False)
    data = overhead.measure_overhead(real, "mnn-fp32", rounds=2, runs=3, warmup=1, settings={"mnn.threads": 1})
    assert data["settings"]["numThread"] == 1 and data["bare_mean_ms"] > 0
    monkeypatch.setattr(sweep, "IMAGES_PER_POINT", 4)
    s = sweep.sweep(real, "mnn-fp32", batches=[1, 2], threads=[1])
    assert s["batch_support"] == "loop" and s["thread_setting"] == "mnn.threads"


def test_infer_all_returns_every_output_by_the_sources_name(tmp_path: Path) -> None:
    """A two-output head (RFB-320's scores + boxes) through MNNConvert: each output under its ONNX name in the
    model's order, as onnx's reference evaluator computes it, and infer() the first."""
    from onnx.reference import ReferenceEvaluator

    from modelport.mnn.convert import convert_onnx
    from tiny_models import detect_config, tiny_boxes_scores

    src = tiny_boxes_scores(tmp_path / "two.onnx")
    convert_onnx(src, tmp_path / "model.mnn", tmp_path / "convert.log")
    x = np.random.default_rng(5).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    want = ReferenceEvaluator(str(src)).run(None, {"image": x})
    with MnnFp32Runtime(detect_config(src), {"model": tmp_path / "model.mnn"}) as rt:
        outs = rt.infer_all(x)
        first = rt.infer(x)
    assert list(outs) == ["scores", "boxes"]
    for (name, have), ref in zip(outs.items(), want, strict=True):
        assert isinstance(ref, np.ndarray) and have.shape == ref.shape, name
        np.testing.assert_allclose(have, ref, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(first, outs["scores"])


def test_a_detector_converts_and_benches_verified_by_its_boxes(tiny_detector: dict[str, str], tmp_path: Path) -> None:
    """`convert mnn-fp32` and `bench mnn-fp32` on the tiny detector: the conversion is verified by its boxes
    against the source's (F1 vs source), and the row carries its boxes' agreement and postprocess time."""
    from conftest import cli, detector_copy
    from modelport.common.schema import BackendResult

    env = detector_copy(tiny_detector, tmp_path / "art")
    for args in (["convert", "mnn-fp32"], ["bench", "mnn-fp32"]):
        proc = cli(env, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    art = tmp_path / "art"
    made = json.loads((art / "mnn" / "model.mnn.manifest.json").read_text())
    verified = made["extra"]["agreement"]["detect"]
    assert verified["f1"] >= 0.99 and verified["matched"] == verified["source_boxes"] > 0, verified
    row = BackendResult.model_validate_json((art / "results" / "mnn-fp32.json").read_text())
    det = row.agreement.detect if row.agreement else None
    assert row.status == "ok" and det is not None, row.agreement_note
    assert det.f1 >= 0.99 and det.matched == det.source_boxes > 0
    assert row.postprocess_ms is not None and row.latency_ms is not None
    assert np.load(art / "results" / "mnn-fp32.npy").shape == (4, 21 * 8)
