"""Measurements of a row beyond its batch-1 latency: throughput over concurrency levels, the whole frame
(decode + preprocess + infer + postprocess), per-layer time, a sustained run, and the CPU's run conditions around them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common.config import Config
from modelport.common.images import load_image
from modelport.common.letterbox import Placement
from modelport.common.letterbox import prepare as letterbox_prepare
from modelport.common.machine import NOT_EXPOSED, run_conditions, throttle_count
from modelport.common.onnx_layers import OnnxGraph
from modelport.common.preprocess import InputSpec, prepare, to_tensor
from modelport.common.schema import (
    FrameTime,
    LayerCategory,
    LayerProfile,
    LayerTime,
    RunConditions,
    Sustained,
    SustainedWindow,
    ThroughputPoint,
)
from modelport.common.timing import LoadWatch, load_average, sustained_flag, throughput_summary
from modelport.runtime.base import Runtime
from modelport.tasks.detect.judge import decoder


def throughput_point(runtime: Runtime, tensor: np.ndarray, workers: int, seconds: float) -> ThroughputPoint:
    samples, wall = runtime.run_concurrent(tensor, workers, seconds)
    return throughput_summary(samples, wall, workers, runtime.concurrency_mechanism(workers), runtime.worker_threads(workers))


def throughput_sweep(runtime: Runtime, tensor: np.ndarray, levels: list[int], seconds: float) -> list[ThroughputPoint]:
    return [throughput_point(runtime, tensor, n, seconds) for n in levels]


def top5(out: np.ndarray) -> list[int]:
    """What an application does with a classifier's output (and fill_outputs with every row's): the top 5."""
    return [int(i) for i in np.argsort(-out.reshape(-1))[:5]]


# A frame's stages as an application runs them: the photo to the tensor (and what postprocessing needs to
# map back: a detector's letterbox placement), the model, and its outputs to the answer (top-5, or boxes).
@dataclass(frozen=True)
class FrameStages:
    prepare: Callable[[np.ndarray], tuple[np.ndarray, Any]]
    infer: Callable[[np.ndarray], Any]
    postprocess: Callable[[Any, Any], object]


def classify_stages(runtime: Runtime, spec: InputSpec) -> FrameStages:
    return FrameStages(
        prepare=lambda image: (to_tensor(prepare(image, spec), spec, runtime.input_layout, runtime.input_dtype), None),
        infer=runtime.infer,
        postprocess=lambda out, _: top5(np.asarray(out)),
    )


def detect_stages(runtime: Runtime, config: Config) -> FrameStages:
    """A detector's frame: letterbox into the tensor, every output, decode + NMS back onto the photo."""
    det = config.detector
    if det is None:
        raise ValueError("[model] task is not detect")
    spec = config.input

    def pre(image: np.ndarray) -> tuple[np.ndarray, Placement]:
        prepared, placement = letterbox_prepare(image, spec, det)
        return to_tensor(prepared, spec, runtime.input_layout, runtime.input_dtype), placement

    return FrameStages(
        prepare=pre,
        infer=runtime.infer_all,
        postprocess=decoder(config),
    )


def frame_time(images: list[Path], frames: int, stages_of: FrameStages) -> FrameTime:
    """Median ms of each stage over ``frames`` frames, cycling over ``images`` (each decoded from its file every time)."""
    clock = time.perf_counter_ns
    stages = np.empty((frames, 4), dtype=np.int64)
    for i in range(frames):
        t0 = clock()
        image = load_image(images[i % len(images)])
        t1 = clock()
        tensor, placement = stages_of.prepare(image)
        t2 = clock()
        out = stages_of.infer(tensor)
        t3 = clock()
        stages_of.postprocess(out, placement)
        stages[i] = (t1 - t0, t2 - t1, t3 - t2, clock() - t3)
    med = np.median(stages, axis=0) / 1e6
    return FrameTime(
        frames=frames,
        decode=float(med[0]),
        preprocess=float(med[1]),
        infer=float(med[2]),
        postprocess=float(med[3]),
        total=float(np.median(stages.sum(axis=1)) / 1e6),
    )


SLOWEST = 10  # layers a row keeps (the report shows three)

# Op and kernel types, as each toolchain's profiler names them, of work an INT8 model does besides its
# layers' arithmetic: moving values into and out of integers, and reordering memory between kernels.
_CATEGORIES: dict[str, LayerCategory] = {
    # onnxruntime; OpenVINO (FakeQuantize); ncnn; MNN; TensorRT
    "quantizelinear": "quantize",
    "dynamicquantizelinear": "quantize",
    "fakequantize": "quantize",
    "quantize": "quantize",
    "requantize": "quantize",
    "floattoint8": "quantize",
    "dequantizelinear": "dequantize",
    "dequantize": "dequantize",
    "int8tofloat": "dequantize",
    # layout and precision moves between kernels: ORT's NCHWc reorders and the Transpose it inserts for
    # NHWC int8 kernels, OpenVINO's Reorder/Convert, MNN's ConvertTensor and Raster, TensorRT's reformatting copies,
    # ncnn's Packing
    "reorderinput": "reorder",
    "reorderoutput": "reorder",
    "transpose": "reorder",
    "reorder": "reorder",
    "convert": "reorder",
    "converttensor": "reorder",
    "reformat": "reorder",
    "packing": "reorder",
    "raster": "reorder",
}


