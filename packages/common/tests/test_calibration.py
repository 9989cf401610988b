"""The calibration set: which images a capped method sees."""

from pathlib import Path

import pytest

from modelport.common.calibration import CalibrationSet, spread
from modelport.common.preprocess import InputSpec


def test_a_capped_set_is_spread_over_the_sorted_folder_not_its_first_files() -> None:
    paths = [Path(f"{source}_{i:02d}.jpg") for source in ("a", "b", "c") for i in range(10)]
    picked = CalibrationSet(paths, InputSpec.model_validate({"size": [8, 8]})).limited(6).paths
    assert [p.name[0] for p in picked] == ["a", "a", "b", "b", "c", "c"]
    assert picked == sorted(picked) and len(set(picked)) == 6
    assert spread(paths, 30) == paths and spread(paths, 99) == paths


def test_a_small_set_is_warned_about_once_however_many_contexts_read_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from modelport.common.context import StepContext
    from tiny_models import tiny_images

    folder = tiny_images(tmp_path / "few", n=3)
    for _ in range(3):  # a recovery search makes a context per variant
        ctx = StepContext(overrides=[("images.calibration", str(folder))], artifacts=str(tmp_path / "art"))
        assert len(ctx.calibration) == 3
    warned = [ln for ln in capfd.readouterr().err.splitlines() if "calibration_min" in ln]
    assert len(warned) == 1 and "3 calibration images, below the minimum of 20" in warned[0]
