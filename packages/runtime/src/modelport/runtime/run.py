"""Running a runtime on the eval images: what a benchmark and a converter's verification share.

One code path runs every model on the eval images, so a verified conversion and a
benchmarked one see the same tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.common.context import StepContext
from modelport.common.images import load_image
from modelport.common.letterbox import Placement, prepare_photo
from modelport.common.log import progress
from modelport.common.preprocess import InputSpec, to_tensor

from .base import Runtime


def _prepared(ctx: StepContext) -> list[tuple[np.ndarray, Placement | None]]:
    cache: dict[tuple[Path, ...], list[tuple[np.ndarray, Placement | None]]] = ctx.__dict__.setdefault("_prepared", {})
    key = tuple(ctx.eval_images)
    if key not in cache:
        det = ctx.config.detector
        cache[key] = [prepare_photo(load_image(p), ctx.config.input, det) for p in ctx.eval_images]
    return cache[key]


def prepared_images(ctx: StepContext) -> list[np.ndarray]:
    """Decode + prepare each eval image once (a detector's letterboxed); every runtime's tensor derives from these arrays."""
    return [arr for arr, _ in _prepared(ctx)]


def placements(ctx: StepContext) -> list[Placement]:
    """Where each eval photo sits in a detector's input: the way its boxes go back to the photo."""
    out = [p for _, p in _prepared(ctx) if p is not None]
    if len(out) != len(ctx.eval_images):
        raise ValueError("placements are a detector's: [model] task is not detect")
    return out


def run_outputs(runtime: Runtime, prepared: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Outputs [N, C] of an active runtime on prepared images."""
    outs = []
    for arr in progress(prepared, f"{runtime.display}: eval images"):
        out = np.asarray(runtime.infer(to_tensor(arr, spec, runtime.input_layout, runtime.input_dtype)))
        outs.append(out.reshape(-1).astype(np.float32))
    return np.stack(outs)


def run_all_outputs(runtime: Runtime, prepared: list[np.ndarray], spec: InputSpec) -> list[dict[str, np.ndarray]]:
    """Every output by name, per image, of an active runtime on prepared images (a detector's)."""
    return [
        runtime.infer_all(to_tensor(arr, spec, runtime.input_layout, runtime.input_dtype))
        for arr in progress(prepared, f"{runtime.display}: eval images")
    ]
