"""Recovery of an INT8 model that misses the [accuracy] floors: one bounded search for every toolchain.

1. The configured variant; if it meets the floors, that is the answer (no search).
2. A detector: its head (``Knobs.head_layers``: the last convs before the outputs and the decode path
   after them) in float, with the configured method. Boxes and class scores share tensors there, and
   one INT8 scale for both is what the peers' guides warn about first. When it meets the floors, every
   layer of the head runs in float: the search still tries step 3, then fewer of the worst layers than the
   head has (step 4, no greedy), and the final timing keeps the faster.
3. The toolchain's other calibration methods, in its order, all layers INT8 (cheaper than any float
   layer: YOLOX-nano on OpenVINO, NNCF's mixed preset met the floors alone and did worse with the head
   in float), until one meets the floors. A toolchain's last methods may choose float layers themselves
   (NNCF's accuracy control, ``+qac``): the variant records them as its float layers.
4. From the best of those (a detector: with its head in float first, when that is better), its worst layers (per-layer analysis, lowest own SQNR) kept in float:
   1, 2, 4, ... layers until the floors are met, then bisection down to the fewest that meet them, then
   each of those layers dropped again, one at a time, while the rest still meet them (``prune``).
   Candidates are only layers that variant really quantizes (``Knobs.quantized_layers``): a layer
   the toolchain already runs in float ranks anywhere, by chance, and keeping it "in float" changes nothing.
   Then the same set with its gaps closed: the few quantized layers between two of its float regions put in
   float too (``onnx_layers.close_gaps``). Every float region is an island with Q/DQ pairs at its borders;
   scattered float layers cost more of them than the same layers in one run.
5. Greedy, measured: the one worst-ranked layer that helps most, then a second, ... (few layers,
   each one costs speed), while nothing that small meets the floors; of layers that help alike, the one
   that joins an existing float region.
Each variant's float layers are costed on the ONNX graph (``Variant.regions``: connected runs of float
layers; ``float_share``: the share of the model's MACs they run).
Everything after step 2 stops at ``[quantization] recover_minutes``. The variants that can matter (``worth_timing``;
the configured one alone too) are timed in interleaved rounds with the FP32 twin; speed is a floor as well: of the variants that meet the
[accuracy] floors, those at least ``min_speedup`` times as fast as the twin in (nearly) every round come
first (``speed_check``), and the fastest of the first group is kept; when the rounds cannot tell it from
others (``SEPARATES``), the one of those whose float layers cost least (float share plus ``REGION_SHARE`` per region). A
kept variant below the speed floor is flagged slow in the record, the results row and the report, and fails
the step only with ``speed_floor = "fail"``. With no variant meeting the accuracy floors, the best by agreement is kept under its below-floor
name (nothing later trusts it) and the step fails. A backend supplies only the knobs (``Knobs``, what the
search reads; the base that implements it for every backend is ``modelport.runtime.knobs.Knobs``); each
variant it builds is an artifact cached by its manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from pydantic import ValidationError

from .agreement import gate_failures
from .artifacts import ArtifactStore, write_atomic
from .backends import backends
from .below_floor import keep_below_floor
from .calibration import calibration_record
from .config import AccuracyConfig
from .context import StepContext
from .errors import AccuracyGateError, HardwareMissing, InputError, ModelportError, ToolchainMissing
from .log import console, progress, step, warn
from .onnx_layers import OnnxGraph, close_gaps, float_share, regions
from .schema import Agreement, BackendResult, SpeedCheck
from .timing import LoadWatch, meets_speedup, speedups

SCHEMA = "modelport.recovery/1"
GREEDY_WIDTH = 6  # worst-ranked layers the greedy stage tries one by one
GREEDY_DEPTH = 3  # ... for sets of at most this many float layers
GAP_MAX = 2  # quantized layers in a row the search fills to join two float regions
# One passing variant beats another on time only when it is at least this much faster in (nearly) every
# paired round (timing.meets_speedup); closer than that, the cheaper float layers win (_cost).
SEPARATES = 1.05
# An untimed estimate: a float region's borders (a Q/DQ pair, or a format change on an NPU) cost about what 2% of
# the model's MACs in float do. On MobileNetV2 that is ~6 M MACs, a small 1x1 conv, against a quantize and a
# dequantize pass over a 112x112x32 tensor at its widest.
REGION_SHARE = 0.02


def record_path(key: str) -> str:
    return f"recover/{key}.json"


def variant_id(method: str, float_layers: list[str]) -> str:
    """``percentile``, ``minmax-float3-1a2b3c``: readable, and distinct for distinct layer sets."""
    if not float_layers:
        return method
    return f"{method}-float{len(float_layers)}-{hashlib.sha256(chr(10).join(float_layers).encode()).hexdigest()[:6]}"


@dataclass
class Variant:
    id: str
    method: str
    float_layers: list[str]  # ONNX layer names (onnx_layers.py) kept in float
    files: dict[str, str]  # role -> artifact
    agreement: dict[str, Any] | None = None  # top1, cosine_min, cosine_mean, images
    failures: list[str] = field(default_factory=list)  # floors missed; [] = meets them
    latency_ms: float | None = None  # best of the interleaved rounds' medians
    rounds_ms: list[float] | None = None  # each interleaved round's median, paired with the FP32 twin's
    speedup: float | None = None  # median over the rounds of FP32 ms / this variant's ms
    meets_speed: bool | None = None  # timing.meets_speedup against [quantization] min_speedup; None: not timed
    size_bytes: int | None = None
    build_seconds: float | None = None
    stage: str = "default"  # default | head | calibration | float | prune | regions | greedy
    regions: int | None = None  # connected runs of float layers in the ONNX graph: each one a Q/DQ island
    float_share: float | None = None  # share of the model's MACs its float layers run; None: not counted
    shortfall: float | None = None  # how far below the [accuracy] floors, summed over them (0: meets them)

    @property
    def passes(self) -> bool:
        return self.agreement is not None and not self.failures


class Knobs(Protocol):
    key: str  # results key, e.g. "onnx-int8"
    display: str
    methods: list[str]  # calibration methods, the configured one first
    float_layers: list[str]  # configured layers already kept in float

    def build(self, method: str, float_layers: list[str]) -> Variant: ...

    def worst_layers(self, variant: Variant) -> list[str]:
        """Every layer of ``variant``'s per-layer analysis, worst first (ONNX layer names)."""

    def quantized_layers(self, variant: Variant) -> set[str]:
        """The ONNX layers ``variant`` really quantizes, read from its INT8 model (or the toolkit's own record)."""

    def head_layers(self, variant: Variant) -> list[str]:
        """A detector's head layers ``variant`` quantizes (``onnx_layers.head``); [] for a classifier."""

    def layer_graph(self) -> OnnxGraph | None:
        """The FP32 ONNX model's layers with their MACs (``onnx_layers.load(..., macs=True)``), what float layers
        cost is counted on; None: not counted."""

    def in_float(self, float_layers: list[str]) -> list[str]:
        """The layers of ``layer_graph`` a variant with ``float_layers`` really runs in float (onnxruntime's QDQ:
        their consumers too), what its regions and float share are counted on."""

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        """variant id (and "fp32" for the twin) -> one inference, while the context is open; None when
        latency cannot be measured here (a simulator)."""


