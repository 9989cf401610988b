"""Outputs on the eval images against the reference (the source model's): what every converter's
verification and the RKNN simulator's share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from modelport.common.agreement import check_gate, compare, gate_kind
from modelport.common.context import StepContext
from modelport.common.log import console
from modelport.common.reference import load_detect_reference, load_reference
from modelport.common.schema import Agreement
from modelport.tasks.detect.judge import judge

from .run import placements


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


def check_detections(
    ctx: StepContext,
    outputs: Sequence[Mapping[str, np.ndarray]],
    kind: Literal["float", "int8"],
    what: Path,
    label: str,
    gate: bool = True,
) -> Agreement:
    """A detector's check_outputs: its boxes against the source's (and COCO mAP against the source's)."""
    reference = load_detect_reference(ctx.store, ctx.eval_images, ctx.config.preprocessing)
    agreement, _, _ = judge(ctx.config, [p.name for p in ctx.eval_images], outputs, reference, placements(ctx))
    det = agreement.detect
    assert det is not None  # judge always sets it
    coco = (
        f", mAP {det.map:.4f} (source {det.source_map:.4f}), AP50 {det.ap50:.4f}"
        if det.map is not None and det.source_map is not None and det.ap50 is not None
        else f" ({det.map_note})"
    )
    console.print(
        f"   {label} on {agreement.images} images: boxes F1 vs source {det.f1:.4f} "
        f"(precision {det.precision:.4f}, recall {det.recall:.4f}, {det.matched}/{det.source_boxes} matched, "
        f"mean IoU {det.mean_iou:.4f}){coco}",
        markup=False,
    )
    if gate:
        check_gate(agreement, gate_kind(kind, ctx.config), what, ctx.config.accuracy)
    return agreement
