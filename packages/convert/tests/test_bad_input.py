"""Bad input, one case each: a one-line error naming the file, a non-zero exit, nothing written.

(Images and calibration lists: packages/common/tests/test_images.py; a truncated or
wrong-format .tflite, a text file named .jpg, a list naming a missing image and a model
whose input size differs from the config: test_cli.py.)
"""

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import error_line, failed_row, private_artifacts, run
from modelport.common.context import StepContext
from modelport.common.errors import InputError
from modelport.common.onnx_safety import check_onnx
from modelport.convert.fetch import download, extract_member


@pytest.fixture
def art(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of the pipeline's artifacts (models, manifests, reference), no results."""
    dst = tmp_path / "art"
    private_artifacts(pipeline, dst)
    return dst, {**test_env, "MODELPORT_ARTIFACTS": str(dst)}


@pytest.mark.slow
def test_truncated_onnx_is_refused_by_bench(art: tuple[Path, dict[str, str]]) -> None:
    dst, env = art
    model = dst / "onnx" / "model.onnx"
    model.write_bytes(model.read_bytes()[:100_000])
    (dst / "onnx" / "model.onnx.manifest.json").unlink()  # a user-supplied file: only the toolchain can judge it
    proc = run(env, "bench", "onnx")
    assert proc.returncode != 0
    line = proc.stderr
    assert str(model) in line and "not a readable ONNX model" in line
    assert str(model) in failed_row(dst, "onnx")["reason"]


@pytest.mark.slow
def test_model_changed_since_conversion_is_refused(art: tuple[Path, dict[str, str]]) -> None:
    dst, env = art
    model = dst / "onnx" / "model.int8.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    proc = run(env, "bench", "onnx-int8")
    assert proc.returncode != 0 and str(model) in proc.stderr and "sha256 differs from its manifest" in proc.stderr
    assert "sha256 differs" in failed_row(dst, "onnx-int8")["reason"]


@pytest.mark.slow
def test_failed_bench_replaces_a_stale_result_with_a_failed_row(art: tuple[Path, dict[str, str]]) -> None:
    dst, env = art
    (dst / "results").mkdir()
    (dst / "results" / "onnx.json").write_text("{}")
    (dst / "results" / "onnx.npy").write_bytes(b"stale")
    (dst / "onnx" / "model.onnx").write_text("not onnx")
    proc = run(env, "bench", "onnx")
    assert proc.returncode != 0 and "changed since the step that made it" in failed_row(dst, "onnx")["reason"]


@pytest.mark.slow
def test_wrong_format_under_onnx_name_for_quantization(art: tuple[Path, dict[str, str]]) -> None:
    dst, env = art
    src = dst / "onnx" / "model.onnx"
    shutil.copy(dst / "source" / "model.tflite", src)
    proc = run(env, "convert", "onnx-int8", "--force")
    assert proc.returncode != 0
    assert str(src) in error_line(proc)
    assert not [p for p in (dst / "onnx").iterdir() if "int8" in p.name and "partial" in p.name]


def nhwc_model(path: Path) -> None:
    """A tiny valid classifier with an NHWC input: the layout the config does not say."""
    w = numpy_helper.from_array(np.ones((1001, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0), helper.make_node("Gemm", ["m", "w"], ["y"], transB=1)],
        "nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 224, 224, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1001])],
        [w, numpy_helper.from_array(np.array([1, 2], np.int64), "axes")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))


@pytest.mark.slow
def test_input_layout_that_does_not_match_the_config(art: tuple[Path, dict[str, str]]) -> None:
    dst, env = art
    model = dst / "onnx" / "model.onnx"
    nhwc_model(model)
    (dst / "onnx" / "model.onnx.manifest.json").unlink()
    proc = run(env, "bench", "onnx")
    assert proc.returncode != 0
    assert str(model) in proc.stderr and "[1, 224, 224, 3] does not match the config (NCHW [1, 3, 224, 224])" in proc.stderr
    assert str(model) in failed_row(dst, "onnx")["reason"]


def test_labels_with_the_wrong_line_count(test_env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(data_dir.joinpath("models", "labels.txt").read_text().splitlines()[:999]) + "\n")
    env = {**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art"), "MODELPORT_LABELS": str(labels)}
    proc = run(env, "fetch")
    assert proc.returncode != 0
    assert f"{labels}: 999 labels fit no convention for a model with 1001 outputs" in error_line(proc)
    assert not (tmp_path / "art" / "source").exists() or not any((tmp_path / "art" / "source").iterdir())


def test_config_with_a_mistyped_key(test_env: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "modelport.toml"
    cfg.write_text("[bench]\nwarmpu = 5\n")
    proc = run({**test_env, "MODELPORT_CONFIG": str(cfg), "MODELPORT_ARTIFACTS": str(tmp_path / "art")}, "fetch")
    assert proc.returncode != 0
    assert f"{cfg}: unknown key 'bench.warmpu' (did you mean 'bench.warmup'?)" in error_line(proc)
    assert not (tmp_path / "art").exists()


def test_external_data_outside_the_model_folder(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(4, np.float32).tobytes())
    (tmp_path / "m").mkdir()
    model_path = tmp_path / "m" / "model.onnx"
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        t.external_data.add(key=k, value=v)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [t],
    )
    model_path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(InputError, match=r"external data of tensor 'w' points outside the model folder: '../secret.bin'"):
        check_onnx(model_path)


def _tgz(path: Path, members: list[tuple[str, Any, str]]) -> None:  # data: bytes, or a symlink's target
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_archive_members_cannot_escape_or_link(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tgz"
    _tgz(evil, [("../../outside.tflite", b"x" * 100, "file")])
    with pytest.raises(InputError, match="escapes the archive"):
        extract_member(evil, "./mobilenet_v2_1.0_224.tflite", tmp_path / "out.tflite")
    linked = tmp_path / "linked.tgz"
    _tgz(linked, [("./mobilenet_v2_1.0_224.tflite", "/etc/passwd", "symlink")])
    with pytest.raises(InputError, match="no single regular .tflite member"):
        extract_member(linked, "./mobilenet_v2_1.0_224.tflite", tmp_path / "out.tflite")
    assert not (tmp_path / "out.tflite").exists() or (tmp_path / "out.tflite").stat().st_size == 0
    good = tmp_path / "good.tgz"
    _tgz(good, [("./mobilenet_v2_1.0_224.tflite", b"TFL3" * 10, "file")])
    extract_member(good, "./mobilenet_v2_1.0_224.tflite", tmp_path / "out.tflite")
    assert (tmp_path / "out.tflite").read_bytes() == b"TFL3" * 10


def test_downloads_need_a_pinned_sha256(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no sha256 pinned for this download"):
        download("https://example.invalid/model.tgz", tmp_path / "m.tgz", None)
    assert not (tmp_path / "m.tgz").exists()
