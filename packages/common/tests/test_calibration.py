"""The calibration set: which images a capped method sees."""

from pathlib import Path

from modelport.common.calibration import CalibrationSet, spread
from modelport.common.preprocess import InputSpec


def test_a_capped_set_is_spread_over_the_sorted_folder_not_its_first_files():
    paths = [Path(f"{source}_{i:02d}.jpg") for source in ("a", "b", "c") for i in range(10)]
    picked = CalibrationSet(paths, InputSpec.model_validate({"size": [8, 8]})).limited(6).paths
    assert [p.name[0] for p in picked] == ["a", "a", "b", "b", "c", "c"]
    assert picked == sorted(picked) and len(set(picked)) == 6
    assert spread(paths, 30) == paths and spread(paths, 99) == paths
