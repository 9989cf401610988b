"""report/sections/int8.md and its charts from analysis/*.json and recover/*.json (any env wrote them)."""

from __future__ import annotations

import json

from modelport.bench.int8_report import LAYERS_PNG, SECTION, render
from modelport.common.artifacts import ArtifactStore
from modelport.common.config import AccuracyConfig


def row(i, node, own):
    return {
        "index": i,
        "node": node,
        "op": "Conv",
        "tensor": node,
        "backend_name": f"b{i}",
        "images": 2,
        "cosine_min": 0.99,
        "cosine_mean": 0.995,
        "sqnr_db_min": 20.0,
        "sqnr_db_mean": 21.0 + i,
        "own_sqnr_db": own,
    }


def analysis(key, nodes):
    return {
        "schema": "modelport.layer-analysis/1",
        "backend": key,
        "display": key.upper(),
        "model": "m",
        "twin": "t",
        "images": ["a.jpg", "b.jpg"],
        "seconds": 1.0,
        "notes": [],
        "mapping": {"how": "by test", "onnx_layers": 3},
        "layers": [row(i, n, 30.0 - i) for i, n in enumerate(nodes)],
    }


def variant(vid, floats, cos, ms, passes):
    return {
        "id": vid,
        "method": "minmax",
        "float_layers": floats,
        "files": {"model": vid},
        "agreement": {"images": 2, "top1": 1.0, "cosine_min": cos, "cosine_mean": cos},
        "failures": [] if passes else ["x"],
        "latency_ms": ms,
        "size_bytes": 1000,
        "build_seconds": 1.0,
        "stage": "float",
        "passes": passes,
    }


def test_section_lines_up_layers_and_states_what_stayed_float(tmp_path):
    store = ArtifactStore(tmp_path)
    for key, nodes in (("onnx-int8", ["c1", "c2", "c3"]), ("ncnn-int8", ["c1", "c3"])):
        (tmp_path / "analysis").mkdir(exist_ok=True)
        (tmp_path / "analysis" / f"{key}.json").write_text(json.dumps(analysis(key, nodes)))
    record = {
        "backend": "onnx-int8",
        "display": "ONNX INT8",
        "floors": AccuracyConfig().model_dump(),
        "recover": True,
        "budget_minutes": 10,
        "wall_seconds": 12.0,
        "searched": True,
        "kept": "minmax-float1",
        "default": "minmax",
        "below_floors": False,
        "timing": {"fp32_ms": 2.0, "rounds": 3, "runs": 10, "load_avg": {"before": 1, "after": 1}},
        "variants": [variant("minmax", [], 0.9, 1.0, False), variant("minmax-float1", ["c3"], 0.99, 2.5, True)],
    }
    (tmp_path / "recover").mkdir()
    (tmp_path / "recover" / "onnx-int8.json").write_text(json.dumps(record))
    (tmp_path / "results").mkdir()
    for key, ms in (("ncnn", 10.0), ("ncnn-int8", 12.0), ("onnx", 6.0), ("onnx-int8", 3.0)):
        (tmp_path / "results" / f"{key}.json").write_text(json.dumps({"status": "ok", "latency_ms": {"median": ms}}))
    md = render(store).read_text()
    assert "ncnn-int8: median 12.00 ms vs ncnn 10.00 ms: **slower than its FP32 twin**" in md
    assert "onnx-int8: median 3.00 ms vs onnx 6.00 ms: 2.00x faster" in md
    assert "2 layers line up across all 2 backends" in md
    assert "kept `minmax-float1`" in md and "`c3`" in md and "The kept INT8 model is slower than its FP32 twin" in md
    for png in (LAYERS_PNG, "report/int8-recovery-onnx-int8.png"):
        assert store.path(png).read_bytes()[:4] == b"\x89PNG"
    assert store.path(SECTION).is_file()


def test_no_analysis_no_section(tmp_path):
    store = ArtifactStore(tmp_path)
    assert render(store) is None and not store.path(SECTION).exists()
