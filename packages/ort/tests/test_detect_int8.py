"""ONNX INT8 of the real detector (YOLOX-nano, yolox_nano.toml): the search keeps the detection head in float
before anything else, and the kept variant meets the detector floors or the step fails saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, detector_copy
from modelport.common import onnx_layers
from modelport.convert.recover import qdq_quantized

pytestmark = pytest.mark.slow  # the real YOLOX-nano, quantized twice or more

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed in this env")


def test_yolox_int8_search_puts_the_head_in_float_first(yolox: dict[str, str], tmp_path: Path) -> None:
    env = detector_copy(yolox, tmp_path / "art")
    art = Path(env["MODELPORT_ARTIFACTS"])
    search = [
        "-o",
        "quantization.recover=true",
        "-o",
        "quantization.recover_minutes=0.05",  # the configured variant and the head variant (built whatever the budget), no more
        "-o",
        "images.calibration_limit=8",
        "-o",
        "quantization.recover_rounds=1",
        "-o",
        "bench.runs=12",
    ]
    proc = cli(env, *search, "convert", "onnx-int8")
    record = json.loads((art / "recover" / "onnx-int8.json").read_text())
    default, head_variant = record["variants"][:2]
    assert default["stage"] == "default" and not default["passes"]  # YOLOX misses the floors as configured
    graph = onnx_layers.load(art / "onnx" / "model.onnx")
    head = onnx_layers.head(graph)
    assert {la for la in head if "_preds." in la} and all(la.startswith("/head/") for la in head)  # reg/obj/cls convs
    # Second: the configured method with the head the default quantizes in float, and really float in it.
    assert head_variant["stage"] == "head" and head_variant["method"] == default["method"]
    in_default = qdq_quantized(art / default["files"]["model"], graph)
    assert head_variant["float_layers"] == [la for la in head if la in in_default] != []
    assert not qdq_quantized(art / head_variant["files"]["model"], graph) & set(head)
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    if proc.returncode == 0:
        d = kept["agreement"]["detect"]
        assert kept["passes"] and d["f1"] >= 0.9 and d["map"] >= 0.95 * d["source_map"]
        assert kept["speedup"] is not None  # its cost, from the interleaved timing with the FP32 twin
    else:
        assert record["below_floors"] and not kept["passes"]
        assert "below the [accuracy] floors" in proc.stderr and kept["id"] in proc.stderr
        assert (art / "onnx" / "model.int8.below-floor.onnx").is_file() and not (art / "onnx" / "model.int8.onnx").exists()
