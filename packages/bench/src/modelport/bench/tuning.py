"""`modelport depth tune`: each runtime's best settings on this machine, by a small bounded search.

- The search space is the backend's own knobs as config keys (SPACE, from the descriptors'
  ``tuning``): thread counts up to this machine's cores, and the options the toolchain
  documents as speed trade-offs.
- Coordinate descent from the configured ("default") settings: one knob at a time, every
  value of it timed in interleaved rounds (so background load hits all candidates alike),
  a value replaces the current one only if it is clearly faster (MIN_GAIN on the median and
  faster in all but one paired round), else the difference is noise. At most 1 + sum(len(values)) candidates per backend: bounded, and each
  knob is judged with the others at their best so far.
- A candidate that changes numerics (fp16 storage/arithmetic, graph rewrites) is kept only
  if it still passes the backend's accuracy floor against the reference on the eval images.
- The winner and the default are then timed head to head, interleaved, and everything goes
  to ``depth/tuning.json``; ``bench --settings tuned`` reads the winner back from there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import numpy as np
from rich.markup import escape

from modelport.common.agreement import Kind, compare, gate_failures, gate_kind
from modelport.common.artifacts import ArtifactStore, write_atomic
from modelport.common.backends import THREADS as THREADS_VALUES
from modelport.common.backends import Backend, backends
from modelport.common.config import Config
from modelport.common.context import StepContext
from modelport.common.display import shown
from modelport.common.errors import InputError
from modelport.common.log import console
from modelport.common.machine import machine_info
from modelport.common.preprocess import to_tensor
from modelport.common.reference import load_reference
from modelport.common.results import headline_index
from modelport.common.schema import LatencyStats
from modelport.common.strict_json import json_text
from modelport.common.timing import MIN_GAIN, LoadWatch, clearly_faster, race
from modelport.runtime.base import Runtime
from modelport.runtime.registry import runtime_class
from modelport.runtime.run import prepared_images, run_outputs

TUNING_FILE = "depth/tuning.json"
TUNING_SCHEMA = "modelport.tuning/1"
CORES = os.cpu_count() or 1
THREAD_COUNTS = sorted({1, 2, CORES} & set(range(1, CORES + 1)))


def space_of(b: Backend) -> dict[str, list[Any]]:
    """A descriptor's tuning knobs with THREADS resolved to this machine's thread counts."""
    return {knob: THREAD_COUNTS if values == THREADS_VALUES else list(values) for knob, values in b.tuning.items()}


# Per backend key, from the descriptors: the knobs in the order they are tried, the one that sets the
# thread count (the thread sweep uses it too), and those that can change the outputs (a value other
# than the default must pass the accuracy floor).
SPACE: dict[str, dict[str, list[Any]]] = {k: space_of(b) for k, b in backends().items() if b.depth and b.tuning}
THREADS: dict[str, str] = {k: b.thread_knob for k, b in backends().items() if b.thread_knob}
NUMERIC: set[str] = {knob for b in backends().values() for knob in b.numeric}
ROUNDS = {"search": (5, 6, 8), "final": (10, 10, 20)}  # warm-up calls, rounds, runs per round


def config_with(config: Config, settings: dict[str, Any]) -> Config:
    """A copy of ``config`` with dotted keys set (validated like the file: a bad value fails here)."""
    cfg = config.model_copy(deep=True)
    for dotted, value in settings.items():
        section, key = dotted.split(".")
        setattr(getattr(cfg, section), key, value)
    return cfg


def current(config: Config, keys: Iterable[str]) -> dict[str, Any]:
    return {k: getattr(getattr(config, k.split(".")[0]), k.split(".")[1]) for k in keys}


class Candidates:
    """Active runtimes per settings tuple, made once and reused across knobs."""

    def __init__(self, ctx: StepContext, cls: type[Runtime], tensor: np.ndarray):
        self.ctx, self.cls, self.tensor = ctx, cls, tensor
        self.active: dict[str, Runtime] = {}

    @staticmethod
    def name(settings: dict[str, Any]) -> str:
        return json.dumps(settings, sort_keys=True)

    def get(self, settings: dict[str, Any]) -> Runtime:
        n = self.name(settings)
        if n not in self.active:
            rt = self.cls.from_store(self.ctx.store, config_with(self.ctx.config, settings))
            self.active[n] = rt.activate()
        return self.active[n]

    def time(self, options: list[dict[str, Any]], phase: str, per_round: dict[str, Any] | None = None) -> dict[str, LatencyStats]:
        runtimes = {self.name(s): self.get(s) for s in options}
        x = self.tensor
        return race({n: partial(rt.infer, x) for n, rt in runtimes.items()}, *ROUNDS[phase], per_round=per_round)

    def close(self) -> None:
        for rt in self.active.values():
            rt.deactivate()
        self.active.clear()


def passes_floor(ctx: StepContext, rt: Runtime, reference: np.ndarray | None) -> tuple[bool, dict[str, Any] | None]:
    if reference is None:
        return True, None
    outputs = run_outputs(rt, prepared_images(ctx), ctx.config.input)
    agreement = compare(outputs, reference, [p.name for p in ctx.eval_images])
    kind: Kind = "int8" if rt.precision == "int8" else "float"
    return not gate_failures(agreement, gate_kind(kind, ctx.config), ctx.config.accuracy), agreement.model_dump(
        exclude={"per_image"}
    )


def tune(ctx: StepContext, key: str) -> dict[str, Any]:
    """Search ``key``'s SPACE on this machine; returns its tuning.json entry (not yet written)."""
    cls = runtime_class(key)
    space = SPACE[key]
    cfg = ctx.config
    spec = cfg.input
    tensor = to_tensor(prepared_images(ctx)[headline_index(ctx)], spec, *cls.tensor_format(cfg))
    try:
        reference = load_reference(ctx.store, ctx.eval_images, spec.signature)
    except InputError as e:
        console.print(f"   [yellow]no accuracy guard for numeric knobs: {escape(str(e))}[/]")
        reference = None
    default = current(cfg, space)
    best = dict(default)
    trials, checked, started, load = [], {}, time.monotonic(), LoadWatch()
    pool = Candidates(ctx, cls, tensor)
    try:
        for knob, values in space.items():
            options = [best | {knob: v} for v in dict.fromkeys([best[knob], *values])]  # the current value always runs
            rounds: dict[str, list[float]] = {}
            stats = pool.time(options, "search", rounds)
            ranked = sorted(options, key=lambda s: stats[pool.name(s)].median)
            for s in options:
                trials.append(
                    {"knob": knob, "settings": s, "median_ms": stats[pool.name(s)].median, "p90_ms": stats[pool.name(s)].p90}
                )
            current_rounds = rounds[pool.name(best)]
            for s in ranked:  # fastest first; a numeric change must keep the accuracy floor
                if s[knob] != best[knob] and not clearly_faster(rounds[pool.name(s)], current_rounds):
                    continue  # not clearly faster than what we have: noise, keep looking / keep the current
                if knob in NUMERIC and s[knob] != default[knob]:
                    ok, agreement = passes_floor(ctx, pool.get(s), reference)
                    checked[f"{knob}={s[knob]}"] = {"passes_floor": ok, "agreement": agreement}
                    if not ok:
                        continue
                best = s
                break
            console.print(
                f"   {knob}: "
                + ", ".join(f"{shown(s[knob])} {stats[pool.name(s)].median:.2f}" for s in options)
                + f" ms -> {shown(best[knob])}"
            )
        final = pool.time([default, best], "final") if best != default else pool.time([default], "final")
        _, agreement = passes_floor(ctx, pool.get(best), reference)
    finally:
        pool.close()
    d, t = final[pool.name(default)], final[pool.name(best)]
    return {
        "key": key,
        "name": cls.display,
        "backend": cls.backend,
        "precision": cls.precision,
        "env": ctx.env,
        "space": space,
        "default": default,
        "winner": best,
        "changed": {k: v for k, v in best.items() if default[k] != v},
        "default_ms": d.model_dump(),
        "tuned_ms": t.model_dump(),
        "speedup": d.median / t.median,
        "trials": trials,
        "numeric_checks": checked,
        "agreement": agreement,
        "method": f"coordinate descent, a change kept only if >= {MIN_GAIN:.0%} faster and faster in all but one paired round, interleaved rounds "
        f"(search {ROUNDS['search']}, final {ROUNDS['final']}: warm-up, rounds, runs per round)",
        **dict(zip(("load_avg", "under_load"), load.finish(), strict=True)),
        "seconds": round(time.monotonic() - started, 1),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


# -- the tuning file: written by `depth tune` (any env), read by `bench --settings tuned`


def load_tuning(store: ArtifactStore) -> dict[str, Any]:
    path = store.path(TUNING_FILE)
    if not path.is_file():
        return {"schema": TUNING_SCHEMA, "backends": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e}", path) from None
    if data.get("schema") != TUNING_SCHEMA or not isinstance(data.get("backends"), dict):
        raise InputError(f"not a {TUNING_SCHEMA} file", path)
    return cast(dict[str, Any], data)


def save_entry(store: ArtifactStore, entry: dict[str, Any]) -> None:
    """Merge one backend's entry (call with the store lock held: envs write the file in turn)."""
    data = load_tuning(store)
    data["backends"][entry["key"]] = entry
    write_atomic(store.path(TUNING_FILE), json_text(data))


def tuned_settings(store: ArtifactStore, key: str) -> dict[str, Any]:
    """The winner for ``key``; a clear error when it was never tuned, a warning when tuned elsewhere."""
    entry = load_tuning(store)["backends"].get(key)
    if entry is None:
        raise InputError(f"no tuned settings for {key}: run `modelport depth tune {key}` first", store.path(TUNING_FILE))
    here, there = machine_info().get("cpu"), entry.get("machine", {}).get("cpu")
    if here != there:
        console.print(f"[yellow]warning:[/] {key} was tuned on {there!r}, this is {here!r}")
    return dict(entry["winner"])
