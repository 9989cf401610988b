"""report/sections/int8.md and its charts from analysis/*.json and recover/*.json (any env wrote them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from modelport.bench.int8_report import LAYERS_PNG, SECTION, render
from modelport.common.artifacts import ArtifactStore
from modelport.common.config import AccuracyConfig


def row(i: int, node: str, own: float) -> dict[str, Any]:
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


def analysis(key: str, nodes: list[str]) -> dict[str, Any]:
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


def variant(vid: str, floats: list[str], cos: float, ms: float, passes: bool) -> dict[str, Any]:
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


def test_section_lines_up_layers_and_states_what_stayed_float(tmp_path: Path) -> None:
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
        "variants": [
            variant("minmax", [], 0.9, 1.0, False),
            variant("minmax-float1", ["c3"], 0.99, 2.5, True) | {"regions": 1, "float_share": 0.0421},
        ],
    }
    (tmp_path / "recover").mkdir()
    (tmp_path / "recover" / "onnx-int8.json").write_text(json.dumps(record))
    (tmp_path / "results").mkdir()
    for key, ms in (("ncnn", 10.0), ("ncnn-int8", 12.0), ("onnx", 6.0), ("onnx-int8", 3.0)):
        (tmp_path / "results" / f"{key}.json").write_text(json.dumps({"status": "ok", "latency_ms": {"median": ms}}))
    md = cast(Path, render(store)).read_text()
    assert "ncnn-int8: median 12.00 ms vs ncnn 10.00 ms: 0.83x (**slower than its FP32 twin**)" in md
    assert "onnx-int8: median 3.00 ms vs onnx 6.00 ms: 2.00x; meets the 1.30x speed floor" in md
    assert "2 layers line up across all 2 backends" in md
    assert "1 float layer (1 region, 4.2% of the MACs): `c3`" in md  # what float costs, as the search's lines say it
    assert "kept `minmax-float1`" in md and "`c3`" in md and "The kept INT8 model is slower than its FP32 twin" in md
    for png in (LAYERS_PNG, "report/int8-recovery-onnx-int8.png"):
        assert store.path(png).read_bytes()[:4] == b"\x89PNG"
    assert store.path(SECTION).is_file()


def test_no_analysis_no_section(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    assert render(store) is None and not store.path(SECTION).exists()


def test_a_report_of_several_models_compares_and_describes_each_model_with_its_own_rows(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "onnx-int8.json").write_text(json.dumps(analysis("onnx-int8", ["c1", "c2"])))
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "model.tflite").write_bytes(b"m")
    sha = "ab" * 32
    (tmp_path / "source" / "model.tflite.manifest.json").write_text(json.dumps({"sha256": sha, "created_utc": "t"}))
    mine, other = f"mine@{sha[:12]}", "other@cdcdcdcdcdcd"

    def bench(model: str, key: str, ms: float) -> dict[str, Any]:
        return {"model": model, "device_key": "d", "key": key, "status": "ok", "latency_ms": {"median": ms}}

    rows = [bench(mine, "onnx", 6.0), bench(mine, "onnx-int8", 3.0), bench(other, "onnx-int8", 12.0), bench(other, "onnx", 4.0)]
    md = cast(Path, render(store, {"models": sorted([mine, other]), "results": rows})).read_text()
    assert f"model `{mine}` (this artifacts folder's)" in md
    assert f"onnx-int8 (`{mine}` on `d`): median 3.00 ms vs onnx 6.00 ms: 2.00x; meets" in md
    assert f"onnx-int8 (`{other}` on `d`): median 12.00 ms vs onnx 4.00 ms: 0.33x (**slower" in md
    # this folder's analysis is of neither model in the report: it is not presented as theirs
    assert render(store, {"models": [other, "third@efefefefefef"], "results": rows[2:]}) is None


SLOW = {
    "twin": "onnx",
    "min_speedup": 1.3,
    "speedup": 1.11,
    "slow": True,
    "rounds": 3,
    "note": "kept variant minmax-float3 vs its FP32 twin in 3 interleaved rounds of the recovery search",
}


def test_a_kept_slow_variant_is_flagged_in_the_section_the_table_and_the_page(tmp_path: Path) -> None:
    from modelport.bench import report_html
    from modelport.bench.report import entry
    from modelport.bench.report_md import rows
    from modelport.common.schema import BackendResult

    store = ArtifactStore(tmp_path)
    kept = variant("minmax-float3", ["c1", "c2", "c3"], 0.99, 3.6, True) | {"speedup": 1.11, "meets_speed": False}
    record = {
        "backend": "onnx-int8",
        "display": "ONNX INT8",
        "floors": AccuracyConfig().model_dump(),
        "recover": True,
        "budget_minutes": 10,
        "wall_seconds": 12.0,
        "searched": True,
        "kept": "minmax-float3",
        "default": "minmax",
        "below_floors": False,
        "min_speedup": 1.3,
        "speed": SLOW,
        "timing": {"fp32_ms": 4.0, "rounds": 3, "runs": 10, "load_avg": {"before": 1, "after": 1}},
        "variants": [variant("minmax", [], 0.9, 2.0, False) | {"speedup": 2.0, "meets_speed": True}, kept],
    }
    (tmp_path / "recover").mkdir()
    (tmp_path / "recover" / "onnx-int8.json").write_text(json.dumps(record))
    results = [
        {"key": "onnx", "status": "ok", "latency_ms": {"median": 4.0}},
        {"key": "onnx-int8", "status": "ok", "latency_ms": {"median": 2.0}, "speed": SLOW},  # one lucky bench pair
    ]
    md = cast(Path, render(store, {"models": [], "results": results})).read_text()
    assert "**SLOW: 1.11x its FP32 twin onnx in 3 interleaved rounds, below the 1.30x speed floor**" in md
    # the bench pair alone would say 2x: the verdict is the interleaved one, and says so
    assert "2.00x; **below the 1.30x speed floor** (1.11x in the recovery search's 3 interleaved rounds)" in md
    assert store.path("report/int8-recovery-onnx-int8.png").read_bytes()[:4] == b"\x89PNG"

    row = BackendResult(
        key="onnx-int8", backend="onnxruntime", precision="int8", name="ONNX INT8", env="t", speed=cast(Any, SLOW)
    )
    e = entry(row, None)
    assert e["status"] == "ok" and e["speed"]["slow"] and e["speed_note"].startswith("SLOW: 1.11x")
    assert "(SLOW: 1.11x its FP32 twin onnx" in rows({"results": [e]})[0]["status"]
    page = report_html.render({"results": [e]}, store.path("report"), [store.path(SECTION)], "intro")
    assert "SLOW: 1.11x its FP32 twin onnx" in page and '"speed_note"' in page
