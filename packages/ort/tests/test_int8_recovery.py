"""ONNX INT8 on the real model: per-layer analysis with qdq_loss_debug, and the recovery search when the
model misses the floors (the best variant written, marked, the step and its bench row failed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from conftest import LIGHT_BENCH, run
from modelport.common.context import StepContext
from modelport.common.layer_analysis import worst
from modelport.common.reference import REFERENCE
from modelport.convert.qdq import METHODS

pytestmark = pytest.mark.slow  # the real model's converted artifacts (the pipeline fixture)

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed in this env")

INPUTS = ("source/model.tflite", "source/labels.txt", REFERENCE, "onnx/model.onnx")


def private(pipeline: StepContext, root: Path) -> Path:
    for rel in INPUTS:
        for name in (rel, rel + ".manifest.json"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pipeline.store.path(name), root / name)
    return root


def test_analysis_names_every_layer_by_the_onnx_model(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> None:
    art = private(pipeline, tmp_path)
    shutil.copy2(pipeline.store.path("onnx/model.int8.onnx"), art / "onnx" / "model.int8.onnx")
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    proc = run(env, "analyze", "onnx-int8", "rknn-int8")
    assert proc.returncode == 0, proc.stderr
    assert "skip rknn-int8: analysed in the rknn env" in proc.stderr
    data = json.loads((art / "analysis" / "onnx-int8.json").read_text())
    nodes = [n.name for n in onnx.load(str(art / "onnx" / "model.onnx")).graph.node]
    assert data["mapping"]["activations_matched"] >= 60 and data["mapping"]["weights_matched"] >= 50
    assert len(data["layers"]) == data["mapping"]["onnx_layers"]  # qdq_loss_debug pairs every layer's tensor
    assert all(r["node"] in nodes for r in data["layers"])
    assert [r["index"] for r in data["layers"]] == sorted(r["index"] for r in data["layers"])  # ONNX order
    assert all(r["images"] == 12 and -1 <= r["cosine_min"] <= 1 for r in data["layers"])
    # INT8 error grows through the network: the first layer is far better than the worst one.
    assert data["layers"][0]["sqnr_db_mean"] > worst(data["layers"], 1)[0]["own_sqnr_db"] + 10
    again = run(env, "analyze", "onnx-int8")
    assert again.returncode == 0 and "up to date" in again.stderr


def test_a_model_below_the_floors_is_searched_and_the_best_written_marked(
    pipeline: StepContext, test_env: dict[str, str], tmp_path: Path
) -> None:
    art = private(pipeline, tmp_path)
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    strict = [
        "-o",
        "accuracy.int8_cosine_min=0.995",
        "-o",
        "quantization.recover_max_float_layers=2",
        "-o",
        "images.calibration_limit=4",
        "-o",
        "quantization.recover_rounds=1",
        "-o",
        "bench.runs=40",
    ]
    proc = run(env, *strict, "convert", "onnx-int8")
    assert proc.returncode != 0
    assert "below the [accuracy] floors" in proc.stderr and "kept the best" in proc.stderr
    record = json.loads((art / "recover" / "onnx-int8.json").read_text())
    ids = [v["id"] for v in record["variants"]]
    assert ids[:4] == ["percentile", *(m for m in METHODS if m != "percentile")][:4]  # configured first, then the others
    floated = [v for v in record["variants"] if v["float_layers"]]
    assert floated and all(len(v["float_layers"]) <= 2 for v in floated)  # then layers in float, bounded
    assert {v["stage"] for v in floated} <= {"float", "greedy"}
    assert record["below_floors"] and record["searched"] and not any(v["passes"] for v in record["variants"])
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    assert kept["agreement"]["cosine_min"] == max(v["agreement"]["cosine_min"] for v in record["variants"])
    # timed: the all-INT8 variants and the one kept; a float-layer variant below the floors can never be kept
    timed = [v for v in record["variants"] if not v["float_layers"] or v["id"] == record["kept"]]
    assert all(v["latency_ms"] > 0 for v in timed) and record["timing"]["fp32_ms"] > 0
    assert all(v["latency_ms"] is None for v in floated if v["id"] != record["kept"])
    # The best variant is kept under the below-floor name, never as onnx/model.int8.onnx (which later steps
    # trust); the failure record tells bench why there is none.
    below = art / "onnx" / "model.int8.below-floor.onnx"
    assert below.read_bytes() == (art / kept["files"]["model"]).read_bytes()
    assert json.loads((art / "onnx" / "model.int8.below-floor.onnx.manifest.json").read_text())["trusted"] is False
    assert not (art / "onnx" / "model.int8.onnx").exists()
    assert (art / "onnx" / "model.int8.onnx.failed.json").is_file()
    bench = run(env, *strict, "bench", "onnx-int8", "--runs", "3", "--warmup", "1", *LIGHT_BENCH)
    row = json.loads((art / "results" / "onnx-int8.json").read_text())
    assert bench.returncode != 0 and row["status"] == "failed" and "below the [accuracy] floors" in row["reason"]
    assert row["agreement"]["cosine_min"] == kept["agreement"]["cosine_min"]  # the row carries what was measured
    # A second run rebuilds no variant (each is cached by its manifest) and fails the same way.
    again = run(env, *strict, "convert", "onnx-int8")
    assert again.returncode != 0 and "up to date" in again.stderr and "quantize" not in again.stderr


def test_float_layers_expand_to_the_conv_its_activation_and_its_consumers(pipeline: StepContext) -> None:
    from modelport.common import onnx_layers
    from modelport.convert.qdq import excluded_nodes

    source = pipeline.store.path("onnx/model.onnx")
    graph = onnx_layers.load(source)
    first, second = graph.layers[0], graph.layers[1]  # conv + its activation, read by the next conv
    assert first.op.startswith("Conv+") and second.inputs == [first.output]
    assert excluded_nodes(source, [first.node]) == [*first.nodes, second.node]
    assert excluded_nodes(source, ["AnyNode"]) == ["AnyNode"]  # a plain node name passes through
