"""Verify a produced model by running it on the eval images against the reference outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from modelport.bench.runner import prepared_images, run_outputs
from modelport.bench.runtime import Runtime
from modelport.common.agreement import check_gate, compare, gate_kind
from modelport.common.below_floor import keep_below_floor
from modelport.common.context import StepContext
from modelport.common.errors import AccuracyGateError
from modelport.common.log import console
from modelport.common.reference import load_reference
from modelport.common.schema import Agreement


def verify(ctx: StepContext, runtime: Runtime, kind: Literal["float", "int8"], what: Path,
           gate: bool = True) -> Agreement | None:
    """Run ``runtime`` (pointing at the not-yet-committed files) and apply the accuracy floor.

    Raises AccuracyGateError below the floor, so the caller's artifact job commits nothing; the
    model is kept under its below-floor name (modelport.common.below_floor) for inspection.
    ``gate=False`` (a recovery variant, judged by the search) only measures.
    """
    if not ctx.config.convert.verify:
        console.print("   [yellow]verification disabled (\\[convert] verify = false)[/]")
        return None
    reference = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    with runtime:
        outputs = run_outputs(runtime, prepared_images(ctx), ctx.config.input)
    agreement = compare(outputs, reference, [p.name for p in ctx.eval_images])
    console.print(
        f"   verified {runtime.display} on {agreement.images} images: top-1 agreement {agreement.top1:.0%}, "
        f"cosine min {agreement.cosine_min:.5f} / mean {agreement.cosine_mean:.5f}, max abs diff {agreement.max_abs_diff:.2e}"
    )
    if not gate:
        return agreement
    try:
        check_gate(agreement, gate_kind(kind, ctx.config), what, ctx.config.accuracy)
    except AccuracyGateError as e:
        finals = {role: ctx.store.path(rel) for role, rel in type(runtime).artifacts.items()}
        keep_below_floor(ctx.store, {made: finals[role] for role, made in runtime.files.items() if role in finals}, e)
        raise
    return agreement
