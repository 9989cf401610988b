"""The batch-dynamic twins the depth sweeps use: a verified model with its batch-1 pins lifted.

The static models stay the default artifacts (RKNN and TensorRT want a fixed shape). A twin
is verified like every converter's output (batch 1 against the reference on every eval
image) and, before that, all eval images as one batch must give the per-image outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelport.common.agreement import Kind
from modelport.common.artifacts import Job
from modelport.common.context import StepContext
from modelport.common.errors import ModelportError
from modelport.common.log import console, step
from modelport.common.preprocess import to_tensor
from modelport.runtime.base import Runtime
from modelport.runtime.run import prepared_images

from .base import Converter


def check_batch_consistency(ctx: StepContext, runtime: Runtime, kind: Kind, what: Path) -> float:
    """All eval images as one batch must give what each gives alone (no cross-talk, no batch-1 pin)."""
    spec = ctx.config.input
    tensors = [to_tensor(a, spec, runtime.input_layout, runtime.input_dtype) for a in prepared_images(ctx)]
    with runtime:
        single = np.concatenate([runtime.infer(t) for t in tensors])
        runtime.set_batch(len(tensors))
        batched = runtime.infer(np.concatenate(tensors))
    diff = float(np.max(np.abs(batched - single)))
    # INT8 kernels may pick other blockings per batch size: allow float rounding, never a different answer.
    tolerance = 1e-4 if kind == "float" else 1e-3
    if batched.shape != single.shape or diff > tolerance:
        raise ModelportError(f"batch of {len(tensors)} differs from batch-1 outputs (max abs diff {diff:.2e})", what)
    return diff


class BatchTwin(Converter):
    """A subclass writes the twin (``unpin``); this checks its batches, verifies and records it."""

    def twin(
        self,
        ctx: StepContext,
        force: bool,
        source: str,
        runtime: type[Runtime],
        kind: Kind,
        unpin: Callable[[Path, Path], int],
        options: dict[str, object],
    ) -> list[Path]:
        """``runtime``'s model made from ``source`` by ``unpin(src, out)``, which returns how many reshape
        targets it changed."""
        store = ctx.store
        output, src = runtime.artifacts["model"], store.path(source)

        def make(job: Job) -> dict[str, object]:
            step(f"{source} -> {output}: batch-1 reshape pins lifted")
            changed = unpin(src, job.tmp())
            diff = check_batch_consistency(ctx, runtime(ctx.config, {"model": job.tmp()}), kind, store.path(output))
            console.print(
                f"   {len(ctx.eval_images)} images as one batch = batch-1 outputs (max abs diff {diff:.1e}); "
                f"{changed} reshape target(s) made batch-agnostic"
            )
            return {"reshapes_rewritten": changed, "batch_vs_single_max_abs_diff": diff}

        return self.produce(
            ctx,
            force,
            {"model": output},
            make,
            inputs={src.suffix.lstrip("."): src},  # "onnx" / "tflite": the manifests' role names
            options=options,
            runtime=runtime,
            kind=kind,
        )
