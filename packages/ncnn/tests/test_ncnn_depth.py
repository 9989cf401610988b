"""Issue 7 machinery for ncnn: batch = sequential extracts (no batch dim), thread sweep, own call, overhead."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from conftest import make_context
from modelport.bench import overhead, sweep, tuning
from modelport.common.context import StepContext
from modelport.common.preprocess import to_tensor
from modelport.convert.registry import target_module
from modelport.ncnn.runtime import NcnnInt8Runtime, NcnnRuntime
from modelport.runtime.run import prepared_images

pytestmark = [pytest.mark.ncnn, pytest.mark.slow]


@pytest.fixture(scope="module")
def ncnn_ctx(pipeline: StepContext, test_env: dict[str, str]) -> StepContext:
    for name in ("ncnn", "ncnn-int8"):
        target_module(name).run(pipeline, force=False)
    return make_context(test_env)


@pytest.mark.parametrize("cls", [NcnnRuntime, NcnnInt8Runtime])
def test_own_call_is_the_same_inference(ncnn_ctx: StepContext, cls: type[NcnnRuntime]) -> None:
    x = to_tensor(prepared_images(ncnn_ctx)[0], ncnn_ctx.config.input, cls.input_layout, cls.input_dtype)
    with cls.from_store(ncnn_ctx.store, ncnn_ctx.config) as rt:
        ret, mat = cast(tuple[int, Any], rt.own_call(x)())
        assert ret == 0
        np.testing.assert_array_equal(np.array(mat).reshape(-1), rt.infer(x).reshape(-1))


def test_ncnn_batches_are_sequential_extracts_and_say_so(ncnn_ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "IMAGES_PER_POINT", 4)
    data = sweep.sweep(ncnn_ctx, "ncnn-int8", batches=[1, 2], threads=[1, 2])
    assert data["batch_support"] == "loop" and data["thread_setting"] == "ncnn.threads"
    assert [(p["threads"], p["batch"], p["mode"]) for p in data["points"]] == [
        (1, 1, "loop"),
        (1, 2, "loop"),
        (2, 1, "loop"),
        (2, 2, "loop"),
    ]
    with NcnnRuntime.from_store(ncnn_ctx.store, ncnn_ctx.config) as rt, pytest.raises(ValueError, match="batches of 1..1"):
        rt.set_batch(2)


def test_ncnn_overhead_and_a_thread_override(ncnn_ctx: StepContext) -> None:
    data = overhead.measure_overhead(ncnn_ctx, "ncnn", rounds=2, runs=2, warmup=1, settings={"ncnn.threads": 1})
    assert data["settings"]["threads"] == 1
    assert data["ratio_of_means"] == pytest.approx(data["harness_mean_ms"] / data["bare_mean_ms"])
    assert data["ratio_rounds"]["min"] <= data["ratio"] <= data["ratio_rounds"]["max"]
    assert tuning.THREADS["ncnn"] == "ncnn.threads" and "ncnn.fp16_storage" in tuning.NUMERIC
