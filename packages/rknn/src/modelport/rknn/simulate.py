"""`rknn simulate`: the simulator's outputs as ``results/rknn-*.json`` + ``.npy``, the schema every backend writes.

So the report ranks RKNN beside ONNX/NCNN/TensorRT for accuracy. A simulator has no
NPU timing: latency is recorded as not measured, with that reason, never faked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common.artifacts import sha256_file
from modelport.common.backends import Backend, backends
from modelport.common.context import StepContext
from modelport.common.errors import HardwareMissing, InputError, ModelportError
from modelport.common.log import console, failed, step
from modelport.common.results import fill_outputs, new_result, write_result
from modelport.common.schema import BackendResult, LayerProfile, Status
from modelport.runtime.run import placements
from modelport.tasks.detect.judge import fill_detections

from . import build, convert

BACKENDS = {"int8": backends()["rknn-int8"], "fp16": backends()["rknn-fp16"], "hybrid": backends()["rknn-int8-hybrid"]}
# The simulator models the NPU's arithmetic, not its speed; `modelport rknn board` times a real board.
SIMULATOR_NOTE = "not measured: x86 simulator (no NPU timing)"
THROUGHPUT_NOTE = (
    "throughput not measured: x86 simulator; on a board `rknn board --lite` runs an RKNNLite per NPU core (core masks)"
)
NO_LAYER_TIMES = "per-layer time needs a board: rknn-toolkit2's eval_perf (perf_debug) times layers on the NPU only"


def result_base(ctx: StepContext, b: Backend, device: str, status: Status = "ok", reason: str | None = None) -> BackendResult:
    return new_result(
        ctx,
        key=b.key,
        backend="rknn",
        precision=b.precision,
        name=b.display,
        device=device,
        input_layout="NHWC",
        input_dtype="uint8",
        status=status,
        reason=reason,
    )


def fill(ctx: StepContext, result: BackendResult, outputs: convert.Outputs) -> np.ndarray:
    """The row's outputs, agreement and top-k, a classifier's or a detector's (judged by its boxes, as every
    runtime's row is); returns what results/<key>.npy holds."""
    if isinstance(outputs, np.ndarray):
        fill_outputs(ctx, result, outputs)
        return outputs
    return fill_detections(ctx, result, outputs, placements(ctx))


def simulator_result(
    ctx: StepContext,
    kind: str,
    model: Path,
    eval_outputs: Path,
    notes: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
) -> BackendResult:
    """A result from a model's kept simulator outputs (``*.eval.npy``) and its manifest, with ``notes`` and
    ``settings`` of the step that made it."""
    b, store = BACKENDS[kind], ctx.store
    manifest = store.read_manifest(store.rel(model)) or {}
    outputs = convert.load_outputs(eval_outputs)
    if len(outputs) != len(ctx.eval_images):
        raise InputError(
            f"{len(outputs)} simulator outputs for {len(ctx.eval_images)} eval images: rerun with --force", eval_outputs
        )
    result = result_base(ctx, b, simulator_device(ctx))
    result.latency_note = SIMULATOR_NOTE
    if ctx.config.bench.throughput:
        result.notes.append(THROUGHPUT_NOTE)
    result.layer_profile = LayerProfile(reason=NO_LAYER_TIMES)
    result.tool_versions = manifest.get("extra", {}).get("versions", {})
    result.settings = {k: v for k, v in manifest.get("options", {}).items() if k not in ("eval_images", "calibration")}
    if manifest.get("extra", {}).get("build_seconds") is not None:  # a time never recorded is left out, not shown as None
        result.settings["build_seconds"] = manifest["extra"]["build_seconds"]
    result.settings |= settings or {}
    result.notes.extend(notes)
    result.artifact, result.artifact_sha256 = store.rel(model), sha256_file(model)
    result.size_bytes = model.stat().st_size
    write_result(store, result, fill(ctx, result, outputs))
    return result


def summary(r: BackendResult) -> str:
    a = r.agreement
    agree = f"top-1 agreement {a.top1:.0%}, cosine min {a.cosine_min:.5f} / mean {a.cosine_mean:.5f}" if a else "no reference"
    if a is not None and a.detect is not None:
        agree = f"boxes F1 vs source {a.detect.f1:.4f}, mean IoU {a.detect.mean_iou:.4f}" + (
            f", mAP {a.detect.map:.4f} (source {a.detect.source_map:.4f})"
            if a.detect.map is not None and a.detect.source_map is not None
            else ""
        )
    head = r.headline
    return f"{r.name}: {agree}" + (f"; {head.label} {head.confidence:.3f} on {head.image}" if head else "")


def simulator_device(ctx: StepContext) -> str:
    return f"rknn-simulator ({ctx.config.rknn.target_platform} on x86)"


def record_failure(ctx: StepContext, kind: str, exc: ModelportError) -> BackendResult:
    """The failed step as this backend's row (status failed, the reason), so the report shows it."""
    r = result_base(ctx, BACKENDS[kind], simulator_device(ctx), "failed", str(exc))
    r.latency_note = "not measured: failed"
    r.agreement = getattr(exc, "agreement", None)  # below the floors: what the simulator measured
    write_result(ctx.store, r)
    failed(f"{BACKENDS[kind].key}: {exc}")
    return r


def run(ctx: StepContext, force: bool = False, verbose: bool = False) -> list[BackendResult]:
    """results/rknn-int8 (+ rknn-fp16 when [rknn] fp16): convert first if needed (cached), then write.

    A kind that fails is written as a failed row and the next kind still runs; then this raises.
    """
    kinds: list[convert.BuildKind] = ["int8", "fp16"] if ctx.config.rknn.fp16 else ["int8"]
    out, failures = [], []
    for kind in kinds:
        try:
            built = build.run(ctx, kind, force=force, verbose=verbose)
            step(f"rknn simulate {kind}: results/{BACKENDS[kind].key}.json")
            r = simulator_result(ctx, kind, built.model, built.eval_outputs)
        except HardwareMissing:
            raise
        except ModelportError as e:
            out.append(record_failure(ctx, kind, e))
            failures.append(BACKENDS[kind].key)
            continue
        console.print(f"   {summary(r)}")
        out.append(r)
    if failures:
        raise ModelportError(f"rknn failed: {', '.join(failures)} (each is a row with its reason)")
    return out
