"""The TFLite runtime on a two-output model (RFB-320's scores + boxes) made at test time with the real TFLite
converter and interpreter: every output under the model's own name, float and full-integer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.tflite.runtime import TfliteRuntime
from tiny_models import detect_config, tiny_tflite_boxes_scores

pytest.importorskip("tensorflow")


def by_last_dim(outputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    return {int(o.shape[-1]): np.asarray(o) for o in outputs}


def test_infer_all_returns_every_output_by_name(tmp_path: Path) -> None:
    path, keras = tiny_tflite_boxes_scores(tmp_path / "two.tflite")
    config = detect_config(path)
    assert config.contract is not None and len(config.contract.outputs) == 2
    x = np.random.default_rng(0).uniform(-1, 1, (1, 24, 24, 3)).astype(np.float32)
    want = by_last_dim(keras(x, training=False))
    with TfliteRuntime(config, {"model": path}) as rt:
        outs = rt.infer_all(x)
        first = rt.infer(x)
    assert list(outs) == [o.name for o in config.contract.outputs]  # the model's names, in its order
    assert sorted(o.shape for o in outs.values()) == [(1, 36, 2), (1, 36, 4)]
    for name, have in outs.items():
        np.testing.assert_allclose(have, want[have.shape[-1]], rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(first, outs[config.contract.output_name])


def test_a_full_integer_models_outputs_are_each_dequantized_with_their_own_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    calibration = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(8)]
    path, keras = tiny_tflite_boxes_scores(tmp_path / "int8.tflite", calibration=calibration)
    config = detect_config(path)
    contract = config.contract
    assert contract is not None and contract.dtype == "int8" and contract.scale is not None and contract.zero_point is not None
    image = calibration[0].astype(np.float32)
    q = np.clip(np.round(((image - 127.5) / 127.5) / contract.scale) + contract.zero_point, -128, 127).astype(np.int8)[None]
    want = by_last_dim(keras(((q.astype(np.float32) - contract.zero_point) * contract.scale), training=False))
    with TfliteRuntime(config, {"model": path}) as rt:
        scales = {name: dq[1] for name, (_, dq) in rt.out_tensors.items() if dq is not None}
        outs = rt.infer_all(q)
    assert len(set(scales.values())) == 2, scales  # two scales: one shared would have passed a single-scale runtime
    for name, have in outs.items():
        assert have.dtype == np.float32, name
        ref = want[have.shape[-1]]
        step = max(scales.values())
        # INT8 arithmetic: within a few steps of the float model, which a wrong scale or zero point is not
        assert np.abs(have - ref).max() < 4 * step + 0.05 * np.abs(ref).max(), name
