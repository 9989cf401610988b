import numpy as np
import pytest

from modelport.common.agreement import check_gate, compare
from modelport.common.config import AccuracyConfig
from modelport.common.errors import AccuracyGateError
from modelport.common.timing import measure, summarize


def test_identical_outputs_agree_fully() -> None:
    x = np.random.default_rng(0).random((3, 10))
    a = compare(x, x, ["a", "b", "c"])
    assert a.top1 == 1 and a.top5_overlap == 1 and a.cosine_min == pytest.approx(1) and a.max_abs_diff == 0
    check_gate(a, "float", "m", AccuracyConfig())


def test_a_flipped_top1_fails_the_float_gate_and_names_the_image() -> None:
    ref = np.eye(4)[[0, 1, 2, 3]] + 0.01
    out = ref.copy()
    out[2] = np.eye(4)[0] + 0.01
    a = compare(out, ref, ["w", "x", "y", "z"])
    assert a.top1 == 0.75 and not a.per_image[2].top1_match
    with pytest.raises(AccuracyGateError, match="images: y"):
        check_gate(a, "float", "model.onnx", AccuracyConfig())
    with pytest.raises(AccuracyGateError, match="cosine_min"):
        check_gate(a, "int8", "model.onnx", AccuracyConfig())


def test_floors_come_from_the_accuracy_section() -> None:
    ref = np.eye(4) + 0.01
    out = ref + np.random.default_rng(1).random((4, 4)) * 0.2  # same top-1, cosine well below 1
    a = compare(out, ref, ["w", "x", "y", "z"])
    assert a.top1 == 1 and a.cosine_min < 0.99
    check_gate(a, "int8", "m", AccuracyConfig(int8_cosine_min=0.5, int8_cosine_mean_min=0.5))
    with pytest.raises(AccuracyGateError, match=f"cosine_min {a.cosine_min:.4f} < 0.999"):
        check_gate(a, "int8", "m", AccuracyConfig(int8_cosine_min=0.999, int8_cosine_mean_min=0.5))


def test_summarize_percentiles() -> None:
    s = summarize(np.arange(1, 101) * 1_000_000, warmup=5)
    assert (s.min, s.median, s.max, s.runs, s.warmup) == (1.0, 50.5, 100.0, 100, 5)
    assert s.p90 == pytest.approx(90.1) and s.fps == pytest.approx(1000 / 50.5)


def test_measure_counts_runs() -> None:
    calls = []
    s = measure(lambda: calls.append(1), warmup=3, runs=7)
    assert len(calls) == 10 and s.runs == 7