def layer_category(op: str) -> LayerCategory:
    """What kind of work a layer of op type ``op`` is (any toolchain's spelling; "other" for compute)."""
    key = op.split("[")[0].lower().replace("_", "").replace(" ", "")  # MNN appends its dtype: "FloatToInt8 [ DT_INT8 ]"
    if key in _CATEGORIES:
        return _CATEGORIES[key]
    return "reorder" if key.startswith("reformat") else "other"


def layer_profile(runtime: Runtime, tensor: np.ndarray, runs: int, graph: OnnxGraph | None) -> LayerProfile:
    """The slowest layers of ``runtime`` on ``tensor`` and the shares of quantize/dequantize/reorder work, or why
    its toolchain has no per-layer time."""
    times = runtime.layer_times(tensor, runs, graph)
    if times is None:
        return LayerProfile(reason=runtime.layer_times_reason)
    if not times:
        return LayerProfile(reason=f"{runtime.display}'s profiler reported no layers")
    total = sum(t.ms for t in times)
    if not total > 0:
        return LayerProfile(reason=f"{runtime.display}'s profiler reported no time for any of {len(times)} layers")
    rows = [
        LayerTime(name=t.name, onnx=t.onnx, op=t.op, category=layer_category(t.op), ms=t.ms, share=t.ms / total) for t in times
    ]
    shares = {c: sum(r.share for r in rows if r.category == c) for c in ("quantize", "dequantize", "reorder")}
    return LayerProfile(
        how=f"{runtime.profiler}, mean of {runs} runs",
        runs=runs,
        layers=len(rows),
        total_ms=total,
        slowest=sorted(rows, key=lambda r: -r.ms)[:SLOWEST],
        shares=shares,
    )


class Conditions:
    """The run conditions of one row: read before its measurements start and completed after they end."""

    def __init__(self, root: Path | None = None):
        self.root = root
        self.before = run_conditions(root)
        self.load_before = load_average()
        self.throttles = throttle_count(root)

    def finish(self) -> RunConditions:
        after = run_conditions(self.root)
        now = throttle_count(self.root)
        if self.throttles is None or now is None:
            throttled = NOT_EXPOSED
        elif now > self.throttles:
            throttled = f"yes: {now - self.throttles} thermal throttle events during the run"
        else:
            throttled = "no"
        return RunConditions(
            **self.before,
            thermal_c_after=after["thermal_c"],
            load_before=self.load_before,
            load_after=load_average(),
            throttled=throttled,
        )


def _window(start_s: float, samples_ns: list[int]) -> SustainedWindow:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return SustainedWindow(
        start_s=round(start_s, 3), count=len(ms), p50=float(np.percentile(ms, 50)), p99=float(np.percentile(ms, 99))
    )


def sustained_run(call: Callable[[], object], seconds: float, window_s: float, root: Path | None = None) -> Sustained:
    """``call`` back to back for ``seconds``, p50/p99 per window of ``window_s``, with the throttle events and CPU
    frequency around it. The last window is kept only if it ran at least half a window."""
    clock = time.perf_counter_ns
    mhz_before, throttles_before = run_conditions(root)["cur_mhz"], throttle_count(root)
    load = LoadWatch()
    windows: list[SustainedWindow] = []
    start = clock()
    end, width = start + int(seconds * 1e9), int(window_s * 1e9)
    window_start, samples = start, list[int]()
    while True:
        t0 = clock()
        if t0 >= end:
            break
        if t0 - window_start >= width and samples:
            windows.append(_window((window_start - start) / 1e9, samples))
            # an inference longer than a window skips the windows it spanned, so start_s stays the time
            window_start, samples = window_start + width * ((t0 - window_start) // width), list[int]()
        call()
        samples.append(clock() - t0)
    if samples and (windows == [] or end - window_start >= width // 2):
        windows.append(_window((window_start - start) / 1e9, samples))
    throttles_after = throttle_count(root)
    throttled = None if throttles_before is None or throttles_after is None else throttles_after - throttles_before
    load_record, under_load = load.finish()
    first, last = windows[0], windows[-1]
    return Sustained(
        seconds=seconds,
        window_s=window_s,
        windows=windows,
        first_p50=first.p50,
        last_p50=last.p50,
        first_p99=first.p99,
        last_p99=last.p99,
        drift=last.p50 / first.p50 if first.p50 > 0 else 1.0,
        throttled=throttled,
        mhz_before=mhz_before,
        mhz_after=run_conditions(root)["cur_mhz"],
        load=load_record,
        under_load=under_load,
        flag=sustained_flag(windows, seconds, throttled),
    )
