"""A Caffe source through the CLI: fetch imports the .prototxt and its .caffemodel, the reference runs in
OpenCV, `convert onnx` is caffe2onnx's model verified against it, `bench source` is the `caffe` row; a network
without weights is one `error:` line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny_caffe import tiny_caffe

from conftest import cli, detector_copy, error_line
from modelport.common.reference import REFERENCE
from tiny_models import tiny_pipeline

pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is in the tf-onnx env")
pytest.importorskip("caffe2onnx", reason="caffe2onnx is in the tf-onnx env (requirements-nodeps.txt)")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """tiny_pipeline's labels, images and config, with a tiny Caffe classifier as the model."""
    env = tiny_pipeline(tmp_path)
    model = tiny_caffe(tmp_path, size=(8, 8), classes=5)
    config = Path(env["MODELPORT_CONFIG"])
    config.write_text(config.read_text().replace('path = "tiny.onnx"', f'path = "{model.name}"'))
    return env | {"MODELPORT_MODEL": str(model)}


def ok(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(env, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_caffe_source_to_verified_onnx(env: dict[str, str]) -> None:
    art = Path(env["MODELPORT_ARTIFACTS"])
    ok(env, "fetch")
    contract = json.loads((art / "source" / "contract.json").read_text())
    assert (contract["kind"], contract["task"], contract["classes"]) == ("caffe", "classify", 5)
    assert (art / "source" / "model.prototxt").is_file() and (art / "source" / "model.caffemodel").is_file()
    ok(env, "convert", "reference", "onnx")
    ref = json.loads((art / (REFERENCE + ".manifest.json")).read_text())
    assert ref["extra"]["source"] == "Caffe FP32 (source, OpenCV dnn)" and ref["extra"]["outputs"] == "probabilities"
    manifest = json.loads((art / "onnx" / "model.onnx.manifest.json").read_text())
    compared = manifest["extra"]["outputs_vs_opencv"]
    assert list(compared) == ["prob"] and compared["prob"]["max_abs_diff"] < 1e-5, compared
    assert manifest["extra"]["agreement"]["top1"] == 1.0
    model = onnx.load(str(art / "onnx" / "model.onnx"))
    assert [o.version for o in model.opset_import] == [13] and model.ir_version == 7
    assert np.load(art / REFERENCE).shape == (4, 5)
    ok(env, "bench", "source", "onnx")
    for key in ("caffe", "onnx"):
        row = json.loads((art / "results" / f"{key}.json").read_text())
        assert row["status"] == "ok" and row["agreement"]["top1"] == 1.0, row


def test_prototxt_without_weights_is_one_error_line(env: dict[str, str]) -> None:
    Path(env["MODELPORT_MODEL"]).with_suffix(".caffemodel").unlink()
    proc = cli(env, "fetch")
    assert proc.returncode != 0
    line = error_line(proc)
    assert "tiny.prototxt" in line and "tiny.caffemodel" in line, line
    assert not (Path(env["MODELPORT_ARTIFACTS"]) / "source" / "model.prototxt").exists()


def test_broken_prototxt_is_one_error_line(env: dict[str, str], tmp_path: Path) -> None:
    model = Path(env["MODELPORT_MODEL"])
    model.write_text(model.read_text().replace("layer {", "layer {{", 1))
    proc = cli(env, "fetch")
    assert proc.returncode != 0
    assert "tiny.prototxt" in error_line(proc)
    assert not (Path(env["MODELPORT_ARTIFACTS"]) / "source" / "contract.json").exists()


@pytest.mark.slow
def test_rfb320_caffe_detector_to_verified_onnx(rfb320_caffe: dict[str, str], tmp_path: Path) -> None:
    """The shipped Caffe face detector (conftest's rfb320_caffe: fetched, its reference in OpenCV, caffe2onnx's
    ONNX): the ONNX compared output by output (boxes and scores) and by its boxes against the source's."""
    art = Path(rfb320_caffe["MODELPORT_ARTIFACTS"])
    manifest = json.loads((art / "onnx" / "model.onnx.manifest.json").read_text())
    compared = manifest["extra"]["outputs_vs_opencv"]
    assert list(compared) == ["boxes", "scores"]
    assert all(c["max_abs_diff"] < 1e-4 for c in compared.values()), compared  # measured 1.7e-5 / 1.9e-6
    env = detector_copy(rfb320_caffe, tmp_path / "art")
    ok(env, "bench", "source", "onnx", "--runs", "3", "--warmup", "1")
    for key in ("caffe", "onnx"):
        assert json.loads((tmp_path / "art" / "results" / f"{key}.json").read_text())["status"] == "ok"
