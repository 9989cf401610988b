"""A conversion killed midway never leaves a file a later run trusts; the next run redoes it."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, cast

import pytest

from conftest import CLI
from modelport.common.artifacts import sha256_file
from modelport.common.context import StepContext

pytestmark = pytest.mark.slow  # the real model's converted artifacts (the pipeline fixture)

ONE_CONVERTER = ["-o", "convert.onnx_converter=tflite2onnx"]  # one converter is enough to interrupt; halves the time


def start_conversion(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *ONE_CONVERTER, "convert", "onnx"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_converting(art: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the step has a work dir with something in it (tflite2onnx has started writing)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        work = art / ".tmp"
        if work.is_dir() and any(p.is_file() for p in work.rglob("*")):
            return
        if proc.poll() is not None:
            pytest.fail(f"conversion ended before it could be interrupted:\n{cast(IO[str], proc.stdout).read()}")
        time.sleep(0.05)
    pytest.fail("conversion did not start")


def partials(art: Path) -> list[Path]:
    return [p for p in art.rglob("*") if "partial" in p.name or p.parent.name == ".tmp"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_conversion_is_redone(
    pipeline: StepContext, test_env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    art = tmp_path / "art"
    shutil.copytree(
        pipeline.store.root, art, ignore=shutil.ignore_patterns("onnx", "results", "report", "ncnn", "rknn", "tensorrt")
    )
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    proc = start_conversion(env)
    wait_until_converting(art, proc)
    proc.send_signal(sig)
    proc.wait(60)
    assert proc.returncode != 0
    assert not (art / "onnx" / "model.onnx").exists() and not (art / "onnx" / "model.onnx.manifest.json").exists()
    if sig == signal.SIGTERM:
        assert partials(art) == [], "SIGTERM must unwind and delete temp files"
    again = subprocess.run([*CLI, *ONE_CONVERTER, "convert", "onnx"], env={**os.environ, **env}, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "verified ONNX FP32" in again.stderr and "up to date" not in again.stderr
    assert partials(art) == []
    assert (art / "onnx" / "model.onnx.manifest.json").is_file()


def test_changed_source_invalidates_every_dependent(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> None:
    """Manifest chain: a different input model redoes the reference, the ONNX and the INT8 model."""
    art = tmp_path / "art"
    shutil.copytree(pipeline.store.root, art, ignore=shutil.ignore_patterns("results", "report", "ncnn", "rknn", "tensorrt"))
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art), "MODELPORT_IMAGES": str(pipeline.eval_images[0].parent)}
    first = subprocess.run(
        [*CLI, *ONE_CONVERTER, "convert", "reference", "onnx"], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    cached = subprocess.run(
        [*CLI, *ONE_CONVERTER, "convert", "reference", "onnx"], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert cached.returncode == 0 and cached.stderr.count("up to date") == 2, cached.stderr
    # Same model, different bytes: a changed source must propagate through the sha256 chain.
    src = art / "source" / "model.tflite"
    with open(src, "ab") as f:
        f.write(b"\0" * 16)  # trailing bytes: still a valid flatbuffer, but not the same file
    m = art / "source" / "model.tflite.manifest.json"
    data = json.loads(m.read_text())
    data["sha256"], data["size_bytes"] = sha256_file(src), src.stat().st_size
    m.write_text(json.dumps(data))
    redo = subprocess.run(
        [*CLI, *ONE_CONVERTER, "convert", "reference", "onnx"], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert redo.returncode == 0, redo.stderr
    assert "up to date" not in redo.stderr and "verified ONNX FP32" in redo.stderr
