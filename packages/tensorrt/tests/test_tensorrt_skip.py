"""Without a GPU the TensorRT targets skip with the missing layer as reason, and touch nothing.

Runs the real CLI in a subprocess, as nox and compose do.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from conftest import make_context
from modelport.common.errors import HardwareMissing
from modelport.tensorrt import convert as trt_convert
from modelport.tensorrt import cuda

pytestmark = pytest.mark.tensorrt

REASON = cuda.missing_layer()
needs_no_gpu = pytest.mark.skipif(
    REASON is None or not cast(cuda.LayerStatus, cuda.probe().missing).hardware,
    reason="this machine has an NVIDIA driver and GPU: the skip path does not apply",
)
CLI = [sys.executable, "-c", "import sys; from modelport.common.cli import main; sys.exit(main())"]
TARGETS = ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env={**os.environ, **env}, capture_output=True, text=True)


@pytest.fixture
def fresh(test_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art")}


@needs_no_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_raises_hardware_missing_before_anything(fresh: dict[str, str], precision: str) -> None:
    ctx = make_context(fresh)
    with pytest.raises(HardwareMissing) as e:
        trt_convert.Target(precision).build(ctx, force=False)
    assert str(e.value) == REASON
    assert not ctx.store.path("tensorrt").exists()


@needs_no_gpu
def test_cli_convert_skips_each_target_with_the_reason(fresh: dict[str, str]) -> None:
    proc = run(fresh, "convert", *TARGETS)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("skip ")]
    assert lines == [f"skip {t}: {REASON}" for t in TARGETS], proc.stderr
    art = fresh["MODELPORT_ARTIFACTS"]
    written = [f for _, _, fs in os.walk(art) for f in fs if f != ".lock"] if os.path.isdir(art) else []
    assert written == []


@needs_no_gpu
def test_the_original_flag_spelling_works_too(fresh: dict[str, str]) -> None:
    proc = run(fresh, "convert", "--tensorrt-fp16")
    assert proc.returncode == 0 and f"skip tensorrt-fp16: {REASON}" in proc.stderr


@needs_no_gpu
def test_skipping_imports_no_toolchain(fresh: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from modelport.common.errors import HardwareMissing\n"
        "from modelport.common.context import StepContext\n"
        "from modelport.convert.registry import target_module\n"
        "ctx = StepContext(config_path=sys.argv[1], artifacts=sys.argv[2])\n"
        "for t in ('tensorrt-fp32', 'tensorrt-fp16', 'tensorrt-int8'):\n"
        "    try:\n"
        "        target_module(t).run(ctx, False)\n"
        "    except HardwareMissing:\n"
        "        pass\n"
        "print(','.join(m for m in ('tensorrt', 'pycuda', 'onnx') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, fresh["MODELPORT_CONFIG"], fresh["MODELPORT_ARTIFACTS"]],
        env={**os.environ, **fresh},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_doctor_names_the_missing_layer_for_every_tensorrt_row(fresh: dict[str, str]) -> None:
    proc = run(fresh, "doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {(c["kind"], c["name"]): c for c in json.loads(proc.stdout)["checks"]}
    for kind in ("convert", "runtime"):
        for t in TARGETS:
            row = rows[(kind, t)]
            if REASON is None:
                assert row["ok"] and "10." in row["detail"]
            else:
                assert not row["ok"] and row["detail"] == REASON
