"""`modelport depth sweep`: latency and throughput over batch sizes x thread counts.

- Batch: a runtime whose model has a batch dim (max_batch > 1) gets [N, ...] in one call;
  the batch-1 models are swept through their twins (`convert onnx-dynamic`, `convert
  tflite-dynamic`). ncnn has no batch dim at all: its batch is N sequential batch-1
  extracts, and the point says ``mode: loop``, so nobody reads it as native batching.
- Threads: each count gets its own freshly loaded runtime (ncnn picks kernels at load time),
  and the counts are timed in alternating rounds at every batch size.
- Each point times about IMAGES_PER_POINT images (at least MIN_CALLS calls), so batch 64
  costs about what batch 1 does; the 1-min load average is recorded beside each runtime.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelport.common.artifacts import write_atomic
from modelport.common.context import StepContext
from modelport.common.log import console
from modelport.common.machine import machine_info
from modelport.common.preprocess import to_tensor
from modelport.common.strict_json import json_text
from modelport.common.timing import LoadWatch, load_average, sample, summarize
from modelport.runtime.base import Runtime
from modelport.runtime.run import prepared_images

from .registry import batch_class
from .tuning import THREAD_COUNTS, THREADS, config_with

SWEEP_SCHEMA = "modelport.sweep/1"
BATCHES = (1, 2, 4, 8, 16, 32, 64)
IMAGES_PER_POINT = 128
MIN_CALLS, WARMUP_CALLS, ROUNDS = 3, 1, 3


def batch_tensor(ctx: StepContext, cls: type[Runtime], n: int) -> np.ndarray:
    """n eval images (cycled) as one tensor: real photos, not zeros (some kernels skip zeros)."""
    prepared = prepared_images(ctx)
    one = [to_tensor(prepared[i % len(prepared)], ctx.config.input, *cls.tensor_format(ctx.config)) for i in range(n)]
    return np.concatenate(one)


def batch_fn(rt: Runtime, x: np.ndarray, native: bool) -> Callable[[], object]:
    if native:
        return lambda: rt.infer(x)
    parts = [x[i : i + 1] for i in range(x.shape[0])]
    return lambda: [rt.infer(p) for p in parts]


def sweep(
    ctx: StepContext,
    key: str,
    batches: Sequence[int] = BATCHES,
    threads: Sequence[int] = THREAD_COUNTS,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every (threads, batch) point for ``key``; ``settings`` = config overrides (e.g. the tuned ones).

    One runtime per thread count, all loaded up front; at each batch size the thread counts
    are timed in alternating rounds, so a burst of background load hits them alike.
    """
    cls = batch_class(key)
    thread_key = THREADS[key]
    base = config_with(ctx.config, settings or {})
    started, load, points = time.monotonic(), LoadWatch(), []
    runtimes = {t: cls.from_store(ctx.store, config_with(base, {thread_key: t})) for t in threads}
    try:
        for rt in runtimes.values():
            rt.activate()
        for n in batches:
            native = cls.max_batch > 1
            x = batch_tensor(ctx, cls, n)
            calls = max(MIN_CALLS, math.ceil(IMAGES_PER_POINT / n))
            per_round = max(1, math.ceil(calls / ROUNDS))
            fns = {}
            for t, rt in runtimes.items():
                if native:
                    rt.set_batch(n)
                fns[t] = batch_fn(rt, x, native)
                for _ in range(WARMUP_CALLS):
                    fns[t]()
            samples: dict[int, list[Any]] = {t: [] for t in runtimes}
            for r in range(ROUNDS):
                for t in threads if r % 2 == 0 else list(reversed(threads)):
                    samples[t].extend(sample(fns[t], per_round))
            for t in threads:
                stats = summarize(samples[t], WARMUP_CALLS)
                p = {
                    "threads": t,
                    "batch": n,
                    "mode": "native" if native else "loop",
                    "calls": stats.runs,
                    "load_avg": load_average(),
                    "latency_ms": stats.model_dump(),
                    "per_image_ms": stats.median / n,
                    "images_per_s": 1000.0 * n / stats.median,
                }
                points.append(p)
                console.print(
                    f"   {cls.display} threads {t} batch {n:>2} ({p['mode']}): "
                    f"{stats.median:.2f} ms/call, {p['images_per_s']:.0f} img/s"
                )
        first = runtimes[threads[0]]
        settings_used = first.settings()  # while active: ncnn INT8 reads its runtime blobs for it
    finally:
        for rt in runtimes.values():
            rt.deactivate()
    return {
        "schema": SWEEP_SCHEMA,
        "key": key,
        "name": cls.display,
        "backend": cls.backend,
        "precision": cls.precision,
        "env": ctx.env,
        "artifact": ctx.store.rel(next(iter(first.files.values()))),
        "thread_setting": thread_key,
        "batch_support": "native" if cls.max_batch > 1 else "loop",
        "settings": settings_used,
        "points": sorted(points, key=lambda p: (p["threads"], p["batch"])),
        **dict(zip(("load_avg", "under_load"), load.finish(), strict=True)),
        "seconds": round(time.monotonic() - started, 1),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def write_sweep(ctx: StepContext, data: dict[str, Any]) -> None:
    write_atomic(ctx.store.path(f"depth/sweep-{data['key']}.json"), json_text(data))
