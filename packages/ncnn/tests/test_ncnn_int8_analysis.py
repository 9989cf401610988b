"""NCNN INT8 on the real model: per-layer blobs named by the ONNX model, and recovery (table entries in float)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run
from modelport.common.context import StepContext
from modelport.common.layer_analysis import worst
from modelport.common.reference import REFERENCE
from modelport.convert.registry import target_module
from modelport.ncnn.table import Table

pytestmark = [pytest.mark.ncnn, pytest.mark.slow]
INPUTS = ("source/model.tflite", "source/labels.txt", REFERENCE, "onnx/model.onnx", "ncnn/model.param", "ncnn/model.bin")


@pytest.fixture(scope="module")
def art(pipeline: StepContext, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target_module("ncnn").run(pipeline, force=False)
    root = tmp_path_factory.mktemp("ncnn-recovery")
    for rel in INPUTS:
        for name in (rel, rel + ".manifest.json"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pipeline.store.path(name), root / name)
    return root


def test_blobs_line_up_with_onnx_layers(art: Path, test_env: dict[str, str]) -> None:
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    assert run(env, "convert", "ncnn-int8").returncode == 0
    proc = run(env, "analyze", "ncnn-int8")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((art / "analysis" / "ncnn-int8.json").read_text())
    m = data["mapping"]
    assert m["unmapped"] == [] and m["ncnn_layers_mapped"] == m["ncnn_layers"] >= 60
    # The only ONNX layers ncnn has no layer for are reshapes pnnx folds away (tf2onnx's graph has one in front
    # of the classifier conv, tflite2onnx's none: which converter wins the race varies between runs).
    unmapped = m["onnx_layers_unmapped"]
    assert len(unmapped) == m["onnx_layers"] - m["onnx_layers_mapped"] <= 1
    assert all(u.endswith("(Reshape)") for u in unmapped), unmapped
    assert m["requantized_blobs_dequantized"] >= 1  # int8 blobs compared as values, not raw int8 numbers
    # Dequantized correctly: no layer is off by orders of magnitude (raw int8 blobs measured about -6 dB).
    assert min(r["sqnr_db_mean"] for r in data["layers"]) > 10
    assert {r["backend_name"] for r in data["layers"]} <= set((art / "ncnn" / "model-int8.param").read_text().split())


def test_recovery_keeps_layers_in_float_through_the_table(art: Path, test_env: dict[str, str]) -> None:
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    # A floor just above what the best calibration method reaches on this calibration set, so the search must
    # go on to float layers whatever the set or the CPU: the methods first (and one float layer at most; their
    # agreement is what is read here, so one timing round). The calibrations only: the corrected methods are
    # test_ncnn_bias.py's, and each costs seconds here.
    methods_only = ["-o", 'quantization.recover_methods=["kl", "aciq"]']
    first = [
        *methods_only,
        "-o",
        "accuracy.int8_cosine_min=0.9999",
        "-o",
        "quantization.recover_max_float_layers=1",
        "-o",
        "quantization.recover_rounds=1",
    ]
    run(env, *first, "convert", "ncnn-int8")
    methods = [v for v in json.loads((art / "recover" / "ncnn-int8.json").read_text())["variants"] if not v["float_layers"]]
    floor = min(0.9995, round(max((v["agreement"] or {}).get("cosine_min", 0.0) for v in methods) + 0.003, 4))
    strict = [
        *methods_only,
        "-o",
        f"accuracy.int8_cosine_min={floor}",
        "-o",
        "accuracy.int8_top1_min=1.0",
        "-o",
        "quantization.recover_rounds=1",
        "-o",
        "bench.runs=40",
        "-o",
        "quantization.recover_max_float_layers=4",
    ]
    proc = run(env, *strict, "convert", "ncnn-int8")
    record = json.loads((art / "recover" / "ncnn-int8.json").read_text())
    assert [v["method"] for v in record["variants"][:3]] == ["minmax", "kl", "aciq"]
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    assert (proc.returncode == 0) == kept["passes"] == (not record["below_floors"]), proc.stderr
    floated = [v for v in record["variants"] if v["float_layers"]]
    assert floated, f"the methods alone miss {floor}: layers must have been kept in float"
    analysis = json.loads((art / "analysis" / "variants" / f"ncnn-int8-{floated[0]['method']}.json").read_text())
    by_node = {r["node"]: r["backend_name"] for r in analysis["layers"]}
    ranked = [r["node"] for r in worst(analysis["layers"], 10, "own_sqnr_db_worst_image")]
    assert floated[0]["float_layers"][0] in ranked  # taken from the worst layers of the per-layer analysis
    # What stayed float is '#' in the published table, and the published files are the kept variant's.
    table = Table.read(art / "ncnn" / "model.table")
    assert {by_node[n] for n in kept["float_layers"] if n in by_node} <= table.disabled
    assert (art / "ncnn" / "model-int8.bin").read_bytes() == (art / kept["files"]["bin"]).read_bytes()
    # timed: what can be kept (meets the floors) and the all-INT8 variants; the rest can never be kept
    timed = [v for v in record["variants"] if v["passes"] or not v["float_layers"]]
    assert all(v["latency_ms"] > 0 for v in timed) and record["timing"]["fp32_ms"] > 0
