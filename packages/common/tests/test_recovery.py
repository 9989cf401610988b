"""The recovery search's contract on a small backend whose variants are real: each build computes its
outputs (reference + noise that shrinks as layers go float), the agreement comes from `compare`, and
latency from `time_variants` timing real callables. Nothing here asserts a speed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from modelport.common import recovery
from modelport.common.agreement import compare
from modelport.common.config import AccuracyConfig
from modelport.common.context import StepContext
from modelport.common.errors import AccuracyGateError
from modelport.common.onnx_layers import OnnxGraph
from modelport.common.recovery import Search, Variant, choose, judge, time_variants, variant_id

LAYERS = [f"layer{i}" for i in range(10)]
REFERENCE = np.random.default_rng(0).normal(size=(8, 50)).astype(np.float32)


class NoisyBackend:
    """Variant error falls with each layer kept in float; calibration methods scale it."""

    key, display, float_layers = "toy-int8", "toy INT8", cast(list[str], [])

    def __init__(self, methods: Sequence[str] = ("a", "b"), scale: dict[str, float] | None = None) -> None:
        self.methods = list(methods)
        self.scale = scale or {"a": 1.0, "b": 1.2}
        self.built: list[tuple[str, tuple[str, ...]]] = []

    def build(self, method: str, float_layers: list[str]) -> Variant:
        self.built.append((method, tuple(float_layers)))
        noise = 0.4 * self.scale[method] * (1 - len(float_layers) / (len(LAYERS) + 1))
        out = REFERENCE + noise * np.random.default_rng(100 + len(float_layers)).normal(size=REFERENCE.shape)
        a = compare(out, REFERENCE, [f"img{i}" for i in range(len(REFERENCE))])
        return Variant(
            f"{method}-{len(float_layers)}",
            method,
            list(float_layers),
            {"toy": "in memory"},
            recovery.brief(a),
            size_bytes=1000 + 100 * len(float_layers),
        )

    def worst_layers(self, variant: Variant) -> list[str]:
        return list(LAYERS)

    def quantized_layers(self, variant: Variant) -> set[str]:
        return set(LAYERS) - set(variant.float_layers)

    def head_layers(self, variant: Variant) -> list[str]:
        return []  # a classifier

    def layer_graph(self) -> OnnxGraph | None:
        return None  # float layers not costed: the search's stages alone

    def in_float(self, float_layers: list[str]) -> list[str]:
        return list(float_layers)

    def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
        # Work grows with the float layers: a real callable per variant, timed like any model.
        mats = {v.id: np.ones((20 + 10 * len(v.float_layers),) * 2) for v in variants}
        calls = {k: (lambda m=m: m @ m) for k, m in mats.items()}  # m=m: each lambda keeps its own matrix
        return contextlib.nullcontext({**calls, "fp32": lambda: None})


def floors(cosine_min: float) -> AccuracyConfig:
    return AccuracyConfig(int8_top1_min=0.0, int8_cosine_mean_min=0.0, int8_cosine_min=cosine_min)


def test_a_passing_default_is_the_answer() -> None:
    b = NoisyBackend()
    tried = Search(b, floors(0.0), budget_s=60, max_float_layers=8).run()
    assert [v.id for v in tried] == ["a-0"] and tried[0].passes


def test_methods_then_doubling_then_bisection_to_the_fewest_float_layers() -> None:
    b = NoisyBackend()
    need = cast(dict[str, Any], judge(b.build("a", LAYERS[:5]), floors(0.0)).agreement)["cosine_min"]  # what 5 float layers reach
    b.built.clear()
    tried = Search(b, floors(need), budget_s=600, max_float_layers=8).run()
    assert [m for m, _ in b.built[:2]] == ["a", "b"]  # the configured method, then the other one
    counts = [len(f) for _, f in b.built[2:]]
    assert counts[:4] == [1, 2, 4, 8]  # doubling until the floors are met
    assert counts[4:6] == [6, 5]  # then bisection between the last failure (4) and the pass (8)
    greedy = [v for v in tried if v.stage == "greedy"]  # then small sets, one measured layer at a time
    assert greedy and all(len(v.float_layers) <= recovery.GREEDY_DEPTH for v in greedy)
    assert {v.float_layers[-1] for v in greedy} <= set(LAYERS[: recovery.GREEDY_WIDTH])
    assert choose(tried).float_layers == LAYERS[:5]  # untimed: the fewest float layers that pass


def test_float_layers_the_floors_do_not_need_are_dropped_after_bisection() -> None:
    """Only layer0 and layer5 carry error; the ranking puts four harmless layers between them, so the fewest
    prefix that passes has 6 layers. Dropping each again, while the rest still pass, leaves the two."""
    culprits = {"layer0": 0.5, "layer5": 0.5}

    class TwoCulprits(NoisyBackend):
        def build(self, method: str, float_layers: list[str]) -> Variant:
            self.built.append((method, tuple(float_layers)))
            noise = 0.4 * sum(w for la, w in culprits.items() if la not in float_layers)
            out = REFERENCE + noise * np.random.default_rng(7).normal(size=REFERENCE.shape)
            a = compare(out, REFERENCE, [f"img{i}" for i in range(len(REFERENCE))])
            return Variant(variant_id(method, float_layers), method, list(float_layers), {"toy": "in memory"}, recovery.brief(a))

    tried = Search(TwoCulprits(), floors(0.999), budget_s=600, max_float_layers=8).run()
    assert [len(v.float_layers) for v in tried if v.stage == "float"] == [1, 2, 4, 8, 6, 5]
    pruned = [v for v in tried if v.stage == "prune"]
    assert [v.passes for v in pruned] == [True, True, True, True, False]  # layer4..layer1 go; without layer0 it fails
    assert pruned[-2].float_layers == ["layer0", "layer5"]
    assert choose(tried).float_layers == ["layer0", "layer5"]


def test_greedy_looks_only_for_sets_smaller_than_the_one_that_passed() -> None:
    b = NoisyBackend()
    need = cast(dict[str, Any], judge(b.build("a", LAYERS[:2]), floors(0.0)).agreement)["cosine_min"]
    b.built.clear()
    tried = Search(b, floors(need), budget_s=600, max_float_layers=8).run()
    greedy = [v for v in tried if v.stage == "greedy"]
    assert greedy and {len(v.float_layers) for v in greedy} == {1}  # a 2-layer set passed: only singles are tried
    assert choose(tried).float_layers == LAYERS[:2]


def test_only_layers_the_int8_model_quantizes_are_put_in_float() -> None:
    """The analysis may rank a layer the toolchain never quantized (a Softmax, a Reshape) worst: keeping it
    "in float" would build the same model again, so it is never a candidate."""
    unquantized = {"layer0", "layer3"}

    class PartlyQuantized(NoisyBackend):
        def worst_layers(self, variant: Variant, *_: object) -> list[str]:
            return list(LAYERS)  # the unquantized ones rank worst, as a CPU's rounding may have it

        def quantized_layers(self, variant: Variant) -> set[str]:
            return set(LAYERS) - unquantized - set(variant.float_layers)

    b = PartlyQuantized()
    need = cast(dict[str, Any], judge(b.build("a", LAYERS[:4]), floors(0.0)).agreement)["cosine_min"]
    tried = Search(b, floors(need), budget_s=600, max_float_layers=4).run()
    floated = [v for v in tried if v.float_layers]
    assert floated and not any(set(v.float_layers) & unquantized for v in floated)
    assert max(len(v.float_layers) for v in floated) <= 4  # the bound counts quantized candidates


def test_a_quantized_layer_the_analysis_does_not_list_is_a_candidate_too() -> None:
    """A per-layer analysis that names one layer of many (a toolkit's report): the others the INT8 model
    quantizes still become candidates, after it, and the search reaches the floors with them."""

    class OneListed(NoisyBackend):
        def worst_layers(self, variant: Variant, *_: object) -> list[str]:
            return ["layer9"]

    b = OneListed()
    built = judge(b.build("a", LAYERS[:3]), floors(0.0)).agreement
    assert built is not None
    need = built["cosine_min"]
    tried = Search(b, floors(need), budget_s=600, max_float_layers=8).run()
    floated = [v for v in tried if v.float_layers]
    assert floated[0].float_layers == ["layer9"]  # the listed one first
    assert any(set(v.float_layers) - {"layer9"} for v in floated)  # then the unlisted quantized ones
    assert choose(tried).passes


def test_with_none_passing_the_closest_to_the_floors_is_the_base_not_the_best_top1() -> None:
    """Summed shortfall below the floors decides: 89% / 0.919 / 0.983 (short 0.01 + 0.03) is closer than
    91% / 0.558 / 0.958 (short 0.39 + 0.02), which leads on top-1 alone (OpenVINO's presets on 35 photos)."""
    acc = AccuracyConfig()  # top-1 0.90, cosine min 0.95, mean 0.98
    lead = judge(
        Variant(
            "performance", "performance", [], {"m": "x"}, {"images": 35, "top1": 0.91, "cosine_min": 0.558, "cosine_mean": 0.958}
        ),
        acc,
    )
    near = judge(
        Variant(
            "mixed+fbc", "mixed+fbc", [], {"m": "x"}, {"images": 35, "top1": 0.89, "cosine_min": 0.919, "cosine_mean": 0.983}
        ),
        acc,
    )
    assert not lead.passes and not near.passes
    assert near.shortfall is not None and lead.shortfall is not None and near.shortfall < lead.shortfall
    assert choose([lead, near]) is near


def test_no_budget_builds_only_the_default() -> None:
    b = NoisyBackend()
    tried = Search(b, floors(0.9999), budget_s=0, max_float_layers=8).run()
    assert len(tried) == 1 and not tried[0].passes


def test_the_fastest_passing_variant_is_kept_with_measured_latency() -> None:
    b = NoisyBackend()
    tried = Search(b, floors(0.0), budget_s=60, max_float_layers=8).run()
    tried += [judge(b.build("a", LAYERS[:k]), floors(0.0)) for k in (2, 6)]
    timing = time_variants(b, tried, rounds=2, runs=5)
    assert timing is not None and timing["rounds"] == 2 and all(v.latency_ms is not None and v.latency_ms > 0 for v in tried)
    kept = choose(tried)
    assert kept.latency_ms == min(cast(float, v.latency_ms) for v in tried if v.passes)


def test_none_passing_keeps_the_closest_and_the_record_raises() -> None:
    b = NoisyBackend()
    tried = Search(b, floors(1.0), budget_s=600, max_float_layers=4).run()
    kept = choose(tried)
    assert not any(v.passes for v in tried)
    assert cast(dict[str, Any], kept.agreement)["cosine_min"] == max(
        cast(dict[str, Any], v.agreement)["cosine_min"] for v in tried
    )
    record = {
        "below_floors": True,
        "kept": kept.id,
        "wall_seconds": 1.0,
        "variants": [v.__dict__ | {"passes": v.passes} for v in tried],
    }
    with pytest.raises(AccuracyGateError, match=f"kept the best, {kept.id}"):
        recovery.check_record(record, Path("toy.onnx"))


def test_a_variant_that_fails_to_build_is_recorded_and_the_search_goes_on() -> None:
    from modelport.common.errors import ModelportError

    class Flaky(NoisyBackend):
        def build(self, method: str, float_layers: list[str]) -> Variant:
            if method == "b":
                raise ModelportError("toolkit said no")
            return super().build(method, float_layers)

    b = Flaky()
    need = cast(dict[str, Any], judge(b.build("a", LAYERS[:1]), floors(0.0)).agreement)["cosine_min"]
    tried = Search(b, floors(need), budget_s=600, max_float_layers=4).run()
    failed = [v for v in tried if v.method == "b"]
    assert len(failed) == 1 and failed[0].failures == ["toolkit said no"] and not failed[0].passes
    assert choose(tried).float_layers == LAYERS[:1]


# Per-round medians given, not measured: the speed floor's choices on known numbers.
FP32_ROUNDS = [4.0, 4.1, 3.9, 4.0, 4.2]


def timed(v: Variant, rounds: list[float]) -> Variant:
    v.rounds_ms, v.latency_ms = rounds, min(rounds)
    return v


def test_a_variant_meeting_both_floors_is_kept_over_a_more_accurate_slow_one() -> None:
    b = NoisyBackend()
    accurate = timed(judge(b.build("a", LAYERS[:6]), floors(0.0)), [1.0, 3.6, 3.6, 3.6, 3.6])  # one lucky round
    fast = timed(judge(b.build("a", LAYERS[:1]), floors(0.0)), [2.5, 2.6, 2.5, 2.4, 2.5])  # ~1.6x in every round
    off = timed(judge(b.build("b", []), floors(0.99)), [1.5] * 5)  # fastest of all, below the accuracy floors
    recovery.judge_speed([accurate, fast, off], {"fp32_rounds_ms": FP32_ROUNDS}, 1.3)
    assert accurate.agreement is not None and fast.agreement is not None
    assert accurate.latency_ms is not None and fast.latency_ms is not None
    assert accurate.agreement["cosine_min"] > fast.agreement["cosine_min"] and accurate.latency_ms < fast.latency_ms
    assert (accurate.meets_speed, fast.meets_speed, off.meets_speed) == (False, True, True)
    assert choose([accurate, fast, off]) is fast
    # Nothing meets the speed floor: the fastest variant that meets the accuracy floors is kept (and flagged).
    recovery.judge_speed([accurate, fast], {"fp32_rounds_ms": FP32_ROUNDS}, 2.0)
    assert not accurate.meets_speed and not fast.meets_speed and choose([accurate, fast, off]) is accurate


def fake_ctx(accuracy: AccuracyConfig | None = None, **quantization: Any) -> StepContext:
    from types import SimpleNamespace

    from modelport.common.config import Config, QuantizationConfig

    q = QuantizationConfig(recover_rounds=3, **quantization)
    # What the record reads of a calibration set is its size.
    config = Config(quantization=q, accuracy=accuracy or floors(0.0), bench=cast(Any, {"runs": 40}))
    return cast(StepContext, SimpleNamespace(config=config, calibration=[None] * 20))


def test_the_configured_variant_alone_is_timed_against_its_twin_and_the_record_judges_it() -> None:
    record = recovery.recover(fake_ctx(), NoisyBackend())  # the default passes: no search
    kept = record["variants"][0]
    assert not record["searched"] and len(kept["rounds_ms"]) == 3 and len(record["timing"]["fp32_rounds_ms"]) == 3
    speed = record["speed"]
    assert speed["min_speedup"] == 1.3 and speed["rounds"] == 3 and speed["speedup"] == kept["speedup"]
    assert speed["slow"] is (not kept["meets_speed"])  # which one, this machine decides: not asserted


def test_only_variants_whose_speed_can_matter_are_timed() -> None:
    """Passing variants (one is kept by speed) and the all-INT8 ones (how fast INT8 is here) are timed; a
    float-layer variant below the floors can never be kept and is not."""
    b = NoisyBackend()
    need = cast(dict[str, Any], judge(b.build("a", LAYERS[:5]), floors(0.0)).agreement)["cosine_min"]
    record = recovery.recover(fake_ctx(floors(need)), NoisyBackend())
    vs = record["variants"]
    timed = {v["id"] for v in vs if v["latency_ms"] is not None}
    expected = {v["id"] for v in vs if v["passes"] or not v["float_layers"]}
    assert timed == expected and len(timed) < len(vs) and any(not v["float_layers"] for v in vs if v["id"] in timed)
    assert record["kept"] in timed


def test_a_simulator_says_speed_not_measured_and_invents_no_number() -> None:
    class Simulator(NoisyBackend):
        def timers(self, variants: list[Variant]) -> AbstractContextManager[dict[str, Callable[[], object]] | None]:
            return contextlib.nullcontext(None)

    record = recovery.recover(fake_ctx(), Simulator())
    assert record["timing"] is None and record["speed"]["speedup"] is None and record["speed"]["slow"] is None
    assert cast(str, recovery.speed_text(record["speed"])).startswith("speed not measured: toy INT8")
    recovery.check_record(record, Path("toy.onnx"), "fail")  # not measured is not below the floor


def slow_record(kept_id: str = "minmax-float3") -> dict[str, Any]:
    kept = {"id": kept_id, "rounds_ms": [3.6, 3.7, 3.5], "speedup": 1.11, "meets_speed": False}
    return {
        "below_floors": False,
        "kept": kept_id,
        "speed": recovery.speed_check("onnx-int8", "ONNX INT8", kept, {"fp32_rounds_ms": [4.0] * 3}, 1.3),
    }


def test_a_kept_slow_variant_is_flagged_in_its_results_row_and_fails_the_step_only_when_configured(tmp_path: Path) -> None:
    import json

    from modelport.common.artifacts import ArtifactStore
    from modelport.common.errors import ModelportError
    from modelport.common.results import read_result, write_result
    from modelport.common.schema import BackendResult, TopK

    store = ArtifactStore(tmp_path)
    src = tmp_path / "src.onnx"
    src.write_bytes(b"m")
    with store.produce("onnx/model.int8.onnx", inputs={"onnx": src}, tool="t", tool_version="1") as job:
        job.tmp().write_bytes(b"int8")
        job.record(variant="minmax-float3")
    record = slow_record()
    store.path(recovery.record_path("onnx-int8")).parent.mkdir(parents=True)
    store.path(recovery.record_path("onnx-int8")).write_text(json.dumps(record))

    def row() -> BackendResult:
        r = BackendResult(key="onnx-int8", backend="onnxruntime", precision="int8", name="ONNX INT8", env="t")
        r.artifact = "onnx/model.int8.onnx"
        r.topk = [TopK(image="a.jpg", indices=[0], labels=["a"], scores=[1.0])]
        return r

    r = read_result(write_result(store, row(), np.ones((1, 4), np.float32)))
    assert r.speed is not None
    assert r.status == "ok" and r.speed.slow and r.speed.speedup == 1.11 and r.speed.twin == "onnx"
    assert recovery.speed_text(r.speed) == "SLOW: 1.11x its FP32 twin onnx in 3 interleaved rounds, below the 1.30x speed floor"
    recovery.check_record(record, Path("onnx/model.int8.onnx"))  # speed_floor = "report": flagged, not an error
    with pytest.raises(ModelportError, match="below the speed floor"):
        recovery.check_record(record, Path("onnx/model.int8.onnx"), "fail")
    # A record whose kept variant is not the one the artifact holds says nothing about this row.
    store.path(recovery.record_path("onnx-int8")).write_text(json.dumps(slow_record("percentile")))
    assert read_result(write_result(store, row(), np.ones((1, 4), np.float32))).speed is None


def test_a_slow_verdict_whose_median_reaches_the_floor_says_which_rounds_missed_it() -> None:
    """Median 1.70x yet slow (two of five rounds under 1.3x): the line must not read as a contradiction."""
    fp32 = [10.0, 10.0, 10.0, 10.0, 10.0]
    kept = {"id": "percentile", "rounds_ms": [5.9, 5.8, 9.0, 9.5, 5.9], "speedup": 1.7, "meets_speed": False}
    speed = recovery.speed_check("onnx-int8", "ONNX INT8", kept, {"fp32_rounds_ms": fp32}, 1.3)
    assert speed["rounds_below"] == 2
    assert recovery.speed_text(speed) == (
        "SLOW: median 1.70x its FP32 twin onnx, but below the 1.30x speed floor in 2 of 5 interleaved rounds (one is allowed)"
    )


def test_a_slow_kept_variant_says_what_the_faster_ones_lacked() -> None:
    """The all-INT8 build meets the speed floor but not the accuracy floors; the kept one needs float layers."""
    b = NoisyBackend()
    fast = timed(judge(b.build("a", []), floors(0.99)), [2.0] * 5)  # 2.0x, below the accuracy floors
    kept = timed(judge(b.build("a", LAYERS[:4]), floors(0.0)), [3.5] * 5)  # 1.14x, meets them
    recovery.judge_speed([fast, kept], {"fp32_rounds_ms": FP32_ROUNDS}, 1.3)
    assert choose([fast, kept]) is kept
    speed = recovery.speed_check("onnx-int8", "ONNX INT8", asdict(kept), {"fp32_rounds_ms": FP32_ROUNDS}, 1.3, None, [fast, kept])
    text = cast(str, recovery.speed_text(speed))
    assert text.startswith("SLOW: 1.14x") and "a-0 (every layer INT8) ran 2.00x but misses the accuracy floors" in text
    assert "the 4 float layers the floors need cost the rest" in text
    # Nothing faster was built: the toolchain's INT8 itself is the reason.
    alone = recovery.speed_check("onnx-int8", "ONNX INT8", asdict(kept), {"fp32_rounds_ms": FP32_ROUNDS}, 1.3, None, [kept])
    assert (
        "the fastest INT8 variant it built, a-4, ran 1.14x: this toolchain's INT8 is not 1.30x as fast as its FP32 here"
        in cast(str, recovery.speed_text(alone))
    )


def test_a_failed_search_says_why_it_stopped() -> None:
    class NoFloat(NoisyBackend):
        float_unsupported = "keeps no layers in float: its quantizer takes no list"

        def worst_layers(self, variant: Variant) -> list[str]:
            return []

        def quantized_layers(self, variant: Variant) -> set[str]:
            return set()

    unreachable = floors(0.99999)  # no variant with fewer than all 10 layers in float comes this close
    s = Search(NoFloat(), unreachable, budget_s=60, max_float_layers=8)
    s.run()
    assert s.why_below() == "all 2 variants were every layer INT8: toy INT8 keeps no layers in float: its quantizer takes no list"
    s = Search(NoisyBackend(), unreachable, budget_s=60, max_float_layers=4)
    s.run()
    assert s.why_below() == "even 4 layers in float missed them ([quantization] recover_max_float_layers = 4)"
    s = Search(NoisyBackend(), unreachable, budget_s=0.0001, max_float_layers=8)
    s.run()
    assert s.why_below().startswith("the 1.66667e-06-minute budget ran out after 1 variants")


class Detector(NoisyBackend):
    """A detector whose head is its last three layers: the head variant comes right after the configured one."""

    def head_layers(self, variant: Variant) -> list[str]:
        return [la for la in LAYERS[-3:] if la not in variant.float_layers]


def test_a_detector_head_goes_float_first_then_methods_all_int8_then_layers_on_top_of_the_head() -> None:
    b = Detector()
    need = cast(dict[str, Any], judge(b.build("a", LAYERS[-3:] + LAYERS[:3]), floors(0.0)).agreement)["cosine_min"]
    b.built.clear()
    tried = Search(b, floors(need), budget_s=600, max_float_layers=8).run()
    assert [v.stage for v in tried[:3]] == ["default", "head", "calibration"]
    assert tried[1].method == "a" and tried[1].float_layers == LAYERS[-3:]
    assert tried[2].method == "b" and tried[2].float_layers == []  # a method is tried with every layer INT8
    # the best base is the head variant (fewer quantized layers, less noise here): worst layers come on top of it
    floated = [v for v in tried if v.stage in ("float", "greedy")]
    assert floated and all(v.method == "a" and v.float_layers[:3] == LAYERS[-3:] for v in floated)
    assert not any(set(v.float_layers[3:]) & set(LAYERS[-3:]) for v in floated)


def test_no_budget_on_a_detector_builds_the_default_and_its_head_variant_and_ranks_nothing() -> None:
    class Counting(Detector):
        ranked = 0

        def worst_layers(self, variant: Variant) -> list[str]:
            self.ranked += 1  # a real backend runs its per-layer analysis here
            return super().worst_layers(variant)

    b = Counting()
    tried = Search(b, floors(0.9999), budget_s=0, max_float_layers=8).run()
    assert [(v.stage, v.float_layers) for v in tried] == [("default", []), ("head", LAYERS[-3:])]
    assert b.ranked == 0


def test_the_float_stage_starts_from_the_head_on_the_best_method() -> None:
    b = Detector(scale={"a": 1.5, "b": 1.0})  # the other method is better than the configured one
    need = cast(dict[str, Any], judge(b.build("b", LAYERS[-3:] + LAYERS[:3]), floors(0.0)).agreement)["cosine_min"]
    b.built.clear()
    tried = Search(b, floors(need), budget_s=600, max_float_layers=8).run()
    assert [(v.stage, v.method, len(v.float_layers)) for v in tried[:4]] == [
        ("default", "a", 0),
        ("head", "a", 3),
        ("calibration", "b", 0),
        ("head", "b", 3),
    ]
    assert all(v.method == "b" and v.float_layers[:3] == LAYERS[-3:] for v in tried[4:])


def test_a_head_that_meets_the_floors_is_followed_by_the_methods_and_fewer_worst_layers_only() -> None:
    b = Detector()
    need = cast(dict[str, Any], judge(b.build("a", LAYERS[-3:]), floors(0.0)).agreement)["cosine_min"]
    b.built.clear()
    tried = Search(b, floors(need), budget_s=600, max_float_layers=8).run()
    assert [(v.stage, v.method, len(v.float_layers)) for v in tried] == [
        ("default", "a", 0),
        ("head", "a", 3),
        ("calibration", "b", 0),
        ("float", "a", 1),  # fewer worst layers than the head's 3, on the best all-INT8 variant
        ("float", "a", 2),
    ]
    assert [v.passes for v in tried] == [False, True, False, False, False]
    assert choose(tried) is tried[1]


def test_fewer_worst_layers_than_the_head_can_meet_the_floors_too() -> None:
    class BigHead(Detector):
        def head_layers(self, variant: Variant) -> list[str]:
            return [la for la in LAYERS[-6:] if la not in variant.float_layers]

    b = BigHead()
    need = cast(dict[str, Any], judge(b.build("a", LAYERS[:2]), floors(0.0)).agreement)["cosine_min"]
    b.built.clear()
    tried = Search(b, floors(need), budget_s=600, max_float_layers=8).run()
    passing = [(v.stage, len(v.float_layers)) for v in tried if v.passes]
    assert passing == [("head", 6), ("float", 2)]
    assert not any(v.stage == "greedy" for v in tried)
