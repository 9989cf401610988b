"""Latency: monotonic ns clock around the runtime call only, warm-up, percentiles."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .schema import LatencyStats, SustainedWindow, ThroughputPoint


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
    return summarize(warm_sample(fn, warmup, runs), warmup)


def warm_sample(fn: Callable[[], object], warmup: int, runs: int) -> np.ndarray:
    """``warmup`` untimed calls, then the ns of each of ``runs`` calls."""
    for _ in range(warmup):
        fn()
    return sample(fn, runs)


# A row whose own timings disagree by this much holds for part of the row only. Measured on a 2-core KVM guest:
# ncnn FP32 (libgomp, 2 threads) ran at 5.2 or 10.7 ms per call, switching every few seconds in one process,
# while one- and two-thread arithmetic probes on the same cores kept their speed within 5%.
UNSTEADY = 1.3
STEADY_BLOCKS = 5


def unsteady(samples_ns: np.ndarray, later_p50_ms: float | None = None, later: str = "") -> str | None:
    """Why a row's latency is not one number (None: it is): the medians of its consecutive blocks of runs, or
    its median against the same call's p50 timed again later in the row (``later`` names that timing), differ
    by UNSTEADY or more. Load is flagged apart (load_problem): this is the machine's speed changing under a
    quiet load, which a median hides by landing in one mode."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    why = []
    if ms.size >= 5 * STEADY_BLOCKS:
        blocks = [float(np.median(b)) for b in np.array_split(ms, STEADY_BLOCKS)]
        if max(blocks) >= UNSTEADY * min(blocks):
            why.append(
                f"the medians of {STEADY_BLOCKS} consecutive blocks of runs span {min(blocks):.2f}-{max(blocks):.2f} ms "
                f"({max(blocks) / min(blocks):.2f}x)"
            )
    median = float(np.median(ms)) if ms.size else 0.0
    if later_p50_ms and median and max(median, later_p50_ms) >= UNSTEADY * min(median, later_p50_ms):
        why.append(
            f"median {median:.2f} ms vs {later_p50_ms:.2f} ms {later} ({max(median, later_p50_ms) / min(median, later_p50_ms):.2f}x)"
        )
    return "; ".join(why) or None


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


def others_running(samples: int = 20, interval: float = 0.005, proc: Path = Path("/proc")) -> float | None:
    """Mean number of other processes' threads runnable right now: /proc/stat's procs_running (every runnable
    thread on the machine, the reading one among them) minus this process's own runnable threads, sampled
    ``samples`` times ``interval`` apart. None where /proc does not say (not Linux)."""
    counts = []
    for i in range(samples):
        try:
            stat = (proc / "stat").read_text()
            running = int(next(line.split()[1] for line in stat.splitlines() if line.startswith("procs_running ")))
        except (OSError, StopIteration, ValueError, IndexError):
            return None
        own = 0
        for task in (proc / "self/task").glob("*/stat"):
            try:
                own += task.read_text().rsplit(")", 1)[1].split()[0] == "R"  # state follows the command name
            except (OSError, IndexError):
                continue  # a thread that ended while being read
        counts.append(max(0, running - max(own, 1)))
        if i + 1 < samples:
            time.sleep(interval)
    return float(np.mean(counts))


def load_problem(
    before: float, after: float, others_before: float | None = None, others_after: float | None = None
) -> str | None:
    """Why a measurement taken at this load is not trustworthy (None: it is).

    What slows a timed thread is other work wanting the cores while it runs (measured here: load 8 on
    2 cores turned a 7 ms median into 1188 ms). The other processes' runnable threads, sampled right before
    and right after the measurement, say that directly: half the cores busy with them (at least one
    thread) flags it. The 1-min load average cannot: it still counts this process's own work of the last
    minute (a conversion, the previous row's threads), which tripped the flag on every 2-core CI run; it is
    kept beside the flag, and is the test only where /proc does not say who is running.
    """
    n = cores()
    if others_before is None or others_after is None:
        if before > n:
            return f"taken under load: 1-min load average {before:g} (after {after:g}) on {n} cores"
        return None
    worst = max(others_before, others_after)
    if worst >= max(1.0, n / 2):
        return (
            f"taken under load: {worst:.1f} threads of other processes runnable on {n} cores "
            f"(1-min load average {before:g} -> {after:g})"
        )
    return None


class LoadWatch:
    """The load around one measurement: made right before it, ``finish()`` right after."""

    def __init__(self) -> None:
        self.before, self.others_before = load_average(), others_running()

    def finish(self) -> tuple[dict[str, float], str | None]:
        """The load record (1-min averages, other processes' runnable threads) and load_problem's verdict."""
        load = {"before": self.before, "after": load_average()}
        others_after = others_running()
        if self.others_before is not None and others_after is not None:
            load |= {"others_before": round(self.others_before, 2), "others_after": round(others_after, 2)}
        return load, load_problem(**load)


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


DRIFT_FLAG = 0.10  # a last window's p50 this much off the first's makes the row's latency a moment, not a level


def sustained_flag(windows: list[SustainedWindow], seconds: float, throttled: int | None) -> str | None:
    """Why a sustained run makes its row's numbers unreliable (p50 drift, throttling), None when they hold."""
    flags = []
    drift = windows[-1].p50 / windows[0].p50 - 1 if windows and windows[0].p50 > 0 else 0.0
    if abs(drift) > DRIFT_FLAG:
        flags.append(f"DRIFT {drift:+.0%} p50 over {seconds:g} s")
    if throttled:
        flags.append(f"THROTTLED {throttled} event{'s' if throttled != 1 else ''}")
    return "; ".join(flags) or None
