"""What must hold without running the toolkit: errors before it starts, the parsers, the dataset, adb cleanup, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pytest

from conftest import make_context
from modelport.common.context import StepContext

pytest.importorskip("modelport.rknn", reason="modelport-rknn is not installed in this env (nox -s tests runs it in the rknn env)")

from rknn_testing import copy_inputs, upstream  # noqa: E402

from modelport.common.errors import ConfigError, InputError  # noqa: E402
from modelport.common.images import load_image  # noqa: E402
from modelport.common.preprocess import prepare  # noqa: E402
from modelport.rknn import analysis, build, convert, hybrid, toolkit  # noqa: E402
from modelport.rknn.dataset import write_dataset  # noqa: E402

pytestmark = pytest.mark.rknn


@pytest.fixture
def no_toolkit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the toolkit would be started (every check here must come before it)."""

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("rknn-toolkit2 was started before the error was found")

    monkeypatch.setattr(toolkit, "session", boom)
    monkeypatch.setattr(toolkit, "require", lambda: None)


@pytest.fixture
def art(test_env: dict[str, str], tmp_path: Path) -> Path:
    return copy_inputs(upstream(test_env), tmp_path / "art")


def ctx_for(test_env: dict[str, str], art: Path, overrides: Sequence[str | tuple[str, Any]] = (), **env: str) -> StepContext:
    return make_context({**test_env, "MODELPORT_ARTIFACTS": str(art), **env}, overrides=list(overrides))


def test_missing_onnx_is_a_clear_error(test_env: dict[str, str], tmp_path: Path, no_toolkit: None) -> None:
    ctx = ctx_for(test_env, tmp_path / "empty")
    with pytest.raises(InputError, match=r"onnx/model.onnx: no ONNX model: run `modelport convert onnx`"):
        build.run(ctx, "int8")


@pytest.mark.slow
def test_bad_target_platform_is_a_clear_error(test_env: dict[str, str], art: Path, no_toolkit: None) -> None:
    with pytest.raises(ConfigError, match=r"rknn.target_platform: Input should be 'rk3588'.*'rk3566'"):
        build.run(ctx_for(test_env, art, overrides=[("rknn.target_platform", "rk3599")]), "int8")
    # The same through the CLI: exit 2 with one line, and no model written.
    from click.testing import CliRunner

    from modelport.common.cli import _register, main

    _register()
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["rknn", "--target-platform", "rk3599", "convert"]) == 2
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert not (art / "rknn" / "model.rknn").exists()
    del CliRunner


@pytest.mark.slow
def test_missing_calibration_image_is_a_clear_error(
    test_env: dict[str, str], art: Path, tmp_path: Path, data_dir: Path, no_toolkit: None
) -> None:
    shutil.copy(data_dir / "images" / "bird.jpg", tmp_path / "bird.jpg")
    (tmp_path / "calib.txt").write_text("bird.jpg\nnot-there.jpg\n")
    ctx = ctx_for(test_env, art, MODELPORT_CALIBRATION=str(tmp_path / "calib.txt"))
    with pytest.raises(InputError, match=r"calib.txt: line 2: image 'not-there.jpg' does not exist"):
        build.run(ctx, "int8")


@pytest.mark.slow
def test_unreadable_calibration_image_is_named(test_env: dict[str, str], art: Path, tmp_path: Path, no_toolkit: None) -> None:
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "broken.jpg").write_bytes(b"not a jpeg")
    ctx = ctx_for(test_env, art, MODELPORT_CALIBRATION=str(tmp_path / "cal"))
    with pytest.raises(InputError, match=r"broken.jpg: not a readable image"):
        build.run(ctx, "int8")


@pytest.mark.slow
@pytest.mark.parametrize("dims, hint", [([1, 224, 224, 3], "NHWC"), (["N", 3, 224, 224], "dynamic")])
def test_nhwc_or_dynamic_onnx_is_refused_before_the_toolkit(
    test_env: dict[str, str], art: Path, no_toolkit: None, dims: list[int | str], hint: str
) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [x], [y]))
    onnx.save(model, str(art / "onnx" / "model.onnx"))
    with pytest.raises(InputError, match=rf"RKNN needs static NCHW \[1, 3, 224, 224\].*{hint}"):
        build.run(ctx_for(test_env, art), "int8")


