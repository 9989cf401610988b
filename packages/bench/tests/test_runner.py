"""The benchmark runner, the one-array preprocessing guarantee, and the report, on real runs."""

import json
import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from conftest import make_context
from modelport.bench import runner
from modelport.bench.report import build, load_results, write
from modelport.common.context import StepContext
from modelport.common.preprocess import to_tensor
from modelport.common.results import write_result
from modelport.common.schema import BackendResult
from modelport.runtime.registry import RUNTIMES, runtime_class
from modelport.runtime.run import prepared_images, run_outputs

pytestmark = pytest.mark.slow  # the real model's converted artifacts (the pipeline fixture)


@pytest.fixture(scope="module")
def quick(pipeline: StepContext, test_env: dict[str, str]) -> StepContext:
    return make_context(test_env, overrides=["bench.runs=20", "bench.warmup=2"])


def available_keys() -> list[str]:
    return [k for k in RUNTIMES if runtime_class(k).unavailable_reason() is None]


def test_every_backend_gets_tensors_derived_from_one_array(quick: StepContext) -> None:
    """Each runtime's input is to_tensor() of the same prepared uint8 array: no second normalisation."""
    prepared = prepared_images(quick)[:2]
    spec = quick.config.input
    keys = available_keys()
    assert keys, "no runtime available in this env"
    for key in keys:
        base = runtime_class(key)
        seen: list[np.ndarray] = []

        class Recording(base):  # type: ignore[valid-type,misc]  # whichever runtime class the registry gives
            def infer_impl(self, tensor: np.ndarray, seen: list[np.ndarray] = seen) -> np.ndarray:
                seen.append(tensor.copy())
                return cast(np.ndarray, super().infer_impl(tensor))

        rt = Recording.from_store(quick.store, quick.config)
        if not all(p.is_file() for p in rt.files.values()):
            continue  # not converted in this env's test run
        with rt:
            run_outputs(rt, prepared, spec)
        assert len(seen) == len(prepared)
        for arr, tensor in zip(prepared, seen, strict=True):
            np.testing.assert_array_equal(tensor, to_tensor(arr, spec, base.input_layout, base.input_dtype))
            back = tensor[0] if base.input_layout == "NHWC" else tensor[0].transpose(1, 2, 0)
            if base.input_dtype == "float32":
                back = np.rint(back * np.float32(cast(Any, spec.std_values)) + np.float32(cast(Any, spec.mean_values)))
            np.testing.assert_array_equal(back.astype(np.uint8), arr)


@pytest.mark.parametrize("key", ["tflite", "onnx", "onnx-int8"])
def test_bench_writes_a_result_in_the_schema(quick: StepContext, key: str) -> None:
    result = runner.benchmark(quick, key)
    assert result.status == "ok", result.reason
    path = quick.store.path(f"results/{key}.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "modelport.result/1"
    r = BackendResult.model_validate(data)
    assert r.latency_ms is not None and r.size_bytes is not None and r.load_ms is not None
    assert r.headline is not None and r.agreement is not None
    assert r.latency_ms.runs == 20 and r.latency_ms.warmup == 2
    assert r.latency_ms.min <= r.latency_ms.median <= r.latency_ms.p90 <= r.latency_ms.p99 <= r.latency_ms.max
    assert r.size_bytes > 1_000_000 and r.load_ms > 0 and r.model_sha256 and r.preprocessing == quick.config.input.signature
    outputs = np.load(path.with_suffix(".npy"), allow_pickle=False)
    assert outputs.shape == (12, 1001) and len(r.topk) == 12
    assert r.headline.image == "grace_hopper.jpg" and "military uniform" in r.headline.label
    assert r.agreement.images == 12 and r.agreement.top1 >= 0.9


def test_report_merges_results_and_flags_other_models(quick: StepContext, tmp_path: Path) -> None:
    for key in ("tflite", "onnx", "onnx-int8"):
        if not quick.store.path(f"results/{key}.json").is_file():
            runner.benchmark(quick, key)
    skipped = runner.result_base(quick, runtime_class("onnx"), "skipped", "no CUDA GPU: test")
    skipped.key, skipped.name = "tensorrt-fp16", "TensorRT FP16"
    write_result(quick.store, skipped)
    try:
        report = build(quick.store)
        paths = write(quick.store, report)
        rows = {e["key"]: e for e in report["results"]}
        assert report["schema"] == "modelport.report/1"
        for key in ("tflite", "onnx", "onnx-int8"):
            e = rows[key]
            assert e["status"] == "ok" and e["latency_ms"]["median"] > 0 and e["fps"] > 0 and e["size_bytes"] > 0
            assert set(e["agreement"]) >= {"images", "top1", "top5_overlap", "cosine_min", "cosine_mean", "max_abs_diff", "mse"}
            assert e["headline"]["label"]
        assert rows["tensorrt-fp16"]["status"] == "skipped" and rows["tensorrt-fp16"]["reason"] == "no CUDA GPU: test"
        md = paths["md"].read_text()
        assert "| ONNX INT8 |" in md and "skipped: no CUDA GPU: test" in md and "latency.png" in md
        assert paths["latency"].read_bytes()[:4] == b"\x89PNG" and paths["accuracy"].stat().st_size > 1000
        assert paths["csv"].read_text().splitlines()[0].startswith("model,device_key,run_id,key,name,backend")

        tampered = json.loads(quick.store.path("results/onnx.json").read_text())
        tampered["model_sha256"] = "0" * 64
        other = tmp_path / "art"
        (other / "results").mkdir(parents=True)
        for key in ("tflite", "onnx"):
            for suffix in (".json", ".npy"):
                shutil.copyfile(quick.store.path(f"results/{key}{suffix}"), other / "results" / f"{key}{suffix}")
        (other / "results" / "onnx.json").write_text(json.dumps(tampered))
        from modelport.common.artifacts import ArtifactStore

        # No source fetched there: the reference row's model is the one; the other row is flagged, not mixed in.
        flagged = {r.key: r for r in load_results(ArtifactStore(other))}
        assert flagged["tflite"].status == "ok"
        assert flagged["onnx"].status == "failed" and flagged["onnx"].latency_ms is None
        assert "measured another source model (sha256 000000000000" in cast(str, flagged["onnx"].reason)
    finally:
        quick.store.path("results/tensorrt-fp16.json").unlink()
