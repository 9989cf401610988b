"""Verify a produced model by running it on the eval images against the reference outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from modelport.common.below_floor import keep_below_floor
from modelport.common.context import StepContext
from modelport.common.errors import AccuracyGateError
from modelport.common.schema import Agreement
from modelport.runtime.base import Runtime
from modelport.runtime.run import prepared_images, run_all_outputs, run_outputs
from modelport.runtime.verify import check_detections, check_outputs, verification_off


def verify(ctx: StepContext, runtime: Runtime, kind: Literal["float", "int8"], what: Path, gate: bool = True) -> Agreement | None:
    """Run ``runtime`` (pointing at the not-yet-committed files) and apply the accuracy floor.

    Raises AccuracyGateError below the floor, so the caller's artifact job commits nothing; the
    model is kept under its below-floor name (modelport.common.below_floor) for inspection.
    ``gate=False`` (a recovery variant, judged by the search) only measures.
    """
    if verification_off(ctx):
        return None
    detector = ctx.config.detector is not None
    with runtime:
        if detector:
            boxes = run_all_outputs(runtime, prepared_images(ctx), ctx.config.input)
        else:
            outputs = run_outputs(runtime, prepared_images(ctx), ctx.config.input)
    try:
        if detector:
            return check_detections(ctx, boxes, kind, what, f"verified {runtime.display}", gate)
        return check_outputs(ctx, outputs, kind, what, f"verified {runtime.display}", gate)
    except AccuracyGateError as e:
        finals = {role: ctx.store.path(rel) for role, rel in type(runtime).artifacts.items()}
        keep_below_floor(ctx.store, {made: finals[role] for role, made in runtime.files.items() if role in finals}, e)
        raise
