from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from modelport.common.images import load_image
from modelport.common.preprocess import InputSpec, prepare, to_tensor


@pytest.fixture
def bird(data_dir: Path) -> np.ndarray:
    return load_image(data_dir / "images" / "bird.jpg")


def test_float_layouts_and_uint8_derive_from_one_array(bird: np.ndarray) -> None:
    spec = InputSpec()
    u8 = prepare(bird, spec)
    nchw, nhwc = to_tensor(u8, spec, "NCHW"), to_tensor(u8, spec, "NHWC")
    raw = to_tensor(u8, spec, "NHWC", "uint8")
    assert nchw.shape == (1, 3, 224, 224) and nhwc.shape == (1, 224, 224, 3) and raw.shape == (1, 224, 224, 3)
    assert nchw.dtype == nhwc.dtype == np.float32 and raw.dtype == np.uint8
    np.testing.assert_array_equal(nchw[0].transpose(1, 2, 0), nhwc[0])
    # The uint8 tensor, normalised with the spec's mean/norm values as a toolchain does, is the float one.
    inside = (raw[0].astype(np.float32) - np.float32(cast(Any, spec.mean_values))) * np.float32(cast(Any, spec.norm_values))
    np.testing.assert_allclose(inside, nhwc[0], atol=1e-6)
    assert nhwc.min() >= -1.0 and nhwc.max() <= 1.0


def test_mobilenet_values(bird: np.ndarray) -> None:
    spec = InputSpec()
    u8 = prepare(bird, spec)
    x = to_tensor(u8, spec, "NHWC")
    assert x[0, 0, 0, 0] == pytest.approx((int(u8[0, 0, 0]) - 127.5) / 127.5)


def test_imagenet_mean_std_is_config_not_code(bird: np.ndarray) -> None:
    spec = InputSpec(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), color="BGR", crop=0.875)
    u8 = prepare(bird, spec)
    rgb = prepare(bird, InputSpec(crop=0.875))
    np.testing.assert_array_equal(u8, rgb[:, :, ::-1])
    x = to_tensor(u8, spec, "NCHW")
    assert x[0, 1, 5, 5] == pytest.approx((u8[5, 5, 1] - 116.28) / 57.12, rel=1e-5)


def test_signature_changes_with_settings() -> None:
    assert InputSpec().signature == InputSpec().signature
    assert InputSpec().signature != InputSpec(crop=0.875).signature


def test_uint8_must_be_nhwc(bird: np.ndarray) -> None:
    with pytest.raises(ValueError):
        to_tensor(prepare(bird, InputSpec()), InputSpec(), "NCHW", "uint8")
