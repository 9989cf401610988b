"""The CLI end to end on the real model: caching, and bad inputs that must fail cleanly."""

import os
import shutil
from pathlib import Path

import pytest

from conftest import error_line, run
from modelport.common.context import StepContext


@pytest.fixture
def fresh(test_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test env with an empty artifacts folder."""
    return {**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art")}


def artifacts_written(env: dict[str, str]) -> list[str]:
    root = env["MODELPORT_ARTIFACTS"]
    if not os.path.isdir(root):
        return []
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f != ".lock"]


@pytest.mark.slow
def test_second_convert_is_a_manifest_hit(pipeline: StepContext, test_env: dict[str, str]) -> None:
    proc = run(test_env, "convert", "reference", "onnx", "onnx-int8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("up to date") == 3, proc.stderr
    assert "verified" not in proc.stderr  # nothing was redone


def test_truncated_tflite(fresh: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes((data_dir / "models" / "mobilenet_v2_1.0_224.tflite").read_bytes()[:200_000])
    proc = run(fresh, "fetch", "--from", str(bad))
    assert proc.returncode != 0
    assert str(bad) in error_line(proc)
    assert artifacts_written(fresh) == []


def test_wrong_format_under_tflite_name(fresh: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_text("this is not a model\n" * 10)
    proc = run(fresh, "fetch", "--from", str(bad))
    assert proc.returncode != 0 and "not a TFLite flatbuffer" in error_line(proc)
    assert artifacts_written(fresh) == []


def test_model_input_size_differs_from_config(fresh: dict[str, str], data_dir: Path) -> None:
    proc = run(fresh, "-o", "input.size=[192, 192]", "fetch")
    assert proc.returncode != 0
    line = error_line(proc)
    assert "mobilenet_v2_1.0_224.tflite" in line and "modelport.toml" in line
    assert "[input] size = [192, 192] but the model's input height, width is [224, 224]" in line
    assert artifacts_written(fresh) == []


def test_text_file_named_jpg(fresh: dict[str, str], tmp_path: Path, data_dir: Path) -> None:
    imgs = tmp_path / "imgs"
    shutil.copytree(data_dir / "images", imgs, ignore=shutil.ignore_patterns("calibration"))
    (imgs / "notes.jpg").write_text("not an image")
    assert run(fresh, "fetch").returncode == 0
    before = artifacts_written(fresh)
    proc = run({**fresh, "MODELPORT_IMAGES": str(imgs)}, "convert", "reference")
    assert proc.returncode != 0 and str(imgs / "notes.jpg") in error_line(proc)
    assert artifacts_written(fresh) == before


@pytest.mark.slow
def test_calibration_list_with_missing_image(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> None:
    lst = tmp_path / "calib.txt"
    lst.write_text(f"{pipeline.eval_images[0]}\n# a comment\nnot-there.jpg\n")
    shutil.copy(pipeline.eval_images[0], tmp_path / pipeline.eval_images[0].name)
    lst.write_text(f"{pipeline.eval_images[0].name}\n# a comment\nnot-there.jpg\n")
    out = tmp_path / "art"
    shutil.copytree(test_env["MODELPORT_ARTIFACTS"], out, ignore=shutil.ignore_patterns("model.int8.onnx*", "results", "report"))
    env = {**test_env, "MODELPORT_ARTIFACTS": str(out)}
    proc = run(env, "--calibration-dataset", str(lst), "convert", "onnx-int8")
    assert proc.returncode != 0
    assert "calib.txt: line 3: image 'not-there.jpg' does not exist" in error_line(proc)
    assert not (out / "onnx" / "model.int8.onnx").exists()
    assert not [p for p in (out / "onnx").iterdir() if "partial" in p.name]
