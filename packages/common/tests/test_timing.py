"""The speed rule on given per-round medians (no clock involved: nothing here times anything)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.common import timing
from modelport.common.timing import load_problem, meets_speedup, others_running, speedups

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


def fake_proc(root: Path, running: int, own_states: list[str]) -> Path:
    """A /proc with /proc/stat's procs_running and this process's threads in the given states."""
    root.mkdir(exist_ok=True)
    (root / "stat").write_text(f"cpu  1 2 3 4\nprocs_running {running}\nprocs_blocked 0\n")
    for i, state in enumerate(own_states):
        task = root / "self/task" / str(100 + i)
        task.mkdir(parents=True, exist_ok=True)
        (task / "stat").write_text(f"{100 + i} (python (worker) x) {state} 1 2 3\n")  # a ')' inside the name
    return root


def test_other_processes_runnable_threads_exclude_this_process_own(tmp_path: Path) -> None:
    # 5 runnable on the machine, 2 of them this process's running threads (the reader among them): 3 others
    assert others_running(3, 0, fake_proc(tmp_path / "a", 5, ["R", "R", "S"])) == 3.0
    # only the reading thread is ours, and it counts even if it read itself as sleeping: never negative
    assert others_running(2, 0, fake_proc(tmp_path / "b", 1, ["S"])) == 0.0
    assert others_running(2, 0, tmp_path / "nothing") is None  # no /proc/stat: not Linux


def test_load_flag_counts_other_processes_not_this_process_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "cores", lambda: 2)
    # a high 1-min average that is only this process's own last minute (a conversion) is not load
    assert load_problem(3.9, 4.2, others_before=0.2, others_after=0.4) is None
    why = load_problem(0.5, 2.5, others_before=0.1, others_after=1.4)  # another process took a core meanwhile
    assert why is not None and why.startswith("taken under load: 1.4 threads of other processes runnable on 2 cores")
    monkeypatch.setattr(timing, "cores", lambda: 16)
    assert load_problem(4.0, 4.0, others_before=4.0, others_after=7.9) is None  # under half of 16 cores
    assert load_problem(9.0, 9.0, others_before=8.0, others_after=8.0) is not None
    # without /proc's counts the 1-min average against the cores is all there is
    assert load_problem(17.0, 3.0) is not None and load_problem(15.0, 30.0) is None


def test_a_load_watch_records_both_counts_and_its_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = iter([0.0, 3.0])
    monkeypatch.setattr(timing, "others_running", lambda: next(counts))
    monkeypatch.setattr(timing, "cores", lambda: 2)
    load, why = timing.LoadWatch().finish()
    assert load["others_before"] == 0.0 and load["others_after"] == 3.0 and {"before", "after"} <= set(load)
    assert why is not None and "3.0 threads of other processes" in why