def brief(agreement: Agreement | dict[str, Any] | None) -> dict[str, Any] | None:
    if agreement is None:
        return None
    a = agreement if isinstance(agreement, dict) else agreement.model_dump(exclude={"per_image"})
    # a detector's verdict is its boxes (``detect``): judged on them, ranked by F1 then mAP
    return {k: a[k] for k in ("images", "top1", "cosine_min", "cosine_mean", "detect") if a.get(k) is not None}


def agreement_text(a: dict[str, Any] | None) -> str:
    """A variant's agreement as one phrase: a detector's boxes, else top-1 and cosine."""
    a = a or {}
    d = a.get("detect")
    if d:
        mean_ap = f", mAP {d['map']:.4f}" if d.get("map") is not None else ""
        return f"boxes F1 vs source {d.get('f1', 0):.4f}{mean_ap}"
    return f"top-1 {a.get('top1', 0):.0%}, cosine min {a.get('cosine_min', 0):.4f} / mean {a.get('cosine_mean', 0):.4f}"


def judge(variant: Variant, accuracy: AccuracyConfig) -> Variant:
    variant.failures = (
        gate_failures(Agreement(**_full(variant.agreement)), "int8", accuracy) if variant.agreement else ["not verified"]
    )
    if variant.agreement:
        variant.shortfall = round(shortfall(variant.agreement, accuracy), 6)
    return variant


def shortfall(a: dict[str, Any], accuracy: AccuracyConfig) -> float:
    """How far below the INT8 floors, summed over them (0: meets them); a detector by its boxes."""
    d = a.get("detect")
    if d:
        short = max(0.0, accuracy.detect_int8_f1_min - float(d.get("f1", 0)))
        if d.get("map") is not None and d.get("source_map") is not None:
            short += max(0.0, accuracy.detect_int8_map_ratio_min * float(d["source_map"]) - float(d["map"]))
        return short
    return (
        max(0.0, accuracy.int8_top1_min - float(a.get("top1", 0)))
        + max(0.0, accuracy.int8_cosine_min - float(a.get("cosine_min", -1)))
        + max(0.0, accuracy.int8_cosine_mean_min - float(a.get("cosine_mean", -1)))
    )


