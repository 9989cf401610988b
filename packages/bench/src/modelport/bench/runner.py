"""Run a runtime on the eval images, time it, compare it, write ``results/<key>.json`` + ``.npy``.

Also used by the converters to verify what they produced: one code path runs every
model on the eval images, so a verified conversion and a benchmarked one see the
same tensors.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from modelport.common.agreement import compare
from modelport.common.artifacts import ArtifactStore, sha256_file, write_atomic
from modelport.common.context import StepContext
from modelport.common.errors import HardwareMissing, InputError, ModelportError
from modelport.common.images import load_image
from modelport.common.log import console, progress
from modelport.common.machine import machine_info
from modelport.common.preprocess import prepare, to_tensor
from modelport.common.reference import load_reference
from modelport.common.schema import BackendResult, Headline, TopK
from modelport.common.timing import load_average, measure

from .registry import runtime_class
from .runtime import Runtime


def prepared_images(ctx: StepContext) -> list[np.ndarray]:
    """Decode + prepare each eval image once; every runtime's tensor derives from these arrays."""
    cache = ctx.__dict__.setdefault("_prepared", {})
    key = tuple(ctx.eval_images)
    if key not in cache:
        cache[key] = [prepare(load_image(p), ctx.config.input) for p in ctx.eval_images]
    return cache[key]


def run_outputs(runtime: Runtime, prepared: list[np.ndarray], spec) -> np.ndarray:
    """Outputs [N, C] of an active runtime on prepared images."""
    outs = []
    for arr in progress(prepared, f"{runtime.display}: eval images"):
        out = np.asarray(runtime.infer(to_tensor(arr, spec, runtime.input_layout, runtime.input_dtype)))
        outs.append(out.reshape(-1).astype(np.float32))
    return np.stack(outs)


def result_base(ctx: StepContext, cls: type[Runtime], status: str = "ok", reason: str | None = None) -> BackendResult:
    source = ctx.store.read_manifest("source/model.tflite")
    return BackendResult(
        key=cls.key, backend=cls.backend, precision=cls.precision, name=cls.display, env=ctx.env,
        status=status, reason=reason, device=cls.device, machine=machine_info(),
        model_sha256=source["sha256"] if source else None, preprocessing=ctx.config.input.signature,
        input={"layout": cls.input_layout, "dtype": cls.input_dtype},
    )


def write_result(store: ArtifactStore, result: BackendResult, outputs: np.ndarray | None = None) -> Path:
    path = store.path(f"results/{result.key}.json")
    npy = path.with_suffix(".npy")
    if outputs is not None:
        buf = io.BytesIO()
        np.save(buf, outputs, allow_pickle=False)
        write_atomic(npy, buf.getvalue())
    else:
        npy.unlink(missing_ok=True)  # never leave another run's outputs beside this result
    write_atomic(path, result.dump())
    return path


def benchmark(ctx: StepContext, key: str) -> BackendResult:
    """Benchmark one backend; a missing toolchain or hardware becomes a skipped result, not an error."""
    cls = runtime_class(key)
    reason = cls.unavailable_reason()
    if reason:
        result = result_base(ctx, cls, "skipped", reason)
        result.latency_note = "not measured: " + reason
        write_result(ctx.store, result)
        return result
    cfg, store = ctx.config, ctx.store
    prepared = prepared_images(ctx)
    names = [p.name for p in ctx.eval_images]
    result = result_base(ctx, cls)
    try:
        runtime = cls.from_store(store, cfg)
        load_before = load_average()
        with runtime:
            outputs = run_outputs(runtime, prepared, cfg.input)
            headline_i = names.index(cfg.images.headline) if cfg.images.headline in names else 0
            tensor = to_tensor(prepared[headline_i], cfg.input, cls.input_layout, cls.input_dtype)
            console.print(f"   timing {cls.display}: {cfg.bench.warmup} warm-up + {cfg.bench.runs} runs on {names[headline_i]}")
            result.latency_ms = measure(lambda: runtime.infer(tensor), cfg.bench.warmup, cfg.bench.runs)
            result.extra_timings = getattr(runtime, "extra_timings", {})
            result.load_avg = {"before": load_before, "after": load_average()}
            result.load_ms = runtime.load_ms
            result.tool_versions = runtime.tool_versions()
            result.settings = runtime.settings()
            result.size_bytes = runtime.size_bytes()
            first = next(iter(runtime.files.values()))
            result.artifact = store.rel(first)
            result.artifact_sha256 = sha256_file(first)
    except HardwareMissing as e:
        result.status, result.reason = "skipped", str(e)
        write_result(store, result)
        return result
    except ModelportError as e:
        result.status, result.reason = "failed", str(e)
        write_result(store, result)
        return result
    fill_outputs(ctx, result, outputs, names, headline_i)
    write_result(store, result, outputs)
    return result


def fill_outputs(ctx: StepContext, result: BackendResult, outputs: np.ndarray, names: list[str], headline_i: int = 0) -> None:
    """Top-5 per image, the headline, and agreement vs the reference (when there is one)."""
    labels = ctx.labels
    num_classes = outputs.shape[1]
    labels.check(num_classes)
    for name, out in zip(names, outputs, strict=True):
        idx = np.argsort(-out)[:5]
        result.topk.append(TopK(image=name, indices=[int(i) for i in idx],
                                labels=[labels.name(int(i), num_classes) for i in idx],
                                scores=[float(out[i]) for i in idx]))
    top = result.topk[headline_i]
    result.headline = Headline(image=top.image, label=top.labels[0], confidence=top.scores[0])
    try:
        reference = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    except InputError as e:
        result.notes.append(f"no agreement: {e}")
        return
    result.agreement = compare(outputs, reference, names)
