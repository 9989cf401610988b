"""The INT8 calibration stream TensorRT pulls, on the real calibration photos, without a GPU.

``CalibrationFeeder.get_batch`` is exactly what the TensorRT calibrator calls; here its
staging puts batches in host memory instead of device memory (``HostStaging``), so
what TensorRT would read at each address is checked: shape, dtype, order, values,
the cap on the number of images, and the calibration cache round trip.
"""

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest

from conftest import make_context
from modelport.common.calibration import CalibrationSet
from modelport.common.context import StepContext
from modelport.tensorrt.calibrator import CalibrationCache, CalibrationFeeder, HostStaging

pytestmark = pytest.mark.tensorrt

NCHW = (1, 3, 224, 224)


@pytest.fixture(scope="module")
def ctx(test_env: dict[str, str]) -> StepContext:
    return make_context(test_env)


@pytest.fixture(scope="module")
def calib(ctx: StepContext) -> CalibrationSet:
    return CalibrationSet.from_config(ctx.config, limit=12)  # 12 of the shipped set: the batch arithmetic below


def feeder_for(
    tensors: Iterable[np.ndarray],
    tmp_path: Path,
    shape: Sequence[int] = NCHW,
    name: str = "input",
    previous: Path | None = None,
) -> tuple[CalibrationFeeder, HostStaging]:
    staging = HostStaging()
    cache = CalibrationCache(tmp_path / "calibration.cache", previous)
    return CalibrationFeeder(tensors, name, shape, staging, cache), staging


def drain(feeder: CalibrationFeeder, staging: HostStaging, name: str = "input") -> list[np.ndarray]:
    """Call get_batch like TensorRT until it returns None; what sat at each address, in order."""
    seen = []
    while (ptrs := feeder.get_batch([name])) is not None:
        (ptr,) = ptrs
        buf = staging.buffers[name]
        assert ptr == buf.ctypes.data  # the address handed out is the buffer that holds the batch
        seen.append(buf.copy())
    return seen


def test_batches_are_the_common_calibration_tensors_in_order(calib: CalibrationSet, tmp_path: Path) -> None:
    expected = list(calib.tensors("NCHW", "float32"))
    assert len(expected) == 12
    feeder, staging = feeder_for(calib.tensors("NCHW", "float32"), tmp_path)
    seen = drain(feeder, staging)
    assert feeder.error is None
    assert len(seen) == feeder.batches == feeder.images == 12 and feeder.dropped == 0
    for got, want in zip(seen, expected, strict=True):
        assert got.shape == NCHW and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
    assert -1.0 <= min(s.min() for s in seen) and max(s.max() for s in seen) <= 1.0  # MobileNetV2 range
    assert feeder.get_batch(["input"]) is None  # stays exhausted, no error
    assert feeder.error is None


def test_larger_batches_stack_in_order_and_drop_the_remainder(calib: CalibrationSet, tmp_path: Path) -> None:
    expected = np.concatenate(list(calib.tensors("NCHW", "float32")))
    feeder, staging = feeder_for(calib.tensors("NCHW", "float32"), tmp_path, shape=(5, 3, 224, 224))
    seen = drain(feeder, staging)
    assert [s.shape for s in seen] == [(5, 3, 224, 224)] * 2
    np.testing.assert_array_equal(np.concatenate(seen), expected[:10])
    assert feeder.images == 10 and feeder.dropped == 2


def test_nhwc_models_get_nhwc_batches(calib: CalibrationSet, tmp_path: Path) -> None:
    feeder, staging = feeder_for(calib.tensors("NHWC", "float32"), tmp_path, shape=(1, 224, 224, 3))
    seen = drain(feeder, staging)
    assert len(seen) == 12 and seen[0].shape == (1, 224, 224, 3)
    np.testing.assert_array_equal(
        seen[3][0].transpose(2, 0, 1), next(iter(t for i, t in enumerate(calib.tensors("NCHW", "float32")) if i == 3))[0]
    )


def test_calibration_is_capped_at_the_configured_limit(ctx: StepContext, data_dir: Path, tmp_path: Path) -> None:
    # A list file names images relative to its folder: copy the photos, list 12 of them 5 times.
    photos = sorted((data_dir / "images" / "calibration").glob("*.jpg"))
    for p in photos:
        shutil.copy(p, tmp_path / p.name)
    listing = tmp_path / "many.txt"
    listing.write_text("# 60 entries: more than the cap\n" + "".join(f"{photos[i % 12].name}\n" for i in range(60)))
    assert ctx.config.images.calibration_limit == 50
    big = CalibrationSet.from_config(ctx.config, path=listing)
    assert len(big) == 50
    feeder, staging = feeder_for(big.tensors("NCHW", "float32"), tmp_path)
    assert len(drain(feeder, staging)) == 50
    small = CalibrationSet.from_config(ctx.config, path=listing, limit=7)
    feeder, staging = feeder_for(small.tensors("NCHW", "float32"), tmp_path)
    assert len(drain(feeder, staging)) == 7


def test_a_wrong_request_ends_the_stream_with_the_error_kept(calib: CalibrationSet, tmp_path: Path) -> None:
    feeder, _ = feeder_for(calib.tensors("NCHW", "float32"), tmp_path)
    assert feeder.get_batch(["images"]) is None  # TensorRT must not get an exception back
    assert "feeds 'input'" in str(feeder.error)

    feeder, _ = feeder_for(calib.tensors("NHWC", "float32"), tmp_path)  # layout mismatch
    assert feeder.get_batch(["input"]) is None
    assert "(1, 224, 224, 3) does not fit input input (1, 3, 224, 224)" in str(feeder.error)


def test_dynamic_shapes_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be static"):
        feeder_for(iter(()), tmp_path, shape=(-1, 3, 224, 224))


def test_calibration_cache_round_trip(tmp_path: Path) -> None:
    first = CalibrationCache(tmp_path / "new.cache")
    assert first.read() is None  # nothing to reuse: TensorRT calibrates
    blob = b"TRT-101601-EntropyCalibration2\ninput: 3c010a14\n"
    feeder = CalibrationFeeder(iter(()), "input", NCHW, HostStaging(), first)
    feeder.write_calibration_cache(memoryview(blob))  # TensorRT hands over a buffer, not bytes
    assert (tmp_path / "new.cache").read_bytes() == blob and first.data == blob

    again = CalibrationCache(tmp_path / "next.cache", read_from=tmp_path / "new.cache")
    assert CalibrationFeeder(iter(()), "input", NCHW, HostStaging(), again).read_calibration_cache() == blob
    assert again.data == blob  # kept, to be committed beside the engine even if TensorRT writes nothing

    (tmp_path / "empty.cache").write_bytes(b"")
    assert CalibrationCache(tmp_path / "x.cache", read_from=tmp_path / "empty.cache").read() is None
    assert CalibrationCache(tmp_path / "x.cache", read_from=tmp_path / "missing.cache").read() is None
