"""`modelport depth peer`: our throughput beside the toolchain's own benchmark tool on the same files.

Each round runs both, one right after the other (ours first in even rounds, the tool first in odd ones)
so background load hits both alike; the ratio is the median over rounds of ours / the tool's FPS, and
the goal is to be within 5% of it. Only runtimes whose toolchain ships such a tool implement
``Runtime.peer_throughput`` (OpenVINO: `benchmark_app -hint throughput`); the batch-1 counterpart, our
latency vs the toolchain's bare call, is `modelport depth overhead`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelport.common.artifacts import write_atomic
from modelport.common.context import StepContext
from modelport.common.machine import machine_info
from modelport.common.preprocess import to_tensor
from modelport.common.results import headline_index
from modelport.common.strict_json import json_text
from modelport.common.timing import LoadWatch
from modelport.runtime.base import Runtime
from modelport.runtime.registry import runtime_class
from modelport.runtime.run import prepared_images

PEER_SCHEMA = "modelport.peer/1"
GOAL = 0.05  # |ours / tool - 1|


def peer_reason(key: str) -> str | None:
    """None when ``key``'s runtime has a toolchain benchmark tool to compare with, else why not."""
    cls = runtime_class(key)
    if cls.peer_throughput is Runtime.peer_throughput:
        return f"{cls.display}: its toolchain ships no throughput benchmark tool to compare with"
    return None


def measure_peer(ctx: StepContext, key: str, rounds: int, seconds: float) -> dict[str, Any]:
    cls = runtime_class(key)
    cfg = ctx.config
    tensor = to_tensor(prepared_images(ctx)[headline_index(ctx)], cfg.input, *cls.tensor_format(cfg))
    load = LoadWatch()
    per_round: list[dict[str, Any]] = []
    with cls.from_store(ctx.store, cfg) as rt:
        for r in range(rounds):
            per_round.append(rt.peer_throughput(tensor, seconds, tool_first=r % 2 == 1))
    ours = np.asarray([p["ours_fps"] for p in per_round], dtype=np.float64)
    tool = np.asarray([p["tool_fps"] for p in per_round], dtype=np.float64)
    ratios = ours / tool
    load_avg, under_load = load.finish()
    ratio = float(np.median(ratios))
    return {
        "schema": PEER_SCHEMA,
        "key": key,
        "name": cls.display,
        "backend": cls.backend,
        "env": ctx.env,
        "rounds": rounds,
        "seconds": seconds,
        "tool": per_round[0]["tool"],
        "per_round": per_round,
        "ours_fps": float(np.median(ours)),
        "tool_fps": float(np.median(tool)),
        "ratio": ratio,
        "ratio_rounds": {"min": float(ratios.min()), "max": float(ratios.max())},
        "goal": GOAL,
        "meets_goal": abs(ratio - 1) <= GOAL,
        "load_avg": load_avg,
        "under_load": under_load,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def write_peer(ctx: StepContext, data: dict[str, Any]) -> None:
    write_atomic(ctx.store.path(f"depth/peer-{data['key']}.json"), json_text(data))
