"""What the convert-side recovery backends (ONNX INT8, NCNN INT8) share: timing through the runtimes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from modelport.bench.runner import prepared_images
from modelport.bench.runtime import Runtime
from modelport.common.context import StepContext
from modelport.common.preprocess import to_tensor
from modelport.common.results import headline_index


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
