"""The speed rule on given per-round medians (no clock involved: nothing here times anything)."""

from __future__ import annotations

import pytest

from modelport.common.timing import meets_speedup, speedups

FP32 = [4.0, 4.1, 3.9, 4.0, 4.2]


def test_a_speedup_holds_in_the_median_and_in_all_rounds_but_one() -> None:
    assert meets_speedup([2.0, 2.1, 2.0, 1.9, 2.0], FP32, 1.3)
    assert meets_speedup([2.0, 2.1, 2.0, 1.9, 4.0], FP32, 1.3)  # one burst of load in one round does not break it
    assert not meets_speedup([2.0, 2.1, 2.0, 4.0, 4.0], FP32, 1.3)  # two rounds short of it: not a floor that holds


def test_one_lucky_round_does_not_make_a_speedup() -> None:
    # Its best round is 4x faster than FP32's: the best-round medians alone would call it fast.
    assert not meets_speedup([1.0, 3.5, 3.5, 3.5, 3.5], FP32, 1.3)
    assert speedups([2.0], [4.0]) == [2.0]


def test_with_fewer_than_three_rounds_every_round_must_reach_it() -> None:
    assert meets_speedup([3.0], [4.0], 1.3)
    assert not meets_speedup([3.0], [3.5], 1.3)
    assert not meets_speedup([2.0, 3.5], [4.0, 4.0], 1.3)
    with pytest.raises(ValueError):
        meets_speedup([], [], 1.3)