@pytest.mark.slow
def test_dataset_is_the_common_preprocessing_in_nchw_uint8(test_env: dict[str, str], art: Path, tmp_path: Path) -> None:
    ctx = ctx_for(test_env, art)
    listing = write_dataset(ctx.calibration, tmp_path / "ds")
    files = listing.read_text().split()
    assert len(files) == len(ctx.calibration.paths) >= ctx.config.images.calibration_min  # every image of the set
    first = np.load(files[0])
    assert first.dtype == np.uint8 and first.shape == (1, 3, 224, 224)
    expected = prepare(load_image(ctx.calibration.paths[0]), ctx.config.input)
    assert np.array_equal(first[0].transpose(1, 2, 0), expected)  # un-normalised: the model normalises


SAMPLE = """\
# simulator_error: calculate the output error of each layer of the simulator (compared to the 'golden' value).
layer_name                                                  simulator_error
                                                        entire              single
                                                     cos      euc        cos      euc
-----------------------------------------------------------------------------------
[Input] input                                       1.00000 | 0.00000   1.00000 | 0.00000
[Conv] TFLITE2ONNX_FAF_Relu6;BiasAdd;Conv2D;BiasAdd/bias1
[Clip] Relu6;BiasAdd;Conv2D;BiasAdd/bias1           0.99996 | 12.71805  0.99996 | 12.71805
[Conv] BiasAdd_50;Conv2D_33;BiasAdd_50/bias1        0.97827 | 46.74439  0.99954 | 6.79002
[Reshape] MobilenetV2/Predictions/Reshape_1         0.98056 | 0.04124   1.00000 | 4.0e-05
"""


def test_error_analysis_parser() -> None:
    layers = analysis.parse_error_analysis(SAMPLE)
    assert [lay["type"] for lay in layers] == ["Input", "Conv", "Clip", "Conv", "Reshape"]
    assert layers[1]["metrics"] == {}  # fused: printed without numbers
    conv = layers[3]
    assert conv["name"] == "BiasAdd_50;Conv2D_33;BiasAdd_50/bias1"
    assert conv["metrics"]["simulator"] == {
        "entire": {"cosine": 0.97827, "euclidean": 46.74439},
        "single": {"cosine": 0.99954, "euclidean": 6.79002},
    }
    assert layers[4]["metrics"]["simulator"]["single"]["euclidean"] == 4.0e-05
    worst = analysis.worst_layers([{"image": "face.jpg", "layers": layers}], 2)
    assert worst[0]["name"] == conv["name"] and worst[0]["entire_drop"] == pytest.approx(0.99996 - 0.97827)


def test_error_analysis_parser_reads_board_columns() -> None:
    text = SAMPLE.replace("simulator_error\n", "simulator_error     runtime_error\n").replace(
        "0.99954 | 6.79002", "0.99954 | 6.79002   0.97000 | 50.00000  0.99900 | 7.00000"
    )
    conv = analysis.parse_error_analysis(text)[3]
    assert conv["metrics"]["runtime"]["entire"]["cosine"] == 0.97 and conv["metrics"]["simulator"]["single"]["cosine"] == 0.99954


def test_error_analysis_parser_rejects_other_text() -> None:
    with pytest.raises(ValueError, match="no layer rows"):
        analysis.parse_error_analysis("hello\nworld\n")


CFG = """\
custom_quantize_layers: {}                                         # 0.999999989400422
quantize_parameters:
    input:
        qtype: asym
        dtype: float32
        scale: []
    BiasAdd_50;Conv2D_33;BiasAdd_50/bias1:
        qtype: asym
        dtype: int8
        scale:
        -   7.62951094834821e-06
"""


def test_hybrid_cfg_is_patched_as_text() -> None:
    patched = hybrid.patch_cfg(CFG, ["BiasAdd_50;Conv2D_33;BiasAdd_50/bias1"])
    assert patched.startswith(
        "custom_quantize_layers:\n    'BiasAdd_50;Conv2D_33;BiasAdd_50/bias1': float16\nquantize_parameters:"
    )
    assert "7.62951094834821e-06" in patched  # saved scales untouched (a YAML round trip would re-round them)
    custom, tensors = hybrid.cfg_layers(patched)
    assert custom == ["BiasAdd_50;Conv2D_33;BiasAdd_50/bias1"] and tensors == ["input", "BiasAdd_50;Conv2D_33;BiasAdd_50/bias1"]
    assert hybrid.cfg_layers(CFG)[0] == [] and hybrid.patch_cfg(patched, []).startswith("custom_quantize_layers: {}\n")


