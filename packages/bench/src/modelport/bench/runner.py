"""Run a runtime on the eval images, time it, compare it, write ``results/<key>.json`` + ``.npy``."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from modelport.common.artifacts import sha256_file
from modelport.common.context import StepContext
from modelport.common.errors import HardwareMissing, ModelportError
from modelport.common.log import console
from modelport.common.onnx_layers import OnnxGraph
from modelport.common.onnx_layers import load as load_layers
from modelport.common.preprocess import to_tensor
from modelport.common.results import fill_outputs, headline_index, new_result, write_result
from modelport.common.schema import BackendResult, Status
from modelport.common.timing import LoadWatch, concurrency_levels, measure, summarize, unsteady, warm_sample
from modelport.runtime.base import ONNX_MODEL, Runtime
from modelport.runtime.registry import SOURCE_KEYS, runtime_class, source_key
from modelport.runtime.run import placements, prepared_images, run_all_outputs, run_outputs
from modelport.tasks.detect.judge import decode_call, fill_detections

from .coldstart import cold_start
from .measure import Conditions, classify_stages, detect_stages, frame_time, layer_profile, sustained_run, throughput_sweep

T = TypeVar("T")


def result_base(
    ctx: StepContext, cls: type[Runtime] | Runtime, status: Status = "ok", reason: str | None = None
) -> BackendResult:
    return new_result(
        ctx,
        key=cls.key,
        backend=cls.backend,
        precision=cls.precision,
        name=cls.display,
        device=cls.device,
        input_layout=cls.input_layout,
        input_dtype=cls.input_dtype,
        status=status,
        reason=reason,
    )


def not_this_source(ctx: StepContext, key: str) -> str | None:
    """Why a source runtime (tflite, onnx-source) has nothing to run: the source is the other kind."""
    contract = ctx.config.contract
    if key in SOURCE_KEYS and contract is not None and key != source_key(contract):
        return f"the source is {contract.name}, not this kind (`bench source` runs it)"
    return None


def secondary(result: BackendResult, what: str, measure: Callable[[], T], fallback: T) -> T:
    """A measurement beside the row's own (other thread counts, GPU-only time): if it fails, a note on
    the row says why and the row keeps its status, so a good main measurement is never lost to it."""
    try:
        return measure()
    except Exception as e:  # noqa: BLE001 - whatever the toolchain raises, the main measurement stands
        why = str(e) if isinstance(e, ModelportError) else f"{type(e).__name__}: {e}"
        result.notes.append(f"{what} not measured: {' '.join(why.split())}")
        return fallback


def more_measurements(ctx: StepContext, result: BackendResult, runtime: Runtime, tensor: np.ndarray) -> None:
    """Throughput over concurrency levels, the whole frame's stages and per-layer time, each as configured in [bench]."""
    bench = ctx.config.bench
    if bench.throughput:
        levels = concurrency_levels(bench.concurrency)
        console.print(
            f"   throughput {runtime.display}: concurrency {', '.join(map(str, levels))}, {bench.throughput_seconds:g} s each"
        )
        result.throughput = secondary(
            result, "throughput", lambda: throughput_sweep(runtime, tensor, levels, bench.throughput_seconds), []
        )
    if bench.frame_runs:
        stages = detect_stages(runtime, ctx.config) if ctx.config.detector else classify_stages(runtime, ctx.config.input)
        result.frame_ms = secondary(result, "frame time", lambda: frame_time(ctx.eval_images, bench.frame_runs, stages), None)
    if bench.layer_profile:
        result.layer_profile = secondary(
            result,
            "per-layer time",
            lambda: layer_profile(runtime, tensor, bench.layer_profile_runs, onnx_graph(ctx) if runtime.profiler else None),
            None,
        )
    if bench.sustained_seconds:
        console.print(
            f"   sustained {runtime.display}: {bench.sustained_seconds:g} s back to back, {bench.sustained_window:g} s windows"
        )
        result.sustained = secondary(
            result,
            "sustained run",
            lambda: sustained_run(bare_call(runtime, tensor), bench.sustained_seconds, bench.sustained_window),
            None,
        )


def bare_call(runtime: Runtime, tensor: np.ndarray) -> Callable[[], object]:
    """The toolchain's own call on ``tensor`` where the runtime has one, else its ``infer``."""
    try:
        return runtime.own_call(tensor)
    except NotImplementedError:
        return lambda: runtime.infer(tensor)


