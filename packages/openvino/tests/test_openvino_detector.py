"""The shipped RFB-320 face detector (ONNX, scores + boxes, SSD priors) through `convert openvino-fp32` and
`bench openvino-fp32`: its boxes against the source's, from the artifacts tf-onnx's tests made (conftest.rfb320)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import LIGHT_BENCH, cli, detector_copy
from modelport.common.schema import BackendResult

QUICK = ["-o", "bench.runs=3", "-o", "bench.warmup=1", *LIGHT_BENCH]


@pytest.mark.slow
def test_rfb320_runs_through_openvino_fp32_verified_by_its_boxes(rfb320: dict[str, str], tmp_path: Path) -> None:
    env = detector_copy(rfb320, tmp_path / "art")
    for args in (["convert", "openvino-fp32"], [*QUICK, "bench", "openvino-fp32"]):
        proc = cli(env, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    art = tmp_path / "art"
    made = json.loads((art / "openvino" / "model.xml.manifest.json").read_text())
    verified = made["extra"]["agreement"]["detect"]
    assert verified["f1"] >= 0.99 and verified["source_boxes"] > 0, verified
    row = BackendResult.model_validate_json((art / "results" / "openvino-fp32.json").read_text())
    det = row.agreement.detect if row.agreement else None
    assert row.status == "ok" and det is not None, row.agreement_note
    assert det.f1 >= 0.99 and det.matched == det.source_boxes > 0 and row.postprocess_ms is not None
