"""What the convert-side recovery backends (ONNX, NCNN, TensorRT INT8) share: ranking layers, timing through the runtimes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from modelport.common import layer_analysis
from modelport.common.context import StepContext
from modelport.common.preprocess import to_tensor
from modelport.common.results import headline_index
from modelport.runtime.base import Runtime
from modelport.runtime.run import prepared_images


@contextlib.contextmanager
def runtime_timers(ctx: StepContext, runtimes: Mapping[str, Runtime]) -> Iterator[dict]:
    """One batch-1 inference on the headline image per runtime (each activated once), as bench times it."""
    i = headline_index(ctx)
    arr = prepared_images(ctx)[i]
    with contextlib.ExitStack() as stack:
        timers = {}
        for key, rt in runtimes.items():
            stack.enter_context(rt)
            tensor = to_tensor(arr, ctx.config.input, rt.input_layout, rt.input_dtype)
            timers[key] = lambda rt=rt, tensor=tensor: rt.infer(tensor)
        yield timers


def worst_analysed(ctx: StepContext, key: str, files: dict, variant_id: str, n: int) -> list[str]:
    """The ``n`` layers that add the most error of their own in a variant (its per-layer analysis, cached)."""
    from .analyze import run

    data = run(
        ctx, key, files={r: ctx.store.path(rel) for r, rel in files.items()}, out=f"analysis/variants/{key}-{variant_id}.json"
    )
    return [r["node"] for r in layer_analysis.worst(data["layers"], n, "own_sqnr_db_worst_image")]