def _full(a: dict[str, Any]) -> dict[str, Any]:
    return {"top5_overlap": 0.0, "max_abs_diff": 0.0, "mse": 0.0, **a}


def float_text(layers: int, regions: int | None, share: float | None) -> str:
    """What a variant keeps in float and what that costs, as every view says it."""
    if not layers:
        return "no float layers"
    cost = []
    if regions is not None:
        cost.append(f"{regions} region{'s' if regions != 1 else ''}")
    if share is not None:
        cost.append(f"{share:.1%} of the MACs")
    return f"{layers} float layer{'s' if layers != 1 else ''}" + (f" ({', '.join(cost)})" if cost else "")


def _cost(v: Variant) -> tuple[float, int]:
    """What a variant's float layers cost, untimed: the share of the MACs that left INT8, plus REGION_SHARE for
    each float region (the Q/DQ pair or format change at its borders); then fewer regions. Regions alone would
    keep 30 float layers in 7 regions (75.6% of the MACs) over 13 in 8 (36.5%): MobileNetV2's symmetric QDQ
    model for TensorRT on the harder photos."""
    return (round((v.float_share or 0.0) + REGION_SHARE * (v.regions or 0), 6), v.regions or 0)


def _quality(v: Variant) -> tuple[Any, ...]:
    """Closest to the floors first: a variant 1 point of top-1 and 0.03 of cosine short (89%, 0.919) is a better
    base for float layers than one that leads on top-1 but is 0.39 short on cosine (91%, 0.558)."""
    a = v.agreement or {}
    d = a.get("detect") or {}
    boxes = (d.get("f1", -1), d.get("map") if d.get("map") is not None else -1)
    short = -v.shortfall if v.shortfall is not None else float("-inf")
    return (v.passes, short, *boxes, a.get("top1", -1), a.get("cosine_min", -2), a.get("cosine_mean", -2))


def choose(variants: list[Variant]) -> Variant:
    """Of the variants that meet the accuracy floors, those that also meet the speed floor first; the
    fastest of them, unless the interleaved rounds cannot tell it from others (not SEPARATES times as fast
    in nearly every round): then the one of those whose float layers cost least (``_cost``: float share plus
    REGION_SHARE per region). Untimed ones: that cost, then fewest float layers, then smallest. With
    none meeting the accuracy floors, the one closest to them."""
    passing = [v for v in variants if v.passes]
    if not passing:
        return max(variants, key=_quality)
    group = [v for v in passing if v.meets_speed] or passing
    fastest = min(group, key=lambda v: (v.latency_ms if v.latency_ms is not None else float("inf"), *_cost(v)))
    if fastest.rounds_ms:
        rounds = fastest.rounds_ms
        group = [
            v
            for v in group
            if v.rounds_ms and len(v.rounds_ms) == len(rounds) and not meets_speedup(rounds, v.rounds_ms, SEPARATES)
        ]
    return min(
        group,
        key=lambda v: (
            *_cost(v),
            v.latency_ms if v.latency_ms is not None else float("inf"),
            len(v.float_layers),
            v.size_bytes or 0,
        ),
    )


