"""Helpers for the rknn tests (not a conftest.py: pytest would clash with the repo's root conftest module)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from modelport.common.reference import REFERENCE

# What the tf-onnx env makes and the rknn env reads: `nox -s tests` runs tests(tf-onnx) first into
# MODELPORT_TEST_ARTIFACTS. The rknn env cannot make them (no TFLite runtime, no tflite2onnx).
INPUTS = ("source/model.tflite", "source/contract.json", "source/labels.txt", REFERENCE, "onnx/model.onnx")


def upstream(test_env: dict[str, str]) -> Path:
    """The artifacts folder holding the tf-onnx env's outputs; fails (never skips) when they are missing."""
    src = Path(test_env["MODELPORT_ARTIFACTS"])
    missing = [rel for rel in INPUTS if not (src / rel).is_file()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing in {src}: run tests(tf-onnx) first (nox -s tests) or point "
            "MODELPORT_TEST_ARTIFACTS at artifacts made by `modelport fetch` + `modelport convert reference onnx`"
        )
    return src


def copy_inputs(src: Path, dst: Path) -> Path:
    """A private artifacts folder: tests write there, never into the shared one."""
    for rel in INPUTS:
        for name in (rel, rel + ".manifest.json"):
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)
    return dst


def require_toolkit() -> None:
    """rknn-toolkit2 must work in the rknn env; elsewhere its tests skip with the reason."""
    from modelport.rknn import toolkit

    reason = toolkit.unavailable_reason()
    if reason:
        if os.environ.get("MODELPORT_ENV") == "rknn":
            pytest.fail(f"rknn env without a working toolkit: {reason}")
        pytest.skip(reason)
