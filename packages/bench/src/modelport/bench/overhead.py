"""`modelport depth overhead`: how much the benchmark harness adds to what it measures.

Harness = exactly what `bench` times: ``timing.sample`` (a clock pair around each call)
around ``Runtime.infer`` (the active check, infer_impl, the output copy). Bare = the
toolchain's own call (``Runtime.own_call``) in a plain loop with one clock pair around
the whole loop. Both run on the same input in alternating rounds (harness first in even
rounds, bare first in odd ones) so background load hits both alike. Means are compared
(the bare loop only has a mean); the ratio's goal is <= 1.03.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelport.common.artifacts import write_atomic
from modelport.common.config import Config
from modelport.common.context import StepContext
from modelport.common.machine import machine_info
from modelport.common.preprocess import to_tensor
from modelport.common.results import headline_index
from modelport.common.strict_json import json_text
from modelport.common.timing import LoadWatch, sample
from modelport.runtime.registry import runtime_class
from modelport.runtime.run import prepared_images

from .tuning import config_with

OVERHEAD_SCHEMA = "modelport.overhead/1"
GOAL = 1.03
ROUNDS, RUNS, WARMUP = 20, 20, 20


def bare_loop(call: Callable[[], object], runs: int) -> float:
    """Mean ns per call of a plain loop: one clock pair, nothing else inside."""
    t0 = time.perf_counter_ns()
    for _ in range(runs):
        call()
    return (time.perf_counter_ns() - t0) / runs


def harness_cost_ns(runs: int = 20000) -> float:
    """What the harness adds per call with the inference taken out: ``sample`` around ``Runtime.infer``
    of a runtime whose infer_impl returns at once, minus a bare loop of a call that returns at once.
    Load-insensitive (microseconds, no threads), so it shows the floor the ratio's noise sits on."""
    from modelport.runtime.base import Runtime

    class Instant(Runtime):
        key, backend, precision, display = "instant", "none", "fp32", "instant"
        artifacts = {}

        def activate_impl(self) -> None:
            pass

        def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
            return tensor

    x = np.zeros(1, np.float32)
    rt = Instant(Config(), {}).activate()
    harness = float(np.median([np.mean(sample(lambda: rt.infer(x), runs // 10)) for _ in range(10)]))
    noop = lambda: x  # noqa: E731
    bare = float(np.median([bare_loop(noop, runs // 10) for _ in range(10)]))
    return max(0.0, harness - bare)


def measure_overhead(
    ctx: StepContext,
    key: str,
    rounds: int = ROUNDS,
    runs: int = RUNS,
    warmup: int = WARMUP,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cls = runtime_class(key)
    cfg = config_with(ctx.config, settings or {})
    tensor = to_tensor(prepared_images(ctx)[headline_index(ctx)], cfg.input, *cls.tensor_format(cfg))
    load = LoadWatch()
    harness_ns: list[float] = []  # mean per call, per round
    bare_ns: list[float] = []
    with cls.from_store(ctx.store, cfg) as rt:
        bare = rt.own_call(tensor)
        harness: Callable[[], object] = lambda: rt.infer(tensor)  # noqa: E731 - the very lambda runner.benchmark times
        for _ in range(warmup):
            harness()
            bare()
        for r in range(rounds):
            order = ("harness", "bare") if r % 2 == 0 else ("bare", "harness")
            for which in order:
                if which == "harness":
                    harness_ns.append(float(np.mean(sample(harness, runs))))
                else:
                    bare_ns.append(bare_loop(bare, runs))
        settings_used = rt.settings()
    h, b = np.asarray(harness_ns), np.asarray(bare_ns)
    per_round = h / b
    return {
        "schema": OVERHEAD_SCHEMA,
        "key": key,
        "name": cls.display,
        "backend": cls.backend,
        "env": ctx.env,
        "rounds": rounds,
        "runs_per_round": runs,
        "warmup": warmup,
        "harness_mean_ms": float(h.mean() / 1e6),
        "bare_mean_ms": float(b.mean() / 1e6),
        "ratio": float(np.median(per_round)),
        "ratio_of_means": float(h.mean() / b.mean()),
        "ratio_rounds": {"min": float(per_round.min()), "median": float(np.median(per_round)), "max": float(per_round.max())},
        "goal": GOAL,
        "meets_goal": bool(np.median(per_round) <= GOAL),
        "harness_cost_us": harness_cost_ns() / 1e3,
        "settings": settings_used,
        **dict(zip(("load_avg", "under_load"), load.finish(), strict=True)),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def write_overhead(ctx: StepContext, data: dict[str, Any]) -> None:
    write_atomic(ctx.store.path(f"depth/overhead-{data['key']}.json"), json_text(data))