@dataclass
class Search:
    backend: Knobs
    accuracy: AccuracyConfig
    budget_s: float
    max_float_layers: int
    tried: list[Variant] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _graph: OnnxGraph | None = field(default=None, init=False, repr=False)
    _graph_read: bool = field(default=False, init=False, repr=False)

    def graph(self) -> OnnxGraph | None:
        """The backend's layer graph, read once (None: float layers are not costed)."""
        if not self._graph_read:
            self._graph, self._graph_read = self.backend.layer_graph(), True
        return self._graph

    def cost(self, v: Variant) -> Variant:
        if not v.float_layers:  # nothing in float costs nothing: no graph read when the configured variant passes
            v.regions, v.float_share = 0, 0.0
            return v
        graph = self.graph()
        if graph is not None:
            floats = self.backend.in_float(v.float_layers)
            v.regions = len(regions(graph, floats))
            v.float_share = float_share(graph.macs, floats)
        return v

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def build(self, method: str, layers: list[str], stage: str) -> Variant:
        known = next((v for v in self.tried if v.method == method and v.float_layers == layers), None)
        if known:
            return known
        try:
            v = judge(self.backend.build(method, layers), self.accuracy)
        except (InputError, ToolchainMissing, HardwareMissing):  # the user's input or this machine: no variant fixes that
            raise
        except ModelportError as e:  # one variant the toolchain cannot build does not end the search
            warn(f"{self.backend.display}: variant {method} with {len(layers)} float layers failed: {e}")
            v = Variant(f"{method}-float{len(layers)}-failed", method, layers, {}, failures=[str(e)])
        v.stage = stage
        self.tried.append(self.cost(v))
        floats = f", {float_text(len(layers), v.regions, v.float_share)}" if layers else ""
        console.print(
            f"   variant {v.id}{floats}: {agreement_text(v.agreement)}: "
            f"{'meets the floors' if v.passes else '; '.join(v.failures)} ({self.left():.0f} s of the budget left)",
            markup=False,
        )
        return v

    def run(self) -> list[Variant]:
        b = self.backend
        default = self.build(b.methods[0], list(b.float_layers), "default")
        if default.passes:
            return self.tried
        head = self.head(default)
        # The head variant is built whatever the budget, as the configured one is: it is the first thing
        # every peer's guide tries on a detector, and the budget governs the open-ended stages after it.
        head_passed = bool(head) and self.build(b.methods[0], [*b.float_layers, *head], "head").passes
        for method in b.methods[1:]:
            if self.left() <= 0:
                break
            if self.build(method, list(b.float_layers), "calibration").passes:
                return self.tried
        if head_passed:
            # The head in float met the floors at the cost of all its layers' speed: fewer of the worst layers,
            # on the best all-INT8 variant, may meet them too. The final timing keeps the faster.
            all_int8 = [v for v in self.tried if v.files and v.float_layers == list(b.float_layers)]
            if all_int8 and self.left() > 0:
                base = max(all_int8, key=_quality)
                ranked = self.candidates(base)[: len(head) - 1]
                passed_k = self.fewest(base, ranked)
                if passed_k is not None:
                    self.join_regions(base, self.prune(base, ranked[:passed_k]))
            return self.tried
        built = [v for v in self.tried if v.files]
        if not built:
            return self.tried
        base = max(built, key=_quality)
        if head and base.float_layers == list(b.float_layers) and self.left() > 0:
            # the float layers start from the head, on the best method
            v = self.build(base.method, [*b.float_layers, *head], "head")
            if v.passes:
                return self.tried
            base = max([base, v], key=_quality) if v.files else base
        if self.left() <= 0:  # ranking the layers runs the per-layer analysis: not worth it with no budget to use it
            return self.tried
        ranked = self.candidates(base)
        passed_k = self.fewest(base, ranked)
        if passed_k is not None:
            pruned = self.prune(base, ranked[:passed_k])
            self.join_regions(base, pruned)
            passed_k = len(pruned) - len(base.float_layers)
        self.greedy(base.method, base.float_layers, ranked[:GREEDY_WIDTH], passed_k)
        return self.tried

    def why_below(self) -> str:
        """Why nothing the search built meets the floors, as the failed row says it."""
        b, n = self.backend, len(self.tried)
        if self.budget_s <= 0:
            return "no search ([quantization] recover = false, or verification is off)"
        floated = [v for v in self.tried if v.files and len(v.float_layers) > len(b.float_layers)]
        unsupported = getattr(b, "float_unsupported", None)
        if not floated and unsupported:
            return f"all {n} variants were every layer INT8: {b.display} {unsupported}"
        if self.left() <= 0:
            return f"the {self.budget_s / 60:g}-minute budget ran out after {n} variants ([quantization] recover_minutes)"
        most = max((len(v.float_layers) - len(b.float_layers) for v in floated), default=0)
        if most >= self.max_float_layers:
            return f"even {most} layers in float missed them ([quantization] recover_max_float_layers = {self.max_float_layers})"
        return f"every method and float-layer set it could build ({n} variants) missed them"

    def fewest(self, base: Variant, ranked: list[str]) -> int | None:
        """The fewest of ``ranked`` (a prefix) in float on ``base`` that meet the floors: 1, 2, 4, ... layers until
        they do, then bisection; None when no prefix does within the budget."""
        failed_k, passed_k, k = 0, None, 1
        while k <= len(ranked) and self.left() > 0:
            if self.build(base.method, [*base.float_layers, *ranked[:k]], "float").passes:
                passed_k = k
                break
            failed_k, k = k, min(2 * k, len(ranked)) if k < len(ranked) else k + 1
        while passed_k is not None and passed_k - failed_k > 1 and self.left() > 0:
            mid = (failed_k + passed_k) // 2
            if self.build(base.method, [*base.float_layers, *ranked[:mid]], "float").passes:
                passed_k = mid
            else:
                failed_k = mid
        return passed_k

    def prune(self, base: Variant, prefix: list[str]) -> list[str]:
        """The fewest-prefix ``prefix`` (on ``base``'s float layers) that meets the floors, less each of its layers the
        floors do not need: dropped one at a time, the least badly ranked first, kept out while the rest still
        meets them. The ranking comes from the base variant alone; once a few layers are float, others stop
        mattering (MobileNetV2 on NCNN, the harder photos: a 17-layer prefix). Its last layer stays: the prefix
        without it is the one bisection saw fail. Returns the float layers of the smallest passing set."""
        kept = [*base.float_layers, *prefix]
        for layer in reversed(prefix[:-1]):
            if self.left() <= 0:
                break
            trial = [la for la in kept if la != layer]
            if self.build(base.method, trial, "prune").passes:
                kept = trial
        return kept

    def join_regions(self, base: Variant, layers: list[str]) -> Variant | None:
        """The passing layer set with the short gaps between its float regions filled (``onnx_layers.close_gaps``):
        more float layers, fewer Q/DQ islands. Both variants are timed at the end and ``choose`` keeps the faster,
        or the one whose float layers cost less when the rounds cannot tell them apart (``_cost``)."""
        graph = self.graph()
        if graph is None or self.left() <= 0:
            return None
        fillable = self.backend.quantized_layers(base) - set(layers)
        limit = len(base.float_layers) + self.max_float_layers
        closed = close_gaps(graph, layers, fillable, GAP_MAX, limit, self.backend.in_float)
        if len(closed) == len(layers):
            return None
        return self.build(base.method, closed, "regions")

    def head(self, default: Variant) -> list[str]:
        """The detector head's layers ``default`` quantizes, not already in float, at most ``max_float_layers``."""
        if not default.files:
            return []
        b = self.backend
        head = [la for la in b.head_layers(default) if la not in b.float_layers][: self.max_float_layers]
        if head:
            console.print(f"   {b.display}: the detection head first: {len(head)} layers in float", markup=False)
        return head

    def candidates(self, base: Variant) -> list[str]:
        """The layers to try in float: ``base``'s worst quantized layers, at most ``max_float_layers``."""
        b = self.backend
        quantized = b.quantized_layers(base)
        ranked = [la for la in b.worst_layers(base) if la not in base.float_layers]
        kept = [la for la in ranked if la in quantized]
        if len(kept) < len(ranked):
            console.print(
                f"   {b.display}: {len(ranked) - len(kept)} of the {len(ranked)} analysed layers are not quantized "
                f"in {base.id}: not candidates for float",
                markup=False,
            )
        # Every layer the INT8 model quantizes is a candidate: one the analysis does not list (a toolkit's
        # per-layer report may name only some: OpenVINO's listed a tiny model's Conv, not the Gemm where the
        # error was) comes after the ranked ones.
        unlisted = sorted(quantized - set(ranked) - set(base.float_layers))
        if unlisted:
            console.print(
                f"   {b.display}: {len(unlisted)} quantized layers the analysis does not list: candidates after the ranked ones",
                markup=False,
            )
        return [*kept, *unlisted][: self.max_float_layers]

    def greedy(self, method: str, floats: list[str], candidates: list[str], passed_k: int | None) -> None:
        """Measured, not ranked: add the one candidate layer that helps most, up to GREEDY_DEPTH layers.

        The floors look at the worst image, which a prefix of the ranking does not improve
        monotonically (MobileNetV2, ONNX INT8: 2 layers 0.979, 8 layers 0.951, 26 layers 0.997), and
        every float layer costs speed: a few well-chosen layers beat many ranked ones. Runs while
        nothing passes with GREEDY_DEPTH layers or fewer, and within the budget.
        """
        chosen = list(floats)
        while len(chosen) - len(floats) < min(GREEDY_DEPTH, (passed_k or GREEDY_DEPTH + 1) - 1):
            step_best = None
            for layer in candidates:
                if layer in chosen or self.left() <= 0:
                    continue
                v = self.build(method, [*chosen, layer], "greedy")
                step_best = v if step_best is None or _greedy_key(v) > _greedy_key(step_best) else step_best
            if step_best is None or step_best.passes:
                return
            chosen = step_best.float_layers


