"""The tiny detector's shared artifacts (conftest.tiny_detector), made in this env for the toolchain envs that
convert and bench it without running the ONNX source (mnn): the source's reference and onnx/model.onnx, whose
outputs are the source's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import make_context
from modelport.common.reference import DETECT_REFERENCE
from modelport.runtime.registry import runtime_class


def test_the_shared_tiny_detector_has_its_reference_and_onnx_model(tiny_detector: dict[str, str]) -> None:
    ctx = make_context(tiny_detector)
    assert ctx.store.path(DETECT_REFERENCE).is_file()
    assert Path(tiny_detector["MODELPORT_ARTIFACTS"], "onnx", "model.onnx").is_file()
    x = np.random.default_rng(7).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    with runtime_class("onnx-source").from_store(ctx.store, ctx.config) as source, runtime_class("onnx").from_store(ctx.store, ctx.config) as row:
        want, got = source.infer_all(x), row.infer_all(x)
    assert list(got) == list(want) == ["output"]
    np.testing.assert_allclose(got["output"], want["output"], rtol=1e-5, atol=1e-6)
