"""ONNX -> TensorRT engines on a real GPU: built, verified against the TFLite reference, cached.

Skipped with the missing layer as reason where TensorRT cannot run (no GPU, no driver,
no TensorRT): on this project's machines and CI that is always the case.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from modelport.common.context import StepContext
from modelport.tensorrt import cuda

REASON = cuda.missing_layer()
pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=f"needs a CUDA GPU with TensorRT: {REASON}"),
]

PRECISIONS = ["fp32", "fp16", "int8"]


@pytest.fixture(scope="module")
def engines(pipeline: StepContext) -> dict[str, list[Path]]:
    from modelport.convert.registry import target_module

    return {p: target_module(f"tensorrt-{p}").run(pipeline, False) for p in PRECISIONS}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_engine_is_verified_and_records_where_it_was_built(
    engines: dict[str, list[Path]], pipeline: StepContext, precision: str
) -> None:
    from modelport.tensorrt.convert import ENGINES

    m = cast(dict[str, Any], pipeline.store.read_manifest(ENGINES[precision]))
    extra, gpu = m["extra"], cuda.gpu_info(pipeline.config.tensorrt.device)
    assert gpu is not None
    assert extra["tensorrt_version"].startswith("10.") and m["tool"]["version"] == extra["tensorrt_version"]
    assert extra["gpu"]["name"] == gpu.name and extra["gpu"]["compute_capability"] == gpu.compute_capability
    assert m["options"]["gpu"] == gpu.name and m["options"]["precision"] == precision
    a = extra["agreement"]
    assert a["images"] == 12
    if precision == "int8":
        assert a["top1"] >= 0.9 and a["cosine_mean"] >= 0.98 and a["cosine_min"] >= 0.95
    else:
        assert a["top1"] == 1.0 and a["cosine_min"] >= 0.999
    print(f"{precision}: {a}")  # the measured values, for the closing note


def test_int8_records_how_it_was_quantized(engines: dict[str, list[Path]], pipeline: StepContext) -> None:
    extra = cast(dict[str, Any], pipeline.store.read_manifest("tensorrt/int8.engine"))["extra"]["int8"]
    assert extra["mode"] in ("qdq", "calibrate")
    if extra["mode"] == "calibrate":
        cache = pipeline.store.path("tensorrt/calibration.cache")
        assert cache.stat().st_size > 0 and pipeline.store.read_manifest("tensorrt/calibration.cache")
        assert extra["images"] == len(pipeline.calibration) and extra["calibration"] == pipeline.calibration.signature()
        if pipeline.config.tensorrt.int8_mode == "auto":
            assert extra["fallback_reason"]


def test_calibration_cache_is_reused_when_only_the_engine_is_missing(
    engines: dict[str, list[Path]], pipeline: StepContext
) -> None:
    from modelport.convert.registry import target_module

    if cast(dict[str, Any], pipeline.store.read_manifest("tensorrt/int8.engine"))["extra"]["int8"]["mode"] != "calibrate":
        pytest.skip("int8 was built by explicit quantization: no calibration cache")
    pipeline.store.path("tensorrt/int8.engine").unlink()
    target_module("tensorrt-int8").run(pipeline, False)
    extra = cast(dict[str, Any], pipeline.store.read_manifest("tensorrt/int8.engine"))["extra"]["int8"]
    assert extra["cache_reused"] and extra["batches"] == 0


def test_timing_cache_is_kept_in_the_store(engines: dict[str, list[Path]], pipeline: StepContext) -> None:
    assert pipeline.store.path("tensorrt/timing.cache").stat().st_size > 0


def test_second_convert_is_a_manifest_hit(engines: dict[str, list[Path]], test_env: dict[str, str]) -> None:
    cli = [sys.executable, "-c", "import sys; from modelport.common.cli import main; sys.exit(main())"]
    proc = subprocess.run(
        [*cli, "convert", *(f"tensorrt-{p}" for p in PRECISIONS)], env={**os.environ, **test_env}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("up to date") == 3, proc.stderr


def test_parser_errors_name_the_node(pipeline: StepContext, tmp_path: Path) -> None:
    import onnx
    import tensorrt as trt
    from onnx import TensorProto, helper

    from modelport.common.errors import InputError
    from modelport.tensorrt import convert as conv
    from modelport.tensorrt import network as net

    node = helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery_node", domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1001])],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)]), str(path)
    )
    with pytest.raises(InputError, match="TensorRT's ONNX parser refused it: .*mystery_node"):
        conv._build(trt, pipeline, "fp32", None, path, net.model_input(net.load(path)), None)


def test_int8_below_stricter_floors_is_recovered_by_leaving_layers_without_qdq(
    pipeline: StepContext, test_env: dict[str, str], tmp_path: Path
) -> None:
    """The explicit-quantization search: calibration methods of the symmetric QDQ model, then layers left
    without Q/DQ (float in a strongly typed engine); every variant an engine verified on the GPU."""
    import json
    import shutil

    art = tmp_path / "art"
    shutil.copytree(pipeline.store.root, art, ignore=shutil.ignore_patterns("results", "report", "ncnn", "rknn", ".tmp"))
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    strict = [
        "-o",
        "accuracy.int8_cosine_min=0.98",
        "-o",
        "accuracy.int8_top1_min=1.0",
        "-o",
        "quantization.recover_max_float_layers=4",
        "-o",
        "quantization.recover_rounds=2",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from modelport.common.cli import main; sys.exit(main())",
            *strict,
            "convert",
            "tensorrt-int8",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    record = json.loads((art / "recover" / "tensorrt-int8.json").read_text())
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    assert (art / "tensorrt" / "int8.engine").read_bytes() == (art / kept["files"]["engine"]).read_bytes()
    timed = [v for v in record["variants"] if v["files"] and (v["passes"] or not v["float_layers"])]
    assert all(v["latency_ms"] > 0 for v in timed) or not record["searched"]
    if record["below_floors"]:
        assert proc.returncode != 0 and "below the [accuracy] floors" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert kept["agreement"]["cosine_min"] >= 0.98 and kept["agreement"]["top1"] == 1.0
    print(
        f"kept {kept['id']} ({len(kept['float_layers'])} float layers): {kept['agreement']}, "
        f"{kept['latency_ms']} ms vs FP32 {(record['timing'] or {}).get('fp32_ms')} ms"
    )
