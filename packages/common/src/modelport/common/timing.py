"""Latency: monotonic ns clock around the runtime call only, warm-up, percentiles."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .schema import LatencyStats, ThroughputPoint


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


# One candidate beats another only if its median is this much lower: on a shared 2-core machine 1-2%
# differences are noise, and a choice that only won a coin toss is no choice.
MIN_GAIN = 0.03


def race(
    calls: dict[str, Callable[[], object]], warmup: int, rounds: int, runs: int, per_round: dict[str, list[float]] | None = None
) -> dict[str, LatencyStats]:
    """Time each call in alternating rounds (A B C, C B A, ...) so background load hits them alike.

    ``per_round`` (optional) receives each call's median ms per round, for paired comparisons.
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[Any]] = {n: [] for n in calls}
    for r in range(rounds):
        names = list(calls) if r % 2 == 0 else list(reversed(calls))  # no candidate always goes first
        for n in names:
            got = sample(calls[n], runs)
            samples[n].extend(got)
            if per_round is not None:
                per_round.setdefault(n, []).append(float(np.median(got)) / 1e6)
    return {n: summarize(s, warmup) for n, s in samples.items()}


def clearly_faster(cand: list[float], current: list[float]) -> bool:
    """Faster by MIN_GAIN overall and in all but at most one paired round: a burst of load in one
    round cannot crown a candidate."""
    wins = sum(c < k for c, k in zip(cand, current, strict=True))
    return float(np.median(cand)) <= float(np.median(current)) * (1 - MIN_GAIN) and wins >= len(cand) - 1


def speedups(fast: list[float], slow: list[float]) -> list[float]:
    """Per paired round of one interleaved run: how many times faster ``fast`` ran (``slow`` ms / ``fast`` ms)."""
    return [s / f for f, s in zip(fast, slow, strict=True)]


def meets_speedup(fast: list[float], slow: list[float], factor: float) -> bool:
    """``fast`` runs at least ``factor`` times faster than ``slow``, judged on the paired rounds of one
    interleaved run: the median ratio reaches it and so does every round but at most one (when there are
    three or more). One burst of load in one round neither makes nor breaks it; one pair of medians
    alone (a single round) must reach it outright."""
    ratios = speedups(fast, slow)
    if not ratios:
        raise ValueError("no timing rounds")
    misses = sum(r < factor for r in ratios)
    return float(np.median(ratios)) >= factor and misses <= (1 if len(ratios) >= 3 else 0)


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


def concurrency_levels(configured: list[int]) -> list[int]:
    """The configured levels, or 1, 2 and this machine's cores; each once, in order."""
    return sorted(set(configured or [1, 2, cores()]))


def throughput_summary(
    samples_ns: list[int], wall: float, concurrency: int, mechanism: str, threads_per_worker: int | None
) -> ThroughputPoint:
    """One concurrency level's point from every request's ns and the wall seconds they took together."""
    if not samples_ns or wall <= 0:
        raise ValueError(f"no inference finished at concurrency {concurrency}")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return ThroughputPoint(
        concurrency=concurrency,
        mechanism=mechanism,
        threads_per_worker=threads_per_worker,
        seconds=wall,
        inferences=len(samples_ns),
        fps=len(samples_ns) / wall,
        p50=p50,
        p90=p90,
        p99=p99,
    )
