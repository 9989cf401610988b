"""Latency: monotonic ns clock around the runtime call only, warm-up, percentiles."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from .schema import LatencyStats


def summarize(samples_ns: list[int] | np.ndarray, warmup: int) -> LatencyStats:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no timing samples")
    median = float(np.median(ms))
    return LatencyStats(
        warmup=warmup,
        runs=int(ms.size),
        min=float(ms.min()),
        median=median,
        mean=float(ms.mean()),
        p90=float(np.percentile(ms, 90)),
        p99=float(np.percentile(ms, 99)),
        max=float(ms.max()),
        std=float(ms.std()),
        fps=1000.0 / median if median > 0 else float("inf"),
    )


def sample(fn: Callable[[], object], runs: int) -> np.ndarray:
    """Nanoseconds of each of ``runs`` calls of ``fn``."""
    clock = time.perf_counter_ns
    samples = np.empty(runs, dtype=np.int64)
    for i in range(runs):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return samples


def measure(fn: Callable[[], object], warmup: int, runs: int) -> LatencyStats:
    for _ in range(warmup):
        fn()
    return summarize(sample(fn, runs), warmup)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_problem(before: float, after: float) -> str | None:
    """Why a measurement taken at these 1-min load averages is not trustworthy (None: it is).

    The threshold is the core count at the start: more runnable threads than cores means the
    timed thread waits for a core (measured here: load 8 on 2 cores turned a 7 ms median into
    1188 ms). The average after the run is not compared: it includes the benchmark's own threads.
    """
    n = cores()
    if before > n:
        return f"taken under load: 1-min load average {before:g} (after {after:g}) on {n} cores"
    return None
