"""Every source kind through `init` and the real toolchains: float and full-integer TFLite, ONNX NCHW/NHWC.

Tiny models (tiny_models.py) carry the contracts; the shipped MobileNetV2s and the
pipeline's own ONNX carry what only a real model shows (agreement across toolchains).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import pytest
from onnx import helper

from conftest import LIGHT_BENCH, cli, error_line, make_context, run
from modelport.common.context import StepContext
from modelport.common.reference import REFERENCE
from tiny_models import tiny_images, tiny_onnx, tiny_tflite

QUICK = ("--runs", "3", "--warmup", "1", *LIGHT_BENCH)


@pytest.fixture
def env(test_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Test images, an empty artifacts folder, and no model/config: each test inits its own."""
    base = {k: v for k, v in test_env.items() if k not in ("MODELPORT_MODEL", "MODELPORT_LABELS", "MODELPORT_CONFIG")}
    return base | {"MODELPORT_ARTIFACTS": str(tmp_path / "art")}


def init(env: dict[str, str], model: Path, config: str | Path, *extra: str) -> dict[str, str]:
    proc = cli(env, "init", str(model), "--out", str(config), *extra)
    assert proc.returncode == 0, proc.stderr
    return env | {"MODELPORT_CONFIG": str(config)}


def ok(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(env, *args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def report(env: dict[str, str]) -> dict[str, Any]:
    ok(env, "report")
    with open(os.path.join(env["MODELPORT_ARTIFACTS"], "report", "results.json")) as f:
        data: dict[str, Any] = json.load(f)
    return data | {"rows": {r["key"]: r for r in data["results"]}}


def nothing_written(env: dict[str, str]) -> bool:
    root = env["MODELPORT_ARTIFACTS"]
    return not os.path.isdir(root) or not [f for _, _, fs in os.walk(root) for f in fs if f != ".lock"]


@pytest.mark.parametrize(
    "kw, outputs",
    [
        ({"layout": "NCHW"}, "probabilities"),
        ({"layout": "NHWC", "batch": "N"}, "probabilities"),
        ({"layout": "NCHW", "batch": "batch", "softmax": False}, "logits"),
    ],
)
def test_onnx_sources_end_to_end(env: dict[str, str], tmp_path: Path, kw: dict[str, Any], outputs: str) -> None:
    model = tiny_onnx(tmp_path / "tiny.onnx", **kw)
    env = init(env, model, tmp_path / "tiny.toml")
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx")
    ok(env, "bench", "source", "onnx", *QUICK)
    art = env["MODELPORT_ARTIFACTS"]
    made = onnx.load(os.path.join(art, "onnx", "model.onnx"))
    assert [d.dim_value for d in made.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]
    data = report(env)
    assert data["reference"] == "onnx-source" and data["source"]["outputs"] == outputs
    assert data["source"]["input"]["layout"] == kw["layout"]
    a = data["rows"]["onnx"]["agreement"]
    assert data["rows"]["onnx"]["status"] == "ok" and a["top1"] == 1.0 and a["cosine_min"] > 0.99999
    md = open(os.path.join(art, "report", "results.md")).read()
    assert "ONNX FP32, run in onnxruntime" in md and f"outputs are {outputs}" in md


def test_init_counts_the_calibration_images_and_warns_below_the_minimum(env: dict[str, str], tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "tiny.onnx")
    few = tiny_images(tmp_path / "few", n=3)
    proc = cli(env | {"MODELPORT_CALIBRATION": str(few)}, "init", str(model), "--out", str(tmp_path / "few.toml"))
    assert proc.returncode == 0, proc.stderr
    warned = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "3 calibration images, below the minimum of 20 ([images] calibration_min)" in warned[0]
    assert "3 calibration images" in proc.stdout + proc.stderr
    assert "INT8 calibration images: 3 used (below [images] calibration_min)" in (tmp_path / "few.toml").read_text()

    shipped = len(list(Path(env["MODELPORT_CALIBRATION"]).iterdir()))
    proc = cli(env, "init", str(model), "--out", str(tmp_path / "enough.toml"))
    assert proc.returncode == 0 and "calibration_min" not in proc.stderr, proc.stderr
    assert f"INT8 calibration images: 50 used of {shipped} ([images] calibration_limit)" in (tmp_path / "enough.toml").read_text()


def test_dynamic_height_width_need_a_size(env: dict[str, str], tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "dyn.onnx", size=("H", "W"))
    proc = cli(env, "init", str(model), "--out", str(tmp_path / "dyn.toml"))
    assert proc.returncode != 0 and not (tmp_path / "dyn.toml").exists()
    line = error_line(proc)
    assert str(model) in line and "dynamic" in line and "[input] size" in line
    env = init(env, model, tmp_path / "dyn.toml", "-o", "input.size=[40, 48]")
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx")
    made = onnx.load(os.path.join(env["MODELPORT_ARTIFACTS"], "onnx", "model.onnx"))
    assert [d.dim_value for d in made.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 40, 48]


@pytest.mark.parametrize(
    "kw, says",
    [
        ({"extra_input": True}, "a model with 2 inputs"),
        ({"extra_output": True}, "2 outputs ("),
        ({"rank": 3}, "not an image: rank 3"),
        ({"channels": 4}, "no axis of 1 or 3 channels"),
        ({"output_rank": 3}, "output is neither [batch, N] class scores nor a [1, N, 5 + C] detector head"),
    ],
)
def test_models_that_are_not_classifiers(
    env: dict[str, str], test_env: dict[str, str], tmp_path: Path, kw: dict[str, Any], says: str
) -> None:
    model = tiny_onnx(tmp_path / "bad.onnx", **kw)
    for args in (["fetch"], ["init", str(model), "--out", str(tmp_path / "bad.toml")]):
        proc = cli(env | {"MODELPORT_MODEL": str(model), "MODELPORT_CONFIG": test_env["MODELPORT_CONFIG"]}, *args)
        assert proc.returncode != 0, proc.stderr
        line = error_line(proc)
        assert str(model) in line and says in line, line
    assert nothing_written(env) and not (tmp_path / "bad.toml").exists()


def test_labels_background_last_and_labels_that_fit_nothing(env: dict[str, str], tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "tiny.onnx", classes=4)
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("cat\ndog\nfox\nowl\nbackground\n")
    bad.write_text("cat\ndog\n")
    proc = cli(env, "init", str(model), "--labels", str(bad), "--out", str(tmp_path / "bad.toml"))
    assert proc.returncode != 0 and str(bad) in error_line(proc) and not (tmp_path / "bad.toml").exists()
    env = init(env, model, tmp_path / "tiny.toml", "--labels", str(good))
    assert "background last" in (tmp_path / "tiny.toml").read_text()
    ok(env, "fetch")
    ok(env, "convert", "reference")
    ok(env, "bench", "source", *QUICK)
    row = json.loads(open(os.path.join(env["MODELPORT_ARTIFACTS"], "results", "onnx-source.json")).read())
    assert {n for t in row["topk"] for n in t["labels"]} <= {"cat", "dog", "fox", "owl"}


def test_a_config_that_contradicts_the_model_is_refused_naming_both(
    env: dict[str, str], test_env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    sized = tmp_path / "sized.toml"
    sized.write_text("[input]\nsize = [224, 224]\n")
    model = tiny_onnx(tmp_path / "small.onnx")
    proc = cli(env | {"MODELPORT_MODEL": str(model), "MODELPORT_CONFIG": str(sized)}, "fetch")
    line = error_line(proc)
    assert str(sized) in line and str(model) in line and "size = [224, 224]" in line and "[32, 32]" in line
    shipped = test_env["MODELPORT_CONFIG"]  # mean/std 127.5: the float model's
    quant = data_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"
    proc = cli(env | {"MODELPORT_MODEL": str(quant), "MODELPORT_CONFIG": shipped}, "fetch")
    line = error_line(proc)
    assert "mean = [127.5, 127.5, 127.5]" in line and "zero point 128" in line and str(quant) in line
    assert nothing_written(env)


def quant_artifacts(tmp_path: Path) -> tuple[str, str]:
    """Artifacts folder and config of the QAT source: beside MODELPORT_TEST_ARTIFACTS in a `nox -s tests`
    run (-quant, -quant.toml), so the ncnn env converts the same source (test_ncnn_quantized_source.py)."""
    shared = os.environ.get("MODELPORT_TEST_ARTIFACTS")
    if not shared:
        return str(tmp_path / "art"), str(tmp_path / "quant.toml")
    shutil.rmtree(shared + "-quant", ignore_errors=True)
    return shared + "-quant", shared + "-quant.toml"


@pytest.mark.slow
def test_full_integer_tflite_source(env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    """The shipped uint8 QAT model: the source row is TFLite INT8, the float ONNX is verified against it."""
    art, config = quant_artifacts(tmp_path)
    env = env | {"MODELPORT_ARTIFACTS": art}
    model = data_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"
    env = init(env, model, config, "--labels", str(data_dir / "models" / "labels.txt"), "--force")
    text = open(config).read()
    assert "uint8, scale 0.0078125, zero point 128" in text and "\nmean =" not in text
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx", "onnx-int8")
    ctx = make_context(env)
    assert ctx.config.input.mean == (128.0,) * 3 and ctx.config.input.std == (128.0,) * 3
    made = onnx.load(str(ctx.store.path("onnx/model.onnx")))
    assert made.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not {n.op_type for n in made.graph.node} & {"QuantizeLinear", "DequantizeLinear"}
    ok(env, "bench", "source", "onnx", "onnx-int8", *QUICK)
    data = report(env)
    src = data["rows"]["tflite"]
    assert src["name"] == "TFLite INT8" and src["precision"] == "int8" and data["source"]["outputs"] == "probabilities"
    floors = data["floors"]
    for key in ("onnx", "onnx-int8"):  # every row of a quantized source meets the INT8 floors
        a = data["rows"][key]["agreement"]
        assert a["top1"] >= floors["int8_top1_min"] and a["cosine_min"] >= floors["int8_cosine_min"], (key, a)
    assert "every row (float ones too) is held to the INT8 floors" in open(ctx.store.path("report/results.md")).read()


def test_int8_tflite_with_a_converter_that_crashes(env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    """int8 input and output; tflite2onnx cannot read the converter's current flatbuffers: tf2onnx is kept."""
    from modelport.common.images import load_image, resolve_images
    from modelport.common.preprocess import InputSpec, prepare

    spec = InputSpec.model_validate({"size": [24, 24]})
    calibration = [prepare(load_image(p), spec) for p in resolve_images(data_dir / "images" / "calibration")]
    model = tiny_tflite(tmp_path / "int8.tflite", full_integer=True, calibration=calibration)
    env = init(env, model, tmp_path / "int8.toml")
    ok(env, "fetch")
    proc = ok(env, "convert", "reference", "onnx")
    ctx = make_context(env)
    contract = ctx.config.contract
    assert contract is not None and contract.dtype == "int8" and contract.output_dtype == "int8"
    extra = cast(dict[str, Any], ctx.store.read_manifest("onnx/model.onnx"))["extra"]
    assert extra["converter"] == "tf2onnx" and "tflite2onnx failed" in extra["failed_converters"]["tflite2onnx"]
    assert "tflite2onnx failed" in proc.stderr
    assert extra["converters"]["tf2onnx"]["agreement"]["top1"] >= ctx.config.accuracy.int8_top1_min


def test_a_converter_whose_model_onnx_rejects_loses_the_race_and_the_other_is_kept(env: dict[str, str], tmp_path: Path) -> None:
    """tflite2onnx converts a Dense on a 4-D tensor into a Gemm whose model onnx's shape inference rejects (not a
    ModelportError): the race records why and goes on with tf2onnx."""
    env = init(env, tiny_tflite(tmp_path / "fc4d.tflite", classes=5, dense_on_4d=True), tmp_path / "fc4d.toml")
    ok(env, "fetch")
    proc = ok(env, "convert", "reference", "onnx")
    extra = cast(dict[str, Any], make_context(env).store.read_manifest("onnx/model.onnx"))["extra"]
    assert extra["converter"] == "tf2onnx" and set(extra["converters"]) == {"tf2onnx"}
    assert "ShapeInferenceError" in extra["failed_converters"]["tflite2onnx"]
    assert "warning: tflite2onnx:" in proc.stderr and "ShapeInferenceError" in proc.stderr
    assert "keeping tf2onnx: the only converter that passed" in proc.stderr


def test_tflites_delegate_line_goes_to_the_toolchain_log(env: dict[str, str], tmp_path: Path) -> None:
    """A fresh process (TFLite prints it once per process): the reference runs the source in TFLite with XNNPACK."""
    env = init(env, tiny_tflite(tmp_path / "t.tflite", classes=5), tmp_path / "t.toml")
    ok(env, "fetch")
    proc = run(env, "convert", "reference")
    assert proc.returncode == 0, proc.stderr
    assert "XNNPACK" not in proc.stdout + proc.stderr
    assert "XNNPACK delegate" in (tmp_path / "art" / "logs" / "toolchain.log").read_text()


def _nhwc(src: Path, dst: Path) -> Path:
    """The same network taking NHWC: a Transpose in front, as tf2onnx without --inputs-as-nchw gives."""
    model = onnx.load(str(src))
    inp = model.graph.input[0]
    for node in model.graph.node:
        node.input[:] = ["nchw" if x == inp.name else x for x in node.input]
    model.graph.node.insert(0, helper.make_node("Transpose", [inp.name], ["nchw"], perm=[0, 3, 1, 2]))
    dims = inp.type.tensor_type.shape.dim
    n, c, h, w = (d.dim_value for d in dims)
    for d, v in zip(dims, (n, h, w, c), strict=True):
        d.dim_value = v
    onnx.save(model, str(dst))
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_pipelines_own_onnx_as_the_source(
    pipeline: StepContext, env: dict[str, str], data_dir: Path, tmp_path: Path, layout: str
) -> None:
    src = tmp_path / "model.onnx"
    shutil.copyfile(pipeline.store.path("onnx/model.onnx"), src)
    if layout == "NHWC":
        src = _nhwc(src, tmp_path / "model_nhwc.onnx")
    env = init(env, src, tmp_path / "onnx.toml", "--labels", str(data_dir / "models" / "labels.txt"))
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx", "onnx-int8")
    ctx = make_context(env)
    assert ctx.config.contract is not None and ctx.config.contract.layout == layout
    ours = np.load(ctx.store.path(REFERENCE))
    tflite = np.load(pipeline.store.path(REFERENCE))
    cos = (ours * tflite).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(tflite, axis=1)
    assert (ours.argmax(1) == tflite.argmax(1)).all() and cos.min() > 0.99999
    made = onnx.load(str(ctx.store.path("onnx/model.onnx")))
    assert [d.dim_value for d in made.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 224, 224]


def test_the_race_keeps_the_preferred_converter_unless_another_is_clearly_faster() -> None:
    from modelport.tflite.convert import pick

    equal = {"tflite2onnx": [5.0] * 6, "tf2onnx": [5.0] * 6}
    assert pick(equal) == ("tflite2onnx", pick(equal)[1]) and "within noise" in pick(equal)[1]
    slightly = {"tflite2onnx": [5.0] * 6, "tf2onnx": [4.95] * 6}  # 1%: a coin toss, not a win
    assert pick(slightly)[0] == "tflite2onnx" and "within noise" in pick(slightly)[1]
    for per_round, winner in (
        ({"tflite2onnx": [5.0] * 6, "tf2onnx": [4.0] * 6}, "tf2onnx"),
        ({"tflite2onnx": [4.0] * 6, "tf2onnx": [5.0] * 6}, "tflite2onnx"),
    ):
        assert pick(per_round) == (winner, "clearly the faster verified ONNX in onnxruntime")


def test_an_onnx_source_with_unnamed_nodes_gets_names_its_float_layers_can_use(env: dict[str, str], tmp_path: Path) -> None:
    """An older exporter's model: no node names, weights listed as graph inputs. `convert onnx` names each node
    by its output (what the per-layer analysis calls it), so a layer kept in float by that name really is."""
    from modelport.common import onnx_layers
    from modelport.convert.recover import qdq_quantized

    model = onnx.load(str(tiny_onnx(tmp_path / "old.onnx")))
    assert not any(n.name for n in model.graph.node)
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer)
    onnx.save(model, str(tmp_path / "old.onnx"))
    env = init(env, tmp_path / "old.onnx", tmp_path / "old.toml")
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx")
    art = Path(env["MODELPORT_ARTIFACTS"])
    made = onnx.load(str(art / "onnx" / "model.onnx"))
    assert [n.name for n in made.graph.node] == [n.output[0] for n in made.graph.node]
    assert [i.name for i in made.graph.input] == ["image"]
    manifest = json.loads((art / "onnx" / "model.onnx.manifest.json").read_text())
    changes = manifest["extra"]["converters"]["source"]["changes"]
    assert "6 unnamed nodes named by their first output" in changes and "4 weights removed from the graph inputs" in changes
    graph = onnx_layers.load(art / "onnx" / "model.onnx")
    ok(env, "-o", "quantization.recover=false", "convert", "onnx-int8")
    assert "conv" in qdq_quantized(art / "onnx" / "model.int8.onnx", graph)
    ok(env, "-o", "quantization.recover=false", "-o", 'quantization.nodes_to_exclude=["conv"]', "convert", "onnx-int8")
    assert "conv" not in qdq_quantized(art / "onnx" / "model.int8.onnx", graph)
