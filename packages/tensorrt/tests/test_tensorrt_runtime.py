"""The TensorRT runtime: engine-origin refusal, the skipped result and report row without a GPU.

The origin checks run on manifests written by the real artifact store the way the
converter writes them; the engine bytes there are a stand-in because only the manifest
is read before TensorRT is. Running real engines is in test_tensorrt_gpu.py.
"""

import csv
import io
import json
from pathlib import Path

import pytest

from conftest import make_context
from modelport.bench import runner
from modelport.bench.report import build, to_csv
from modelport.common.artifacts import ArtifactStore
from modelport.common.schema import BackendResult
from modelport.runtime.registry import runtime_class
from modelport.tensorrt import cuda
from modelport.tensorrt.convert import ENGINES, origin
from modelport.tensorrt.runtime import ForeignEngine, check_origin, engine_origin, read_manifest

pytestmark = pytest.mark.tensorrt

KEYS = ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"]
A100 = cuda.GpuInfo(0, "NVIDIA A100-SXM4-40GB", "8.0", "12.4", "550.54.14")
L4 = cuda.GpuInfo(0, "NVIDIA L4", "8.9", "12.4", "550.54.14")


def engine_with_manifest(tmp_path: Path, trt_version: str, gpu: cuda.GpuInfo, precision: str = "fp16") -> Path:
    """An engine artifact whose manifest carries what tensorrt.build records."""
    store = ArtifactStore(tmp_path / "art")
    src = tmp_path / "model.onnx"
    src.write_bytes(b"onnx")
    with store.produce(
        ENGINES[precision], inputs={"onnx": src}, tool="tensorrt", tool_version=trt_version, options={"precision": precision}
    ) as job:
        job.tmp().write_bytes(b"stand-in: only the manifest is read before TensorRT")
        job.record(tensorrt_version=trt_version, gpu={**origin(trt_version, gpu)["gpu"], "nvidia_driver": "x"})
    return store.path(ENGINES[precision])


def test_engine_built_here_is_accepted(tmp_path: Path) -> None:
    engine = engine_with_manifest(tmp_path, "10.16.1.11", A100)
    recorded = engine_origin(read_manifest(engine))
    assert recorded == origin("10.16.1.11", A100)
    check_origin(recorded, origin("10.16.1.11", A100), engine, "tensorrt-fp16")


@pytest.mark.parametrize(
    ("trt_here", "gpu_here", "says"),
    [
        ("10.15.1.29", A100, "TensorRT 10.16.1.11 (here 10.15.1.29)"),
        ("10.16.1.11", L4, "compute capability 8.0 (here 8.9), GPU NVIDIA A100-SXM4-40GB (here NVIDIA L4)"),
        (
            "10.16.1.11",
            cuda.GpuInfo(0, "NVIDIA A100 80GB PCIe", "8.0", "12.4", None),
            "GPU NVIDIA A100-SXM4-40GB (here NVIDIA A100 80GB PCIe)",
        ),
    ],
)
def test_engine_built_elsewhere_is_refused(tmp_path: Path, trt_here: str, gpu_here: cuda.GpuInfo, says: str) -> None:
    engine = engine_with_manifest(tmp_path, "10.16.1.11", A100)
    with pytest.raises(ForeignEngine) as e:
        check_origin(engine_origin(read_manifest(engine)), origin(trt_here, gpu_here), engine, "tensorrt-fp16")
    msg = str(e.value)
    assert msg.startswith(f"{engine}: engine built elsewhere: {says}")
    assert msg.endswith("rebuild it here: `modelport convert tensorrt-fp16 --force`")


def test_engine_without_manifest_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "fp32.engine"
    engine.write_bytes(b"x")
    assert read_manifest(engine) is None and engine_origin(None) is None
    with pytest.raises(ForeignEngine, match="no manifest says which TensorRT and GPU built this engine"):
        check_origin(None, origin("10.16.1.11", A100), engine, "tensorrt-fp32")
    # a manifest from before origins were recorded (or another tool) is no better
    assert engine_origin({"schema": "modelport.manifest/1", "extra": {"agreement": {}}}) is None


def test_runtime_classes_describe_themselves() -> None:
    for key, precision in zip(KEYS, ["fp32", "fp16", "int8"], strict=True):
        cls = runtime_class(key)
        assert (cls.key, cls.backend, cls.precision, cls.device) == (key, "tensorrt", precision, "cuda")
        assert cls.artifacts == {"engine": f"tensorrt/{precision}.engine"}
        assert cls.input_layout == "NCHW" and cls.input_dtype == "float32"
        assert cls.unavailable_reason() == cuda.missing_layer()


@pytest.mark.skipif(cuda.missing_layer() is None, reason="TensorRT can run here: nothing is skipped")
def test_bench_records_skipped_results_and_the_report_shows_them(test_env: dict[str, str], tmp_path: Path) -> None:
    reason = cuda.missing_layer()
    ctx = make_context({**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art")})
    for key in KEYS:
        result = runner.benchmark(ctx, key)
        assert (result.status, result.reason) == ("skipped", reason)
        path = ctx.store.path(f"results/{key}.json")
        saved = BackendResult.model_validate(json.loads(path.read_text()))
        assert saved.status == "skipped" and saved.reason == reason and saved.latency_ms is None
        assert saved.latency_note == f"not measured: {reason}"
        assert not path.with_suffix(".npy").exists()  # no numbers, no outputs: nothing faked
    report = build(ctx.store)
    rows = {e["key"]: e for e in report["results"]}
    for key, name in zip(KEYS, ["TensorRT FP32", "TensorRT FP16", "TensorRT INT8"], strict=True):
        e = rows[key]
        assert (e["name"], e["status"], e["reason"], e["latency_ms"], e["fps"]) == (name, "skipped", reason, None, None)
    table = {r["key"]: r for r in csv.DictReader(io.StringIO(to_csv(report)))}
    assert table["tensorrt-int8"]["status"] == "skipped" and table["tensorrt-int8"]["reason"] == reason