def test_hybrid_cfg_reads_long_names_in_yamls_explicit_key_form() -> None:
    """tflite2onnx's tensor names pass 128 characters: the toolkit writes them as `? name` / `: value`."""
    long = "TFLITE2ONNX_FAF_MobilenetV2/expanded_conv/depthwise/Relu6;" + "MobilenetV2/expanded_conv/add_fold;" * 3
    text = (
        f"custom_quantize_layers:\n    ? {long}\n    : float16\nquantize_parameters:\n    input:\n"
        f"        qtype: asymmetric_quantized\n    ? {long}\n    :   qtype: asymmetric_quantized\n"
    )
    custom, tensors = hybrid.cfg_layers(text)
    assert custom == [long] and tensors == ["input", long]
    assert hybrid.quantized_tensors(text + "        dtype: int8\n") == [long]  # the dtype of an explicit-form entry
    assert f"'{long}': float16" in hybrid.patch_cfg(text, custom)


def test_hybrid_cfg_reads_a_proposal_whose_value_wraps_to_the_next_line() -> None:
    """Past the line width (YOLOX-nano's step 1 proposal) a key's value is alone on the next line: not a layer."""
    wrapped = "/backbone/backbone/dark2/dark2.1/m/m.0/conv2/dconv/conv/Conv_output_0"
    text = (
        "custom_quantize_layers:                                # 0.9134\n"
        "    /backbone/backbone/stem/conv/conv/Conv_output_0: float16     # 0.9124\n"
        f"    {wrapped}: \n"
        "        float16                                        # 0.9922\n"
        "quantize_parameters:\n    input:\n        dtype: float32\n"
    )
    assert hybrid.cfg_layers(text)[0] == ["/backbone/backbone/stem/conv/conv/Conv_output_0", wrapped]


def test_unknown_hybrid_layer_suggests_the_full_name() -> None:
    with pytest.raises(InputError, match=r"'Conv2D_33' \(did you mean 'BiasAdd_50;Conv2D_33;BiasAdd_50/bias1'\?\)"):
        hybrid.check_float16(["Conv2D_33"], CFG, "[rknn] hybrid_float16_layers", "modelport.toml")


def test_adb_guard_stops_only_the_servers_it_saw_start(tmp_path: Path) -> None:
    fake = tmp_path / "adb"
    shutil.copy(cast(str, shutil.which("sleep")), fake)  # a process whose executable is named adb
    old = subprocess.Popen([str(fake), "60"])
    try:
        with toolkit.adb_guard():
            new = subprocess.Popen([str(fake), "60"])
            time.sleep(0.2)
        assert new.wait(timeout=5) != 0  # stopped by PID
        assert old.poll() is None  # running before: left alone
    finally:
        old.kill()
        old.wait()


def test_toolkit_errors_become_one_line_with_the_log(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_text("I noise\n\x1b[1;31mE\x1b[0m build: The input('x.npy') shape is wrong!\nE RKNN: Unkown op target: 0\n")

    def fails() -> None:
        raise ValueError("Traceback ...")

    with pytest.raises(Exception, match=r"build failed: E build: The input\('x.npy'\) shape is wrong! \(full log"):
        toolkit.call(fails, what="build", log=log)
    with pytest.raises(Exception, match=r"load_onnx failed: .*\(full log"):
        toolkit.call(lambda: -1, what="load_onnx", log=log)


def test_cli_registers_rknn_and_doctor_rows() -> None:
    from click.testing import CliRunner

    from modelport.common.cli import _register, cli
    from modelport.common.doctor import collect

    _register()
    assert "rknn" in cli.commands
    out = CliRunner().invoke(cli, ["rknn", "--help"])
    assert out.exit_code == 0 and all(c in out.output for c in ("convert", "simulate", "analyze", "hybrid", "board", "all"))
    rows = [r for r in collect() if r.kind == "rknn"]
    assert len(rows) == 3 and all(r.detail for r in rows)
    if os.uname().machine == "x86_64":
        assert not next(r for r in rows if "RKNNLite" in r.name).ok
    # runtime rows: one per descriptor of the backend packages installed here (RKNN's rows have no runtime)
    from modelport.common.backends import backends

    runtimes = {r.name for r in collect() if r.kind == "runtime"}
    assert runtimes == {k for k, b in backends().items() if b.runtime} and "rknn-int8" in backends()


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"RKNN", b"\x89PNG not a model at all"])
def test_corrupt_rknn_model_is_refused_before_any_runtime(test_env: dict[str, str], art: Path, content: bytes) -> None:
    """A truncated or wrong-format model.rknn: one clear error naming it, even on a machine with no board."""
    from modelport.rknn import board

    model = art / "rknn" / "model.rknn"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(content)
    if content == b"RKNN":  # a header alone, then changed after the step that made it: the manifest catches it
        (art / "rknn" / "model.rknn.manifest.json").write_text('{"sha256": "0000"}')
    ctx = ctx_for(test_env, art)
    with pytest.raises(InputError, match=r"model.rknn: (not an RKNN model|changed since)"):
        board.run_lite(ctx)
    assert not (art / "results").exists()


