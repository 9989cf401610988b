"""The tiny detector's shared artifacts (conftest.tiny_detector), made in this env for the toolchain envs that
convert and bench it without running the ONNX source (mnn): the source's reference and onnx/model.onnx, whose
outputs are the source's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import LIGHT_BENCH, cli, detector_copy, make_context
from modelport.common.reference import DETECT_REFERENCE
from modelport.common.schema import BackendResult
from modelport.runtime.registry import runtime_class


def test_the_shared_tiny_detector_has_its_reference_and_onnx_model(tiny_detector: dict[str, str]) -> None:
    ctx = make_context(tiny_detector)
    assert ctx.store.path(DETECT_REFERENCE).is_file()
    assert Path(tiny_detector["MODELPORT_ARTIFACTS"], "onnx", "model.onnx").is_file()
    x = np.random.default_rng(7).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    with (
        runtime_class("onnx-source").from_store(ctx.store, ctx.config) as source,
        runtime_class("onnx").from_store(ctx.store, ctx.config) as row,
    ):
        want, got = source.infer_all(x), row.infer_all(x)
    assert list(got) == list(want) == ["output"]
    np.testing.assert_allclose(got["output"], want["output"], rtol=1e-5, atol=1e-6)


QUICK = ["-o", "bench.runs=3", "-o", "bench.warmup=1", *LIGHT_BENCH]


@pytest.mark.slow
def test_rfb320_runs_through_the_onnx_rows_verified_by_its_boxes(rfb320: dict[str, str], tmp_path: Path) -> None:
    """The face detector (ONNX, scores + boxes, SSD priors, the config `init` writes) on the COCO photos: the
    source and the onnx row, each row's boxes against the source's (F1 >= 0.99, the FP32 floor)."""
    env = detector_copy(rfb320, tmp_path / "art")
    art = tmp_path / "art"
    made = json.loads((art / "onnx" / "model.onnx.manifest.json").read_text())
    verified = made["extra"]["converters"]["source"]["agreement"]["detect"]
    assert verified["f1"] >= 0.99 and verified["source_boxes"] > 0, verified
    proc = cli(env, *QUICK, "bench", "onnx-source", "onnx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for key in ("onnx-source", "onnx"):
        row = BackendResult.model_validate_json((art / "results" / f"{key}.json").read_text())
        det = row.agreement.detect if row.agreement else None
        assert row.status == "ok" and det is not None, row.agreement_note
        assert det.f1 >= 0.99 and det.source_boxes > 0 and row.postprocess_ms is not None, key
