"""What a user can do to a results folder without losing a good result, mixing two models or
getting a quiet wrong number: on the real pipeline and the real CLI."""

import json
from pathlib import Path

import pytest

from conftest import LIGHT_BENCH, error_line, make_context, private_artifacts, run
from modelport.bench.report import build, write
from modelport.common import timing
from modelport.common.cli import main
from modelport.common.context import StepContext

QUICK = ["-o", "bench.runs=5", "-o", "bench.warmup=1", *LIGHT_BENCH]


@pytest.fixture
def art(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of the pipeline's models and manifests, no results."""
    dst = tmp_path / "art"
    private_artifacts(pipeline, dst, "depth", "*.int8*")
    return dst, {**test_env, "MODELPORT_ARTIFACTS": str(dst)}


def second_model(env: dict[str, str], tmp_path: Path) -> None:
    """Another source model: the same graph with trailing bytes (another sha256), imported by `fetch`."""
    other = tmp_path / "other.tflite"
    other.write_bytes(open(env["MODELPORT_MODEL"], "rb").read() + b"\0" * 16)
    proc = run(env, "fetch", "--from", str(other))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_nothing_of_the_first_model_is_benchmarked_or_reported_after_a_second_fetch(
    art: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    dst, env = art
    proc = run(env, "bench", "tflite", "onnx", *QUICK)  # -o after the subcommand
    assert proc.returncode == 0, proc.stderr
    first = json.loads((dst / "results" / "onnx.json").read_text())
    assert [c["path"] for c in first["source_chain"]] == ["onnx/model.onnx", "source/model.tflite"]
    assert first["model_sha256"] == first["source_chain"][-1]["sha256"]

    second_model(env, tmp_path)
    proc = run(env, "bench", "onnx", *QUICK)
    assert proc.returncode != 0
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("failed onnx:")]
    assert len(failed) == 1 and "onnx/model.onnx: was made from another source model" in failed[0]
    assert "run `modelport convert onnx`" in failed[0]

    # The good result of the first model is kept, not reported; the tflite row of the first model is flagged.
    assert json.loads((dst / "results" / "last-ok" / "onnx.json").read_text())["created_utc"] == first["created_utc"]
    proc = run(env, "report")
    assert proc.returncode != 0
    rows = {e["key"]: e for e in json.loads((dst / "report" / "results.json").read_text())["results"]}
    assert rows["tflite"]["status"] == "failed" and "measured another source model" in rows["tflite"]["reason"]
    assert rows["tflite"]["latency_ms"] is None
    assert rows["onnx"]["last_ok"]["created_utc"] == first["created_utc"]
    assert f"last good result from {first['created_utc']} kept" in (dst / "report" / "results.md").read_text()


@pytest.mark.slow
def test_a_mistyped_headline_is_an_error_naming_the_images(art: tuple[Path, dict[str, str]]) -> None:
    dst, env = art
    proc = run(env, "bench", "onnx", "-o", "images.headline=grace_hoper.jpg")
    line = error_line(proc)
    assert "'grace_hoper.jpg' is not an eval image" in line and "grace_hopper.jpg" in line
    assert not (dst / "results").exists()


@pytest.mark.slow
def test_bad_labeled_input_is_checked_before_the_benchmark(art: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    dst, env = art
    assert run(env, "bench", "onnx", *QUICK).returncode == 0
    good = (dst / "results" / "onnx.json").read_bytes()
    bad = tmp_path / "labeled.txt"
    bad.write_text("no tab here\n")
    proc = run(env, "bench", "onnx", "--labeled", str(bad), *QUICK)
    assert "expected image<TAB>label" in error_line(proc)
    assert (dst / "results" / "onnx.json").read_bytes() == good


@pytest.mark.slow
def test_a_missing_reference_is_visible_in_the_row_and_the_summary(art: tuple[Path, dict[str, str]]) -> None:
    dst, env = art
    for f in (dst / "source").glob("reference.npy*"):
        f.unlink()
    assert run(env, "bench", "onnx", *QUICK).returncode == 0
    row = json.loads((dst / "results" / "onnx.json").read_text())
    assert row["agreement"] is None and "no reference outputs" in row["agreement_note"]
    run(env, "report")
    md = (dst / "report" / "results.md").read_text()
    assert "Agreement NOT computed for ONNX FP32: " in md and "convert reference" in md


@pytest.mark.slow
def test_a_benchmark_under_load_is_flagged_in_terminal_report_and_json(
    art: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dst, env = art
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(timing, "others_running", lambda: 8.0)  # what /proc/stat reports, not our code
    assert main(["bench", "onnx", *QUICK]) == 0
    assert "taken under load: 8.0 threads of other processes runnable" in capsys.readouterr().err
    ctx = make_context(env)
    report = build(ctx.store, ctx.config)
    row = next(e for e in report["results"] if e["key"] == "onnx")
    assert row["under_load"].startswith("taken under load")
    write(ctx.store, report)
    assert "UNDER LOAD" in (dst / "report" / "results.md").read_text()


def test_the_missing_source_names_fetch(test_env: dict[str, str], tmp_path: Path) -> None:
    art = tmp_path / "empty"
    proc = run({**test_env, "MODELPORT_ARTIFACTS": str(art)}, "bench", "tflite")
    assert proc.returncode != 0
    row = json.loads((art / "results" / "tflite.json").read_text())
    assert "run `modelport fetch` first" in row["reason"] and "convert tflite" not in row["reason"]
