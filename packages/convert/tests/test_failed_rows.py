"""A failed step is a row with its reason, the other steps still run, and the job exits non-zero."""

import json
from pathlib import Path

import pytest

from conftest import LIGHT_BENCH, private_artifacts, run
from modelport.common.context import StepContext

pytestmark = pytest.mark.slow  # the real model's converted artifacts (the pipeline fixture)


def test_failed_conversion_is_a_row_and_an_older_model_is_not_benchmarked(
    pipeline: StepContext, test_env: dict[str, str], tmp_path: Path
) -> None:
    art = tmp_path / "art"
    private_artifacts(pipeline, art)
    assert (art / "onnx" / "model.int8.onnx").is_file()  # a good model from an earlier run stays on disk
    bad_calibration = tmp_path / "calibration"
    bad_calibration.mkdir()
    (bad_calibration / "broken.jpg").write_text("not a jpeg")
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art), "MODELPORT_CALIBRATION": str(bad_calibration)}

    proc = run(env, "convert", "onnx-int8", "onnx")  # onnx-int8 fails; onnx (after it) still runs
    assert proc.returncode != 0
    assert "failed onnx-int8:" in proc.stderr and "broken.jpg" in proc.stderr
    assert "convert onnx" in proc.stderr.split("failed onnx-int8:")[1]
    assert "convert failed: onnx-int8 (the other targets ran)" in proc.stderr

    proc = run(env, "bench", "tflite", "onnx-int8", "--runs", "5", "--warmup", "1", *LIGHT_BENCH)
    assert proc.returncode != 0 and "failed: onnx-int8" in proc.stderr
    row = json.loads((art / "results" / "onnx-int8.json").read_text())
    assert row["status"] == "failed" and "its conversion failed" in row["reason"] and "broken.jpg" in row["reason"]
    assert row["latency_ms"] is None and not (art / "results" / "onnx-int8.npy").exists()

    proc = run(env, "report")
    assert proc.returncode != 0 and "1 of 2 rows failed: onnx-int8" in proc.stderr
    proc = run(env, "report", "--may-fail", "onnx-int8")  # the same report; the failed row was let fail
    assert proc.returncode == 0 and "onnx-int8 failed (--may-fail onnx-int8)" in proc.stderr, proc.stderr
    report = json.loads((art / "report" / "results.json").read_text())
    assert {r["key"]: r["status"] for r in report["results"]} == {"tflite": "ok", "onnx-int8": "failed"}
    md = (art / "report" / "results.md").read_text()
    assert "its conversion failed" in md and "None" not in md

    # Fixed input: the conversion succeeds again and clears its failure record.
    proc = run({**env, "MODELPORT_CALIBRATION": test_env["MODELPORT_CALIBRATION"]}, "convert", "onnx-int8")
    assert proc.returncode == 0, proc.stderr
    assert not (art / "onnx" / "model.int8.onnx.failed.json").exists()


def test_a_report_with_no_ok_row_is_an_error(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> None:
    art = tmp_path / "art"
    (art / "source").mkdir(parents=True)
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    proc = run(env, "bench", "tflite", "onnx")  # nothing converted: both fail
    assert proc.returncode != 0
    proc = run(env, "report")
    assert proc.returncode != 0 and "no backend produced a result (2 failed, 0 skipped)" in proc.stderr
    md = (art / "report" / "results.md").read_text()
    assert "None" not in md and "Latency: no backend was timed." in md


def test_a_conversion_below_its_floors_is_kept_aside_and_its_row_has_the_numbers(
    pipeline: StepContext, test_env: dict[str, str], tmp_path: Path
) -> None:
    art = tmp_path / "art"
    private_artifacts(pipeline, art)
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    # No INT8 MobileNetV2 gets there on these photos; without the recovery search, the configured variant is judged
    # (calibrated on a few photos: the test is about where a model below the floors goes, not how far below it is).
    strict = ("-o", "accuracy.int8_cosine_min=0.9999", "-o", "quantization.recover=false", "-o", "images.calibration_limit=8")

    proc = run(env, *strict, "convert", "onnx-int8", "--force")
    assert proc.returncode != 0 and "below the [accuracy] floors" in proc.stderr and "cosine_min" in proc.stderr
    assert "Traceback" not in proc.stderr
    below = art / "onnx" / "model.int8.below-floor.onnx"
    manifest = json.loads((art / "onnx" / "model.int8.below-floor.onnx.manifest.json").read_text())
    assert below.is_file() and manifest["below_floor"] and manifest["trusted"] is False
    assert manifest["instead_of"] == "onnx/model.int8.onnx" and manifest["agreement"]["cosine_min"] < 0.9999

    proc = run(env, *strict, "bench", "onnx-int8", "--runs", "3", "--warmup", "1", *LIGHT_BENCH)
    assert proc.returncode != 0
    # --may-fail: the same failed row, said as a warning, and the command goes on (a row known to fall short here)
    proc = run(env, *strict, "bench", "onnx-int8", "--runs", "3", "--warmup", "1", "--may-fail", "onnx-int8")
    assert proc.returncode == 0, proc.stderr
    assert "failed onnx-int8:" in proc.stderr and "onnx-int8 failed (--may-fail onnx-int8)" in proc.stderr
    proc = run(env, *strict, "convert", "onnx-int8", "--may-fail", "onnx-int8")  # its failure record: no rebuild
    assert proc.returncode == 0 and "below the [accuracy] floors" in proc.stderr, proc.stderr
    row = json.loads((art / "results" / "onnx-int8.json").read_text())
    assert row["status"] == "failed" and "below the [accuracy] floors" in row["reason"]
    assert row["agreement"]["cosine_min"] == manifest["agreement"]["cosine_min"] and row["latency_ms"] is None

    proc = run(env, "report")
    assert proc.returncode != 0
    report = json.loads((art / "report" / "results.json").read_text())
    (entry,) = [r for r in report["results"] if r["key"] == "onnx-int8"]
    assert entry["status"] == "failed" and entry["agreement"]["cosine_min"] < 0.9999
