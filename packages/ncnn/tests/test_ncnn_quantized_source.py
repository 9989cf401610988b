"""ncnn from a full-integer TFLite source: pnnx's FP32 and the INT8 writer get the source's own normalisation.

The tf-onnx env's test_full_integer_tflite_source leaves that source's artifacts (contract, reference,
float ONNX) in MODELPORT_TEST_ARTIFACTS-quant; the quantization's mean/std (128, 128) reach ncnn's
substract_mean_normalize only through source/contract.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import LIGHT_BENCH, make_context, run

pytestmark = [pytest.mark.ncnn, pytest.mark.slow]


def test_ncnn_rows_of_the_qat_source(test_env: dict[str, str]) -> None:
    shared = os.environ.get("MODELPORT_TEST_ARTIFACTS")
    art = Path(f"{shared}-quant") if shared else None
    if art is None or not (art / "source" / "contract.json").is_file():
        pytest.fail(f"{art}: run tests(tf-onnx) first (nox -s tests): its QAT-source test makes these artifacts")
    env = {k: v for k, v in test_env.items() if k not in ("MODELPORT_MODEL", "MODELPORT_LABELS")}
    env |= {"MODELPORT_ARTIFACTS": str(art), "MODELPORT_CONFIG": f"{shared}-quant.toml"}
    proc = run(env, "convert", "ncnn", "ncnn-int8", "-o", "quantization.recover_rounds=1")  # its floors, not its speed
    assert proc.returncode == 0, proc.stderr
    proc = run(env, "bench", "ncnn", "ncnn-int8", "--runs", "3", "--warmup", "1", *LIGHT_BENCH)
    assert proc.returncode == 0, proc.stderr
    ctx = make_context(env)
    assert ctx.config.input.mean == (128.0,) * 3  # the uint8 input's zero point, not the shipped config's 127.5
    floors = ctx.config.accuracy
    for key in ("ncnn", "ncnn-int8"):
        a = json.loads((art / "results" / f"{key}.json").read_text())["agreement"]
        assert a["top1"] >= floors.int8_top1_min and a["cosine_min"] >= floors.int8_cosine_min, (key, a)
