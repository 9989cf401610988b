"""Per-layer time through `modelport bench` and `modelport report` on a tiny TFLite source: the ONNX row carries
its slowest layers from the real onnxruntime profiler, named by onnx/model.onnx's layers; the TFLite row, whose
Python API has no profiler, carries the reason and no number. No timing is asserted."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import cli, run
from modelport.common.onnx_layers import load
from modelport.common.schema import BackendResult
from modelport.tflite.runtime import TfliteRuntime
from tiny_models import tiny_pipeline


def ok(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(env, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    env = tiny_pipeline(root, tflite=True)
    (root / "env.json").write_text(json.dumps(env))  # for a test that benches copies of these artifacts
    config = Path(env["MODELPORT_CONFIG"])
    config.write_text(config.read_text() + "throughput = false\ncold_start = false\n")
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx")
    ok(env, "bench", "tflite", "onnx")
    ok(env, "report")
    return Path(env["MODELPORT_ARTIFACTS"])


def test_a_profiled_row_names_its_slowest_layers_by_the_onnx_layers(profiled: Path) -> None:
    r = BackendResult.model_validate_json((profiled / "results/onnx.json").read_text())
    p = r.layer_profile
    assert r.status == "ok" and p is not None and p.reason is None, r.notes
    assert p.runs == 3 and p.layers >= len(p.slowest) > 0 and p.total_ms is not None and p.total_ms > 0
    nodes = {la.node for la in load(profiled / "onnx/model.onnx").layers}
    assert any(t.onnx for t in p.slowest) and all(t.name in nodes for t in p.slowest if t.onnx)
    assert abs(sum(t.share for t in p.slowest) - 1) < 1e-6  # a tiny model has fewer layers than a row keeps
    assert BackendResult.model_validate_json(r.dump()) == r


def test_a_toolchain_without_a_hook_gives_the_reason_not_a_number(profiled: Path) -> None:
    r = BackendResult.model_validate_json((profiled / "results/tflite.json").read_text())
    p = r.layer_profile
    assert r.status == "ok" and p is not None
    assert p.reason == TfliteRuntime.layer_times_reason and p.total_ms is None and not p.slowest and not p.shares


def test_the_report_shows_the_slowest_layers_in_json_markdown_csv_and_html(profiled: Path) -> None:
    out = profiled / "report"
    rows = {e["key"]: e for e in json.loads((out / "results.json").read_text())["results"]}
    slowest = rows["onnx"]["layer_profile"]["slowest"]
    assert rows["tflite"]["layer_profile"]["reason"] == TfliteRuntime.layer_times_reason
    md = (out / "results.md").read_text()
    assert "## Slowest layers" in md and "None" not in md
    section = md.split("## Slowest layers", 1)[1]
    assert f"{slowest[0]['ms']:.3f}" in section and "not measured: the LiteRT/TFLite Python Interpreter" in section
    table = {row["key"]: row for row in csv.DictReader(io.StringIO((out / "results.csv").read_text()))}
    assert table["onnx"]["slowest_layers"].startswith(slowest[0]["name"]) and table["onnx"]["quantize_share"] == "0.0"
    assert table["tflite"]["slowest_layers"] == "" and table["tflite"]["layer_profile_note"]
    page = (out / "results.html").read_text()
    assert "Slowest layers" in page and f"{slowest[0]['ms']:.3f}" in page
    assert "![layers](layers.png)" in section and (out / "layers.png").read_bytes()[:4] == b"\x89PNG"
    assert 'alt="layers"' in page  # the chart inlined into the one self-contained page


def test_layer_profile_off_leaves_the_row_without_one(tmp_path: Path) -> None:
    env = tiny_pipeline(tmp_path)
    config = Path(env["MODELPORT_CONFIG"])
    config.write_text(config.read_text() + "throughput = false\ncold_start = false\nlayer_profile = false\n")
    ok(env, "fetch")
    ok(env, "convert", "reference")
    ok(env, "bench", "source")
    r = BackendResult.model_validate_json((tmp_path / "art/results/onnx-source.json").read_text())
    assert r.status == "ok" and r.layer_profile is None
    ok(env, "report")
    assert "## Slowest layers" not in (tmp_path / "art/report/results.md").read_text()
    assert not (tmp_path / "art/report/layers.png").exists()


@pytest.mark.parametrize("line", ["layer_profile_runs = 0", "layer_profile_runs = 1e9", "layer_profile = 3"])
def test_bad_layer_profile_config_is_one_error_line(tmp_path: Path, line: str) -> None:
    env = tiny_pipeline(tmp_path)
    config = Path(env["MODELPORT_CONFIG"])
    config.write_text(config.read_text().replace("layer_profile_runs = 3", line))
    proc = cli(env, "bench", "source")
    assert proc.returncode != 0
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "layer_profile" in errors[0], proc.stderr


def test_merged_rows_of_two_machines_keep_their_own_layers(profiled: Path, tmp_path: Path) -> None:
    env = json.loads((profiled.parent / "env.json").read_text())
    bundles = []
    for device in ("box-a", "box-b"):
        art = tmp_path / device
        shutil.copytree(profiled, art, ignore=shutil.ignore_patterns("report", "results"))
        machine = {**env, "MODELPORT_ARTIFACTS": str(art), "MODELPORT_DEVICE": device}
        bundles.append(tmp_path / f"{device}.tar.gz")
        for args in (("bench", "tflite", "onnx"), ("bundle", "export", "--out", str(bundles[-1]))):
            proc = run(machine, *args)  # a fresh process: the device key is read once per process
            assert proc.returncode == 0, proc.stderr
    merged = tmp_path / "merged"
    ok({**env, "MODELPORT_ARTIFACTS": str(merged)}, "report", "--merge", str(bundles[0]), "--merge", str(bundles[1]))
    rows = {(e["device_key"], e["key"]): e for e in json.loads((merged / "report/results.json").read_text())["results"]}
    for device in ("box-a", "box-b"):
        assert rows[(device, "onnx")]["layer_profile"]["slowest"] and rows[(device, "tflite")]["layer_profile"]["reason"]
    section = (merged / "report/results.md").read_text().split("## Slowest layers", 1)[1]
    assert "box-a)" in section and "box-b)" in section


def test_every_runtime_has_a_profiler_or_says_why_it_has_none() -> None:
    """A runtime that overrides layer_times names its hook; one that does not says why its toolchain has none
    (the base's generic sentence is not a reason a reader can act on)."""
    from modelport.runtime.base import Runtime
    from modelport.runtime.registry import RUNTIMES, runtime_class

    for key in RUNTIMES:
        cls = runtime_class(key)
        hooked = cls.layer_times is not Runtime.layer_times
        assert bool(cls.profiler) == hooked, key
        assert hooked or cls.layer_times_reason != Runtime.layer_times_reason, key