@pytest.mark.slow
def test_dataset_paths_have_no_whitespace_even_in_a_folder_with_spaces(
    test_env: dict[str, str], art: Path, tmp_path: Path
) -> None:
    """rknn-toolkit2 splits dataset.txt on whitespace: every listed path must survive that."""
    ctx = ctx_for(test_env, art)
    listing = write_dataset(ctx.calibration, tmp_path / "calibration images ä" / "ds")
    files = listing.read_text().split()
    assert len(files) == len(listing.read_text().splitlines()) == len(ctx.calibration.paths)
    assert all(np.load(f).shape == (1, 3, 224, 224) for f in files)


TRACEBACK_LOG = """\
I rknn-toolkit2 version: 2.5.0
E build: Catch exception when building RKNN model!
E build: Traceback (most recent call last):
E build:   File "rknn/api/rknn_base.py", line 1996, in rknn.api.rknn_base.RKNNBase.build
E build:   File "rknn/api/rknn_base.py", line 148, in rknn.api.rknn_base.RKNNBase._quantize
E build:     data = np.load(path)
E build:            ^^^^^^^^^^^^
E build: FileNotFoundError: [Errno 2] No such file or directory: '/tmp/my'
W build: something else
"""


def test_the_real_error_behind_a_toolkit_traceback(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text(TRACEBACK_LOG)
    found = toolkit.error_lines(log)
    assert found[-1] == "FileNotFoundError: [Errno 2] No such file or directory: '/tmp/my'"
    assert not any("Traceback" in ln or "File " in ln for ln in found)


def test_a_traceback_folded_into_the_exception_is_reduced_to_its_error(tmp_path: Path) -> None:
    def build() -> None:
        raise ValueError(
            'Traceback (most recent call last):\n  File "rknn/api/rknn_base.py", line 2091, in build\n'
            "ValueError: Unsupport file /tmp/art!"
        )

    with pytest.raises(Exception) as e:
        toolkit.call(build, what="build", log=tmp_path / "empty.log")
    assert "failed: ValueError: Unsupport file /tmp/art! (full log" in str(e.value) and "Traceback" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "dtype, scale, zero_point, mean, std",
    [
        ("float32", None, None, 127.5, 127.5),  # the float source: [input] mean/std
        ("uint8", 1 / 128, 128, 128.0, 128.0),  # the shipped QAT model's input quantization
        ("int8", 1 / 255, -128, 0.0, 255.0),  # pixel - 128 enters it; real = (q + 128) / 255
    ],
)
def test_rknn_normalisation_follows_the_source_contract(
    test_env: dict[str, str],
    art: Path,
    dtype: Literal["float32", "uint8", "int8"],
    scale: float | None,
    zero_point: int | None,
    mean: float,
    std: float,
) -> None:
    """RKNN normalises uint8 pixels inside the model: its mean/std are the source's (contract.json)."""
    from modelport.common.contract import CONTRACT, Contract

    contract = Contract(
        kind="tflite",
        input_name="input",
        input_shape=[1, 224, 224, 3],
        layout="NHWC",
        size=(224, 224),
        channels=3,
        dtype=dtype,
        scale=scale,
        zero_point=zero_point,
        output_name="out",
        classes=1001,
    )
    (art / CONTRACT).write_text(contract.dump())
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    if dtype != "float32":  # the shipped config's mean/std describe the float model: a config without them
        cfg = art / "quant.toml"
        cfg.write_text('[model]\nname = "q"\n')
        env["MODELPORT_CONFIG"] = str(cfg)
    rc = convert.rknn_config(make_context(env))
    assert rc["mean_values"] == [[pytest.approx(mean)] * 3] and rc["std_values"] == [[pytest.approx(std)] * 3]
