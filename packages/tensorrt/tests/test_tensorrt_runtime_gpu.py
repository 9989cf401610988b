"""TensorRT engines benchmarked on a real GPU: host and GPU time, agreement, refusal, release.

Skipped with the missing layer as reason where TensorRT cannot run (always, on this
project's machines and CI).
"""

import json
import shutil
from pathlib import Path
from typing import cast

import pytest

from conftest import make_context
from modelport.common.context import StepContext
from modelport.tensorrt import cuda
from modelport.tensorrt.runtime import TensorrtRuntime

REASON = cuda.missing_layer()
pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=f"needs a CUDA GPU with TensorRT: {REASON}"),
]

KEYS = ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"]


@pytest.fixture(scope="module")
def quick(pipeline: StepContext, test_env: dict[str, str]) -> StepContext:
    from modelport.convert.registry import target_module

    for key in KEYS:
        target_module(key).run(pipeline, False)
    return make_context(test_env, overrides=["bench.runs=50", "bench.warmup=5"])


@pytest.mark.parametrize("key", KEYS)
def test_bench_measures_host_and_gpu_time(quick: StepContext, key: str) -> None:
    from modelport.bench import runner

    r = runner.benchmark(quick, key)
    assert r.status == "ok", r.reason
    gpu = cuda.gpu_info()
    assert r.latency_ms is not None and r.agreement is not None and gpu is not None
    assert r.latency_ms.runs == 50 and r.device == "cuda"
    for name in ("gpu_compute", "gpu_total"):
        t = r.extra_timings[name]
        assert t.runs == 50 and t.warmup == 5 and 0 < t.min <= t.median
    # GPU time is part of the host's wall time around the same call.
    assert r.extra_timings["gpu_compute"].median <= r.extra_timings["gpu_total"].median <= r.latency_ms.median
    assert r.tool_versions["tensorrt"].startswith("10.") and r.settings["gpu"] == gpu.name
    a = r.agreement
    if key.endswith("int8"):
        assert a.top1 >= 0.9 and a.cosine_mean >= 0.98 and a.cosine_min >= 0.95
    else:
        assert a.top1 == 1.0 and a.cosine_min >= 0.999
    print(
        f"{key}: host median {r.latency_ms.median:.3f} ms, GPU compute {r.extra_timings['gpu_compute'].median:.3f} ms, "
        f"cosine min {a.cosine_min:.5f}"
    )


def test_foreign_engine_is_refused_before_deserializing(quick: StepContext, test_env: dict[str, str], tmp_path: Path) -> None:
    from modelport.bench import runner
    from modelport.common.artifacts import ArtifactStore
    from modelport.runtime.registry import runtime_class
    from modelport.tensorrt.runtime import ForeignEngine

    other = ArtifactStore(tmp_path / "art")
    engine = quick.store.path("tensorrt/fp16.engine")
    dest = other.path("tensorrt/fp16.engine")
    dest.parent.mkdir(parents=True)
    shutil.copy(engine, dest)
    manifest = json.loads(ArtifactStore.manifest_path(engine).read_text())
    manifest["extra"]["gpu"]["compute_capability"] = "5.0"
    ArtifactStore.manifest_path(dest).write_text(json.dumps(manifest))
    rt = runtime_class("tensorrt-fp16").from_store(other, quick.config)
    with pytest.raises(ForeignEngine, match=r"engine built elsewhere: compute capability 5.0 \(here "):
        rt.activate()
    assert not rt.active

    ctx = make_context({**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art")})
    result = runner.benchmark(ctx, "tensorrt-fp16")
    assert (
        result.status == "failed"
        and result.reason is not None
        and "rebuild it here: `modelport convert tensorrt-fp16 --force`" in result.reason
    )


def test_activate_and_release_repeatedly(quick: StepContext) -> None:
    """Each cycle deserializes, allocates, runs and frees again; the same input gives the same output."""
    import numpy as np

    from modelport.runtime.registry import runtime_class

    x = np.zeros(quick.config.input.shape("NCHW"), np.float32)
    outs = []
    for _ in range(5):
        rt = cast(TensorrtRuntime, runtime_class("tensorrt-fp32").from_store(quick.store, quick.config))
        with rt:
            outs.append(rt.infer(x))
        assert not rt.active and rt._device == {} and rt._host == {}
    assert outs[0].shape == (1, 1001)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