def _greedy_key(v: Variant) -> tuple[Any, ...]:
    """Helps most first; of layers that help alike (the same shortfall to 0.001, or both meeting the floors), the
    one that adds no float region (it joins an existing one), then the closest to the floors."""
    short = round(v.shortfall, 3) if v.shortfall is not None else float("inf")
    return (v.passes, -short, -(v.regions or 0), _quality(v))


def time_variants(backend: Knobs, variants: list[Variant], rounds: int, runs: int) -> dict[str, Any] | None:
    """Latency per variant (and the FP32 twin) from ``rounds`` interleaved rounds: the machine's drift hits
    every variant alike. Each model's number is its best round's median: on a shared machine other
    processes only ever add time. Returns {"fp32_ms": ..., "load_avg": ...} or None when not timed."""
    import numpy as np

    from .timing import sample

    variants = [v for v in variants if v.files]  # a variant that failed to build has nothing to time
    if not variants:
        return None
    with backend.timers(variants) as timers:
        if not timers:
            return None
        step(f"{backend.display}: timing {len(timers)} models in {rounds} interleaved rounds of {runs} runs")
        watch = LoadWatch()
        medians: dict[str, list[float]] = {k: [] for k in timers}
        for _ in progress(range(rounds), "timing rounds", total=rounds):
            for k, fn in timers.items():
                for _ in range(max(runs // 5, 3)):
                    fn()
                medians[k].append(float(np.median(sample(fn, runs))) / 1e6)
        load, under_load = watch.finish()
    for v in variants:
        if v.id in medians:
            v.latency_ms = round(min(medians[v.id]), 3)
            v.rounds_ms = [round(m, 4) for m in medians[v.id]]
    return {
        "fp32_ms": round(min(medians["fp32"]), 3) if "fp32" in medians else None,
        "fp32_rounds_ms": [round(m, 4) for m in medians["fp32"]] if "fp32" in medians else None,
        "rounds": rounds,
        "runs": runs,
        "load_avg": load,
        "under_load": under_load,
    }


def worth_timing(variants: list[Variant]) -> list[Variant]:
    """The variants whose speed can matter: those meeting the accuracy floors (the kept one is chosen among them
    by speed), the all-INT8 ones (how fast INT8 is here at all: what a slow verdict's ``why`` reads) and, with
    none passing, the one kept below the floors. A float-layer variant below the floors is never kept; timing
    each of the dozens a search builds cost more than the search itself on a busy 2-core machine (NCNN,
    MobileNetV2: 44 models in 860 s)."""
    configured = variants[0].float_layers
    closest = choose(variants)
    return [v for v in variants if v.passes or v.float_layers == configured or v is closest]


def judge_speed(variants: list[Variant], timing: dict[str, Any] | None, min_speedup: float) -> None:
    """Each timed variant's speedup over the FP32 twin and whether it meets ``min_speedup``, from the
    paired rounds of the one interleaved run (``timing.meets_speedup``: the one rule, here and in the report)."""
    import numpy as np

    fp32 = (timing or {}).get("fp32_rounds_ms")
    for v in variants:
        if fp32 and v.rounds_ms:
            v.speedup = round(float(np.median(speedups(v.rounds_ms, fp32))), 3)
            v.meets_speed = meets_speedup(v.rounds_ms, fp32, min_speedup)


def speed_check(
    backend_key: str,
    display: str,
    kept: dict[str, Any],
    timing: dict[str, Any] | None,
    min_speedup: float,
    untimed: str | None = None,
    variants: list[Variant] | None = None,
) -> dict[str, Any]:
    """The kept variant against the speed floor, as a results row carries it (``schema.SpeedCheck``); ``untimed``:
    why a backend whose timers are None is not timed (default: a simulator); ``variants``: the search's, what a
    slow verdict's ``why`` is read from."""
    twin = backends()[backend_key].fp32_twin if backend_key in backends() else None
    if kept.get("meets_speed") is None:
        why = (untimed or "no timing here (a simulator)") if timing is None else "its FP32 twin was not timed"
        return SpeedCheck(twin=twin, min_speedup=min_speedup, note=f"speed not measured: {display}: {why}").model_dump()
    rounds = len(kept["rounds_ms"])
    fp32 = (timing or {}).get("fp32_rounds_ms") or []
    below = sum(r < min_speedup for r in speedups(kept["rounds_ms"], fp32)) if fp32 else 0
    return SpeedCheck(
        twin=twin,
        min_speedup=min_speedup,
        speedup=kept["speedup"],
        slow=not kept["meets_speed"],
        rounds=rounds,
        rounds_below=below,
        note=f"kept variant {kept['id']} vs its FP32 twin in {rounds} interleaved rounds of the recovery search",
        why=slow_why(kept, variants or [], min_speedup) if not kept["meets_speed"] else "",
    ).model_dump()


def slow_why(kept: dict[str, Any], variants: list[Variant], min_speedup: float) -> str:
    """Why the kept variant is below the speed floor: the faster variants it was chosen over miss the accuracy
    floors (the float layers the floors need cost the speed), or even the fastest INT8 build is no faster.
    Read from the median speedups: a noisy round says nothing about which of these it is."""
    timed = [v for v in variants if v.speedup is not None]
    if not timed:
        return ""
    fastest = max(timed, key=lambda v: v.speedup or 0.0)
    if (fastest.speedup or 0.0) >= min_speedup and not fastest.passes:
        what = (
            float_text(len(fastest.float_layers), fastest.regions, fastest.float_share)
            if fastest.float_layers
            else "every layer INT8"
        )
        return (
            f"{fastest.id} ({what}) ran {fastest.speedup:.2f}x but misses the accuracy floors; the "
            f"{float_text(len(kept['float_layers']), kept.get('regions'), kept.get('float_share'))} the floors need cost the rest"
        )
    if (fastest.speedup or 0.0) < min_speedup:
        x = fastest.speedup or 0.0
        than = "slower than its FP32" if x < 1 else f"not {min_speedup:.2f}x as fast as its FP32"
        return f"the fastest INT8 variant it built, {fastest.id}, ran {x:.2f}x: this toolchain's INT8 is {than} here"
    return ""


def speed_text(speed: SpeedCheck | dict[str, Any] | None) -> str | None:
    """What a view says about a row's speed floor: only when the row is below it or was not measured."""
    if not speed:
        return None
    s = speed.model_dump() if isinstance(speed, SpeedCheck) else speed
    if s.get("slow"):
        twin = f" {s['twin']}" if s.get("twin") else ""
        if s["speedup"] >= s["min_speedup"]:  # the median reaches it, too many single rounds do not
            return (
                f"SLOW: median {s['speedup']:.2f}x its FP32 twin{twin}, but below the {s['min_speedup']:.2f}x speed floor "
                f"in {s.get('rounds_below', 0)} of {s['rounds']} interleaved rounds (one is allowed)"
            )
        return (
            f"SLOW: {s['speedup']:.2f}x its FP32 twin{twin} in {s['rounds']} interleaved rounds, "
            f"below the {s['min_speedup']:.2f}x speed floor" + (f": {s['why']}" if s.get("why") else "")
        )
    return s["note"] if s.get("slow") is None else None


def recover(ctx: StepContext, backend: Knobs) -> dict[str, Any]:
    """Run the search (or only the configured variant) and return the record (``recover/<key>.json``)."""
    q = ctx.config.quantization
    verified = ctx.config.convert.verify  # without verification there is nothing to judge a variant by
    search_on = q.recover and verified
    t0 = time.monotonic()
    search = Search(backend, ctx.config.accuracy, q.recover_minutes * 60 if search_on else 0, q.recover_max_float_layers)
    if search_on:
        step(
            f"{backend.display}: search for a variant that meets the [accuracy] floors "
            f"(budget {q.recover_minutes:g} min, at most {q.recover_max_float_layers} float layers)"
        )
    variants = search.run() if search_on else [search.build(backend.methods[0], list(backend.float_layers), "default")]
    searched = len(variants) > 1
    # The configured variant alone is timed too: the speed floor holds whether or not a search ran.
    timing = time_variants(backend, worth_timing(variants), q.recover_rounds, max(ctx.config.bench.runs // 4, 10))
    judge_speed(variants, timing, q.min_speedup)
    kept = choose(variants)
    default = variants[0]
    record = {
        "schema": SCHEMA,
        "backend": backend.key,
        "display": backend.display,
        "floors": ctx.config.accuracy.model_dump(),
        "recover": q.recover,
        "budget_minutes": q.recover_minutes,
        "wall_seconds": round(time.monotonic() - t0, 1),
        "searched": searched,
        "kept": kept.id,
        "default": default.id,
        "below_floors": verified and not kept.passes,
        "verified": verified,
        "timing": timing,
        "min_speedup": q.min_speedup,
        "calibration": calibration_record(len(ctx.calibration), ctx.config.images.calibration_min),
        "variants": [asdict(v) | {"passes": v.passes} for v in variants],
    }
    if verified and not kept.passes:
        record["stopped"] = search.why_below()
    record["speed"] = speed_check(
        backend.key, backend.display, asdict(kept), timing, q.min_speedup, getattr(backend, "untimed", None), variants
    )
    if searched:
        summary(record)
    speed_summary(record)
    return record


def summary(record: dict[str, Any]) -> None:
    v = {x["id"]: x for x in record["variants"]}
    kept, default = v[record["kept"]], v[record["default"]]
    fp32 = (record.get("timing") or {}).get("fp32_ms")
    lat = (
        f", {kept['latency_ms']:.2f} ms (default {default['latency_ms']:.2f} ms, FP32 {fp32:.2f} ms)"
        if kept.get("latency_ms") and default.get("latency_ms") and fp32
        else ""
    )
    floats = float_text(len(kept["float_layers"]), kept.get("regions"), kept.get("float_share"))
    msg = (
        f"{record['display']}: kept {kept['id']} ({kept['method']}; {floats}){lat}; "
        f"{len(record['variants'])} variants in {record['wall_seconds']:.0f} s"
    )
    if record["below_floors"]:
        warn(msg + f"; BELOW the floors: {'; '.join(kept['failures'])}")
    else:
        console.print(f"   {msg}", markup=False)


def speed_summary(record: dict[str, Any]) -> None:
    speed = record["speed"]
    text = speed_text(speed)
    if speed.get("slow"):
        warn(f"{record['display']}: {text}")
    elif text:
        console.print(f"   {record['display']}: {text}", markup=False)
    else:
        console.print(
            f"   {record['display']}: {speed['speedup']:.2f}x its FP32 twin in {speed['rounds']} interleaved rounds "
            f"(speed floor {speed['min_speedup']:.2f}x)",
            markup=False,
        )


def produce(
    ctx: StepContext,
    backend: Knobs,
    outputs: Mapping[str, str],
    *,
    inputs: Mapping[str, Path],
    tool_version: str,
    options: Mapping[str, Any],
    force: bool,
) -> dict[str, Any]:
    """The backend's INT8 artifacts (``outputs``: role -> rel) = the kept variant's files, plus
    ``recover/<key>.json``; cached by manifest like any step. Raises after writing when below the floors.
    Returns the record, plus ``cached``."""
    store, q = ctx.store, ctx.config.quantization
    record_rel = record_path(backend.key)
    opts = {
        **options,
        "floors": ctx.config.accuracy.model_dump(),
        "recover": q.recover,
        "recover_minutes": q.recover_minutes,
        "recover_max_float_layers": q.recover_max_float_layers,
        "min_speedup": q.min_speedup,  # which variant is kept; speed_floor only decides whether slow fails
        "eval_images": [p.name for p in ctx.eval_images],
    }
    with store.produce(
        [*outputs.values(), record_rel],
        inputs=inputs,
        tool="modelport recover",
        tool_version=tool_version,
        options=opts,
        force=force,
    ) as job:
        if not job.cached:
            record = recover(ctx, backend)
            kept = next(v for v in record["variants"] if v["id"] == record["kept"])
            if not kept["files"]:
                raise ModelportError(f"{backend.display}: no variant could be built: {'; '.join(kept['failures'])}")
            if record["below_floors"]:
                # The best there is stays visible, never under the name later steps trust: the search's record
                # (for the report's chart) and the kept files under their below-floor names, with its numbers.
                write_atomic(store.path(record_rel), json.dumps(record, indent=1) + "\n")
                made = (store.read_manifest(next(iter(kept["files"].values()))) or {}).get("extra", {})
                error = below_floors_error(record, store.path(next(iter(outputs.values()))), made.get("agreement"))
                keep_below_floor(
                    store, {store.path(kept["files"][role]): store.path(rel) for role, rel in outputs.items()}, error
                )
                raise error
            for role, rel in outputs.items():
                shutil.copyfile(store.path(kept["files"][role]), job.tmp(rel))
            job.tmp(record_rel).write_text(json.dumps(record, indent=1) + "\n")
            # What the variant's own step recorded (agreement, calibration, layer counts) describes this file too.
            made = (store.read_manifest(next(iter(kept["files"].values()))) or {}).get("extra", {})
            job.record(
                **made,
                variant=kept["id"],
                float_layers=kept["float_layers"],
                below_floors=record["below_floors"],
                variants=len(record["variants"]),
            )
    record = json.loads(store.path(record_rel).read_text())
    check_record(record, store.path(next(iter(outputs.values()))), q.speed_floor)
    return cast(dict[str, Any], record) | {"cached": job.cached}  # whether this call found everything up to date


def below_floors_error(record: dict[str, Any], what: Path, agreement: dict[str, Any] | None = None) -> AccuracyGateError:
    kept = next(x for x in record["variants"] if x["id"] == record["kept"])
    a = kept["agreement"] or {}
    return AccuracyGateError(
        f"int8 model below the [accuracy] floors after {len(record['variants'])} variants "
        f"({record['wall_seconds']:.0f} s): kept the best, {kept['id']}, as its below-floor file: "
        f"{agreement_text(a)} ({'; '.join(kept['failures'])})" + (f"; {record['stopped']}" if record.get("stopped") else ""),
        what,
        agreement=Agreement.model_validate(agreement) if agreement else None,
    )


def check_record(record: dict[str, Any], what: Path, speed_floor: str = "report") -> None:
    """Raise when the kept variant is below the accuracy floors, or below the speed floor with
    ``speed_floor = "fail"`` (its files stay: it meets the accuracy floors)."""
    if record["below_floors"]:
        raise below_floors_error(record, what)
    speed = record.get("speed") or {}
    if speed_floor == "fail" and speed.get("slow"):
        raise ModelportError(f'int8 model below the speed floor ([quantization] speed_floor = "fail"): {speed_text(speed)}', what)


def stamp_speed(store: ArtifactStore, result: BackendResult) -> None:
    """An ok INT8 row takes its speed floor verdict from the recovery record that made its artifact (the
    record's kept variant is the one the artifact's manifest names; another run's record says nothing)."""
    if result.status != "ok" or not result.artifact:
        return
    path = store.path(record_path(result.key))
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    made = (store.read_manifest(result.artifact) or {}).get("extra", {})
    if isinstance(record, dict) and record.get("speed") and made.get("variant") == record.get("kept"):
        try:
            result.speed = SpeedCheck.model_validate(record["speed"])
        except ValidationError:  # a record from another modelport version: the row goes without it
            return