def onnx_graph(ctx: StepContext) -> OnnxGraph | None:
    """The layers of onnx/model.onnx, the names per-layer times are given in (None before `convert onnx`, or in an
    env without the onnx module: the toolchain's own names then)."""
    path = ctx.store.path(ONNX_MODEL)
    return load_layers(path) if path.is_file() and importlib.util.find_spec("onnx") is not None else None


def benchmark(ctx: StepContext, key: str) -> BackendResult:
    """Benchmark one backend and write its result.

    A missing toolchain or hardware is written as a skipped result with the reason. A model whose
    conversion failed, or that is missing, corrupt or modified, is written as a failed result with
    the reason and no outputs (the CLI exits non-zero), so the report shows the row.
    """
    cls = runtime_class(key)
    reason = cls.unavailable_reason() or not_this_source(ctx, key)
    if reason:
        result = result_base(ctx, cls, "skipped", reason)
        result.latency_note = "not measured: " + reason
        write_result(ctx.store, result)
        return result
    cfg, store = ctx.config, ctx.store
    detector = cfg.detector is not None
    prepared = prepared_images(ctx)
    names = [p.name for p in ctx.eval_images]
    result = result_base(ctx, cls)
    try:
        runtime = cls.from_store(store, cfg)
        result = result_base(ctx, runtime)  # a full-integer TFLite source names itself INT8
        for path in runtime.files.values():
            failure = store.failure(path)
            if failure:
                result.agreement = store.failure_agreement(path)
                raise ModelportError(f"its conversion failed: {failure}")
            store.check_current(path, rerun=f"modelport {cls.made_by()}")
        load = LoadWatch()
        conditions = Conditions()
        with runtime:
            if detector:
                boxes = run_all_outputs(runtime, prepared, cfg.input)
            else:
                outputs = run_outputs(runtime, prepared, cfg.input)
            headline_i = headline_index(ctx)
            tensor = to_tensor(prepared[headline_i], cfg.input, runtime.input_layout, runtime.input_dtype)
            console.print(
                f"   timing {runtime.display}: {cfg.bench.warmup} warm-up + {cfg.bench.runs} runs on {names[headline_i]}"
            )
            samples = warm_sample(lambda: runtime.infer(tensor), cfg.bench.warmup, cfg.bench.runs)
            result.latency_ms = summarize(samples, cfg.bench.warmup)
            if detector:  # numpy after the model, whatever ran it: timed the same way, reported apart
                decode = decode_call(boxes[headline_i], cfg, placements(ctx)[headline_i])
                result.postprocess_ms = measure(decode, cfg.bench.warmup, cfg.bench.runs)
            result.extra_timings = secondary(result, "extra timings", lambda: getattr(runtime, "extra_timings", {}), {})
            more_measurements(ctx, result, runtime, tensor)
            result.load_avg, result.under_load = load.finish()
            c1 = next((t.p50 for t in result.throughput if t.concurrency == 1), None)
            result.unsteady = unsteady(samples, c1, "at concurrency 1 seconds later")
            result.load_ms = runtime.load_ms
            result.tool_versions = runtime.tool_versions()
            result.settings = runtime.settings()
            result.size_bytes = runtime.size_bytes()
            first = next(iter(runtime.files.values()))
            result.artifact = store.rel(first)
            result.artifact_sha256 = sha256_file(first)
        if cfg.bench.cold_start:  # after this process released the model: the child has the machine to itself
            image = str(ctx.eval_images[headline_i])
            result.cold_start = secondary(
                result, "cold start", lambda: cold_start(ctx, key, image, cfg.bench.cold_start_runs), None
            )
        result.conditions = conditions.finish()
    except HardwareMissing as e:
        result.status, result.reason = "skipped", str(e)
        write_result(store, result)
        return result
    except ModelportError as e:
        # A failed row replaces an earlier result (that one no longer describes the file on disk);
        # write_result keeps an ok one in results/last-ok/ and the report says so.
        result.status, result.reason = "failed", str(e)
        result.latency_note = "not measured: failed"
        write_result(store, result)
        return result
    if detector:
        outputs = fill_detections(ctx, result, boxes, placements(ctx))
    else:
        fill_outputs(ctx, result, outputs)
    write_result(store, result, outputs)
    return result
