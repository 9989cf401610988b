"""OpenVINO INT8 of the real detector (YOLOX-nano, yolox_nano.toml with NNCF's performance preset, below the floors):
the search's second variant keeps the detection head out of NNCF's quantization (ignored_scope), and the kept
variant meets the detector floors or the step fails saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, detector_copy
from modelport.common import onnx_layers

pytestmark = pytest.mark.slow  # the real YOLOX-nano, quantized by NNCF two or more times

pytest.importorskip("nncf", reason="nncf is not installed in this env")


def test_yolox_int8_search_puts_the_head_in_float_first(yolox: dict[str, str], tmp_path: Path) -> None:
    from modelport.openvino.convert import quantized_layers

    env = detector_copy(yolox, tmp_path / "art")
    art = Path(env["MODELPORT_ARTIFACTS"])
    search = [
        "-o",
        "openvino.preset=performance",  # the config's mixed meets the floors as it is: no search to look at
        "-o",
        "quantization.recover=true",
        "-o",
        "quantization.recover_minutes=0.05",  # the configured variant and the head variant (built whatever the budget)
        "-o",
        "quantization.recover_rounds=1",
        "-o",
        "bench.runs=12",
    ]
    proc = cli(env, *search, "convert", "openvino-fp32", "openvino-int8")
    record = json.loads((art / "recover" / "openvino-int8.json").read_text())
    default, head_variant = record["variants"][:2]
    assert default["stage"] == "default" and default["method"] == "performance" and not default["passes"]
    source = art / "onnx" / "model.onnx"
    head = onnx_layers.head(onnx_layers.load(source))
    in_default = quantized_layers(art / default["files"]["model"], source)
    assert head_variant["stage"] == "head" and head_variant["method"] == "performance"
    assert head_variant["float_layers"] == [la for la in head if la in in_default] != []
    assert not quantized_layers(art / head_variant["files"]["model"], source) & set(head)  # ignored_scope held
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    if proc.returncode == 0:
        d = kept["agreement"]["detect"]
        assert kept["passes"] and d["f1"] >= 0.9
        assert d["map"] is None or d["map"] >= 0.95 * d["source_map"]  # mAP where pycocotools is installed
        assert kept["speedup"] is not None
        assert (art / "openvino" / "model.int8.xml").is_file()
    else:
        assert record["below_floors"] and not kept["passes"] and "below the [accuracy] floors" in proc.stderr
