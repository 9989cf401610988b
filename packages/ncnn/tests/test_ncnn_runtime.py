"""The ncnn runtimes on the real converted models: blob names, Mat lifetimes, options, the benchmark result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from conftest import make_context
from modelport.bench.runner import benchmark
from modelport.common.context import StepContext
from modelport.common.preprocess import to_tensor
from modelport.convert.registry import target_module
from modelport.ncnn.runtime import NcnnInt8Runtime, NcnnRuntime, vulkan_devices
from modelport.runtime.base import Runtime
from modelport.runtime.run import prepared_images

pytestmark = pytest.mark.ncnn


@pytest.fixture(scope="module")
def ncnn_ctx(pipeline: StepContext, test_env: dict[str, str]) -> StepContext:
    for name in ("ncnn", "ncnn-int8"):
        target_module(name).run(pipeline, force=False)
    # Short timings: tests check that timing works, the benchmark measures speed.
    return make_context(test_env, overrides=["bench.warmup=2", "bench.runs=5"])


def tensors(ctx: StepContext, cls: type[Runtime]) -> list[np.ndarray]:
    return [to_tensor(a, ctx.config.input, cls.input_layout, cls.input_dtype) for a in prepared_images(ctx)]


@pytest.mark.slow
def test_blob_names_are_read_from_the_model(ncnn_ctx: StepContext, tmp_path: Path) -> None:
    """Renaming the input/output blobs (not in0/out0) changes nothing."""
    store = ncnn_ctx.store
    text = store.path("ncnn/model.param").read_text()
    renamed = tmp_path / "renamed.param"
    renamed.write_text(text.replace(" in0", " data").replace(" out0", " prob"))
    x = tensors(ncnn_ctx, NcnnRuntime)[0]
    with (
        NcnnRuntime.from_store(store, ncnn_ctx.config) as a,
        NcnnRuntime(ncnn_ctx.config, {"param": renamed, "bin": store.path("ncnn/model.bin")}) as b,
    ):
        assert (b.input_name, b.output_name) == ("data", "prob")
        np.testing.assert_array_equal(a.infer(x), b.infer(x))


@pytest.mark.slow
def test_outputs_do_not_alias_between_calls(ncnn_ctx: StepContext) -> None:
    """ncnn.Mat(ndarray) does not copy; every call must give its own, stable result."""
    xs = tensors(ncnn_ctx, NcnnRuntime)[:3]
    with NcnnRuntime.from_store(ncnn_ctx.store, ncnn_ctx.config) as rt:
        each = [rt.infer(x) for x in xs]
        again = [rt.infer(x.copy()) for x in xs]
    for a, b in zip(each, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(each[0], each[1])
    assert all(abs(float(o.sum()) - 1.0) < 1e-3 for o in each)  # softmax rows, not garbage


@pytest.mark.slow
def test_int8_runtime_holds_int8_blobs(ncnn_ctx: StepContext) -> None:
    x = tensors(ncnn_ctx, NcnnInt8Runtime)[0]
    with NcnnInt8Runtime.from_store(ncnn_ctx.store, ncnn_ctx.config) as rt:
        rt.infer(x)
        s = rt.settings()
    assert s["use_int8_inference"] is True and s["use_vulkan_compute"] is False
    assert s["int8_blobs_at_runtime"] == cast(int, s["requantized_layers"]) > 0


@pytest.mark.slow
def test_options_come_from_the_config(test_env: dict[str, str], ncnn_ctx: StepContext) -> None:
    ctx = make_context(
        test_env, overrides=["ncnn.threads=1", "ncnn.winograd=false", "ncnn.sgemm=false", "ncnn.packing_layout=false"]
    )
    x = tensors(ctx, NcnnRuntime)[0]
    with NcnnRuntime.from_store(ctx.store, ctx.config) as rt:
        out = rt.infer(x)
        s = rt.settings()
        opt = rt.net.opt
        assert (opt.num_threads, opt.use_winograd_convolution, opt.use_sgemm_convolution, opt.use_packing_layout) == (
            1,
            False,
            False,
            False,
        )
    assert s["threads"] == 1 and s["use_packing_layout"] is False
    with NcnnRuntime.from_store(ncnn_ctx.store, ncnn_ctx.config) as rt:
        np.testing.assert_allclose(out, rt.infer(x), atol=1e-4)  # other kernels, same numbers


@pytest.mark.slow
def test_benchmark_writes_results_with_both_thread_counts(ncnn_ctx: StepContext) -> None:
    for key in ("ncnn", "ncnn-int8"):
        result = benchmark(ncnn_ctx, key)
        assert result.status == "ok", result.reason
        saved = json.loads(ncnn_ctx.store.path(f"results/{key}.json").read_text())
        assert saved["latency_ms"]["runs"] == 5 and saved["settings"]["threads"] == 2
        assert saved["extra_timings"]["threads_1"]["runs"] == 5
        assert saved["size_bytes"] == sum(
            ncnn_ctx.store.path(f"ncnn/{f}").stat().st_size
            for f in (("model.param", "model.bin") if key == "ncnn" else ("model-int8.param", "model-int8.bin"))
        )
        assert saved["agreement"]["top1"] >= (1.0 if key == "ncnn" else 0.9)


def test_missing_model_names_the_convert_step(test_env: dict[str, str], tmp_path: Path) -> None:
    ctx = make_context({**test_env, "MODELPORT_ARTIFACTS": str(tmp_path)})
    from modelport.common.errors import InputError

    with pytest.raises(InputError, match="modelport convert ncnn-int8"):
        NcnnInt8Runtime.from_store(ctx.store, ctx.config).activate()


@pytest.mark.slow
@pytest.mark.skipif(
    not vulkan_devices(), reason="no Vulkan device (apt-get install mesa-vulkan-drivers libvulkan1 gives a CPU one)"
)
def test_vulkan_path_gives_the_cpu_answer(test_env: dict[str, str], ncnn_ctx: StepContext) -> None:
    ctx = make_context(test_env, overrides=["ncnn.vulkan=on"])
    xs = tensors(ctx, NcnnRuntime)
    with NcnnRuntime.from_store(ctx.store, ctx.config) as gpu, NcnnRuntime.from_store(ncnn_ctx.store, ncnn_ctx.config) as cpu:
        assert gpu.settings()["use_vulkan_compute"] is True
        for x in xs:
            a, b = gpu.infer(x), cpu.infer(x)
            assert a.argmax() == b.argmax()
            assert float((a @ b.T).item()) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.9999
