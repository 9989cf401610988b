"""Converters: inputs checked against their manifests, calibration memory bounded, peak memory recorded."""

import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import error_line, private_artifacts, run
from modelport.common.context import StepContext


@pytest.fixture
def art(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    dst = tmp_path / "art"
    private_artifacts(pipeline, dst, "depth", "*.int8*")
    return dst, {**test_env, "MODELPORT_ARTIFACTS": str(dst)}


@pytest.mark.slow
def test_percentile_calibration_is_capped_and_the_peak_memory_recorded(art: tuple[Path, dict[str, str]]) -> None:
    dst, env = art
    # one timing round over the variants the search makes: the cap and the memory are checked, not the timing
    proc = run(
        env, "convert", "onnx-int8", "-o", "quantization.histogram_calibration_limit=3", "-o", "quantization.recover_rounds=1"
    )
    assert proc.returncode == 0, proc.stderr
    warned = [ln for ln in proc.stderr.splitlines() if "histogram_calibration_limit" in ln]
    assert len(warned) == 1 and "using 3 of " in warned[0] and "calibration images, spread over the set" in warned[0]
    m = json.loads((dst / "onnx" / "model.int8.onnx.manifest.json").read_text())
    assert m["options"]["calibration_images"] == 3
    # Three photos can miss the floors (the search then keeps another method): the capped variant's own record.
    v = json.loads((dst / "onnx" / "variants" / "int8-percentile.onnx.manifest.json").read_text())
    assert v["options"]["calibration_images"] == 3 and len(v["extra"]["calibration"]) == 3
    assert m["peak_rss_mb"] > 100 and m["seconds"] > 0
    assert [c["path"] for c in m["lineage"]] == ["onnx/model.onnx", "source/model.tflite"]


@pytest.mark.slow
def test_a_swapped_onnx_is_named_before_the_quantizer_sees_it(art: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    dst, env = art
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 224, 224])
    onnx.save(
        helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [x], [y])),
        str(dst / "onnx" / "model.onnx"),
    )
    line = error_line(run(env, "convert", "onnx-int8"))
    assert f"{dst / 'onnx' / 'model.onnx'}: changed since the step that made it" in line and "partial" not in line


def test_an_upper_case_tflite_is_found_in_a_folder(data_dir: Path, test_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "model dir"
    folder.mkdir()
    shutil.copyfile(data_dir / "models" / "mobilenet_v2_1.0_224.tflite", folder / "MODEL.TFLITE")
    shutil.copyfile(data_dir / "models" / "labels.txt", folder / "labels.txt")
    env = {**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art")}
    env.pop("MODELPORT_LABELS")
    proc = run(env, "fetch", "--from", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "art" / "source" / "model.tflite").is_file()
