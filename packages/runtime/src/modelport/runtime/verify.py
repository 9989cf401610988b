"""Outputs on the eval images against the reference (the source model's): what every converter's
verification and the RKNN simulator's share."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from modelport.common.agreement import check_gate, compare, gate_kind
from modelport.common.context import StepContext
from modelport.common.log import console
from modelport.common.reference import load_reference
from modelport.common.schema import Agreement


def verification_off(ctx: StepContext) -> bool:
    """True (and says so) when ``[convert] verify = false``."""
    if ctx.config.convert.verify:
        return False
    console.print("   [yellow]verification disabled (\\[convert] verify = false)[/]")
    return True


def check_outputs(
    ctx: StepContext, outputs: np.ndarray, kind: Literal["float", "int8"], what: Path, label: str, gate: bool = True
) -> Agreement:
    """Agreement of ``outputs`` [N, C] with the reference; with ``gate``, raises AccuracyGateError
    (naming ``what``) below the floors for ``kind``."""
    reference = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    agreement = compare(outputs, reference, [p.name for p in ctx.eval_images])
    console.print(
        f"   {label} on {agreement.images} images: top-1 agreement {agreement.top1:.0%}, "
        f"cosine min {agreement.cosine_min:.5f} / mean {agreement.cosine_mean:.5f}, max abs diff {agreement.max_abs_diff:.2e}"
    )
    if gate:
        check_gate(agreement, gate_kind(kind, ctx.config), what, ctx.config.accuracy)
    return agreement
