"""Cold start and peak memory of one row, in a fresh process: ``python -m modelport.bench.coldstart``.

The benchmark's own process has loaded the model before (and other rows' toolchains), so its load time
and memory say nothing of an application's start. The child reads what to run as JSON on stdin, imports
the toolchain, reads its RSS (the baseline: interpreter, toolchain, input tensor, no model),
loads the model, times the first inference, runs more, and writes one JSON object on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from modelport.common.context import StepContext
from modelport.common.errors import ModelportError
from modelport.common.schema import ColdStart

TIMEOUT_S = 900  # a TensorRT engine or an RKNN simulator load takes minutes at worst


def max_rss_bytes() -> int:
    """This process's RSS high-water since it started (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _status_bytes(field: str) -> int | None:
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def start_peak() -> int:
    """The RSS the peak is measured from: now, with the kernel's high-water reset to it where Linux allows
    (/proc/self/clear_refs). Without the reset, the setup's transient peak (resolving the config reads the
    source model) would hide the model's own memory: ru_maxrss cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return max_rss_bytes()
    return _status_bytes("VmRSS") or max_rss_bytes()


def peak_rss_bytes() -> int:
    """The RSS high-water since start_peak (VmHWM where the kernel exposes it)."""
    return _status_bytes("VmHWM") or max_rss_bytes()


def measure_here(ctx: StepContext, key: str, image: str, runs: int) -> dict[str, Any]:
    from modelport.common.images import load_image
    from modelport.common.preprocess import prepare, to_tensor
    from modelport.runtime.registry import runtime_class

    cls = runtime_class(key)
    runtime = cls.from_store(ctx.store, ctx.config)
    spec = ctx.config.input
    tensor = to_tensor(prepare(load_image(image), spec), spec, runtime.input_layout, runtime.input_dtype)
    for module in cls.requires:
        importlib.import_module(module)
    baseline = start_peak()
    with runtime:
        t0 = time.perf_counter_ns()
        runtime.infer(tensor)
        first = (time.perf_counter_ns() - t0) / 1e6
        for _ in range(runs):
            runtime.infer(tensor)
        peak = peak_rss_bytes()
        load_ms = runtime.load_ms
    return {
        "pid": os.getpid(),
        "load_ms": load_ms,
        "first_infer_ms": first,
        "inferences": runs,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
    }


def cold_start(ctx: StepContext, key: str, image: str, runs: int) -> ColdStart:
    """Run ``key`` once in a fresh interpreter of this env and read back what it measured."""
    args = {
        "config": ctx.config_path,
        "overrides": ctx.overrides,
        "artifacts": str(ctx.store.root),
        "key": key,
        "image": image,
        "runs": runs,
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "modelport.bench.coldstart"],
            input=json.dumps(args),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ModelportError(f"the fresh process did not finish in {TIMEOUT_S} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ModelportError(f"the fresh process failed: {last}")
    try:
        return ColdStart.model_validate(json.loads(proc.stdout))
    except ValueError as e:
        raise ModelportError(f"the fresh process wrote no result: {' '.join(str(e).split())[:200]}") from None


def main() -> int:
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a toolchain prints goes to stderr: stdout carries the one result
    args = json.load(sys.stdin)
    ctx = StepContext(config_path=args["config"], overrides=[tuple(o) for o in args["overrides"]], artifacts=args["artifacts"])
    try:
        data = measure_here(ctx, args["key"], args["image"], args["runs"])
    except ModelportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out.write(json.dumps(data) + "\n")
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
