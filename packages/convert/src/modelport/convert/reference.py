"""`convert reference`: the source TFLite model's outputs on the eval images.

Every converter in every env verifies against this file, and the report compares
every backend with it.
"""

from __future__ import annotations

import io

import numpy as np

from modelport.bench.runner import prepared_images, run_outputs
from modelport.bench.runtimes.tflite import TfliteRuntime
from modelport.common.context import StepContext
from modelport.common.reference import REFERENCE, image_ids


def unavailable_reason() -> str | None:
    return TfliteRuntime.unavailable_reason()


def tool_version() -> str:
    return TfliteRuntime.version()


def run(ctx: StepContext, force: bool):
    store, cfg = ctx.store, ctx.config
    model = store.path("source/model.tflite")
    inputs = {"model": model} | {f"image:{p.name}": p for p in ctx.eval_images}
    options = {"input": cfg.input.model_dump(mode="json"), "tflite": cfg.tflite.model_dump()}
    with store.produce(REFERENCE, inputs=inputs, tool="tflite", tool_version=tool_version(),
                       options=options, force=force) as job:
        if job.cached:
            return [job.path]
        with TfliteRuntime(cfg, {"model": model}) as runtime:
            outputs = run_outputs(runtime, prepared_images(ctx), cfg.input)
        buf = io.BytesIO()
        np.save(buf, outputs, allow_pickle=False)
        job.tmp().write_bytes(buf.getvalue())
        job.record(images=image_ids(ctx.eval_images), preprocessing=cfg.input.signature)
    return [job.path]
