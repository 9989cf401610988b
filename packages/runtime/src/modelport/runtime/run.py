"""Running a runtime on the eval images: what a benchmark and a converter's verification share.

One code path runs every model on the eval images, so a verified conversion and a
benchmarked one see the same tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.common.context import StepContext
from modelport.common.images import load_image
from modelport.common.log import progress
from modelport.common.preprocess import InputSpec, prepare, to_tensor

from .base import Runtime


def prepared_images(ctx: StepContext) -> list[np.ndarray]:
    """Decode + prepare each eval image once; every runtime's tensor derives from these arrays."""
    cache: dict[tuple[Path, ...], list[np.ndarray]] = ctx.__dict__.setdefault("_prepared", {})
    key = tuple(ctx.eval_images)
    if key not in cache:
        cache[key] = [prepare(load_image(p), ctx.config.input) for p in ctx.eval_images]
    return cache[key]


def run_outputs(runtime: Runtime, prepared: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Outputs [N, C] of an active runtime on prepared images."""
    outs = []
    for arr in progress(prepared, f"{runtime.display}: eval images"):
        out = np.asarray(runtime.infer(to_tensor(arr, spec, runtime.input_layout, runtime.input_dtype)))
        outs.append(out.reshape(-1).astype(np.float32))
    return np.stack(outs)
