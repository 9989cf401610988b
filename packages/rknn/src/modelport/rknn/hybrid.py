"""`rknn hybrid`: hybrid quantization (sensitive layers in float16), with the accuracy before and after.

rknn-toolkit2's two steps: ``hybrid_quantization_step1`` quantizes and writes
``model.model`` / ``model.data`` / ``model.quantization.cfg`` (with ``proposal=True``
its ``custom_quantize_layers`` already lists the layers it proposes to keep in
float16), the user edits that list, ``hybrid_quantization_step2`` builds from the
three files. Here the list = the toolkit's proposal + ``[rknn] hybrid_float16_layers``.

Measured on MobileNetV2 / rk3588 (normal, channel): proposal from 12 images (~95 s)
lifts cosine min/mean from 0.9806/0.9966 to 0.9886/0.9982; from 4 images it *lowers*
the min to 0.970; from 1 image it proposes nothing. So the before/after numbers are
recorded and reported as measured, never assumed to improve.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelport.common.artifacts import Job
from modelport.common.below_floor import below_floor_name
from modelport.common.context import StepContext
from modelport.common.errors import AccuracyGateError, ModelportError
from modelport.common.log import console, step
from modelport.common.schema import Agreement, BackendResult

from . import build, convert, simulate, toolkit

# `rknn hybrid`'s cfg helpers, here by the names its callers and tests know them
from .hybrid_cfg import INTEGER_DTYPES as INTEGER_DTYPES
from .hybrid_cfg import cfg_dtypes as cfg_dtypes
from .hybrid_cfg import cfg_layers as cfg_layers
from .hybrid_cfg import check_float16 as check_float16
from .hybrid_cfg import patch_cfg as patch_cfg
from .hybrid_cfg import quantized_tensors as quantized_tensors
from .hybrid_cfg import step1 as step1
from .hybrid_cfg import step2

CFG = "rknn/model-hybrid.quantization.cfg"


def _brief(a: Agreement | None) -> dict[str, Any] | None:
    if a is None:
        return None
    brief: dict[str, Any] = {"top1": a.top1, "cosine_min": a.cosine_min, "cosine_mean": a.cosine_mean, "mse": a.mse}
    if a.detect is not None:  # a detector is judged by its boxes: the before/after compares those
        brief |= {"f1": a.detect.f1, "mean_iou": a.detect.mean_iou, "map": a.detect.map}
    return brief


def change(b: dict[str, Any], a: dict[str, Any]) -> tuple[bool, str]:
    """Whether hybrid improved on plain INT8 (``b``efore, ``a``fter: ``_brief``s), by what the floors judge: a
    detector's boxes, else top-1 and cosine; and the change as a phrase."""
    if "f1" in b and "f1" in a:
        better = (a["f1"], a["mean_iou"]) > (b["f1"], b["mean_iou"])
        text = f"boxes F1 {b['f1']:.4f} -> {a['f1']:.4f}, mean IoU {b['mean_iou']:.4f} -> {a['mean_iou']:.4f}"
        if b.get("map") is not None and a.get("map") is not None:
            text += f", mAP {b['map']:.4f} -> {a['map']:.4f}"
        return better, text
    better = (a["cosine_min"], a["cosine_mean"]) > (b["cosine_min"], b["cosine_mean"])
    return better, (
        f"top-1 {b['top1']:.0%} -> {a['top1']:.0%}, cosine min {b['cosine_min']:.4f} -> {a['cosine_min']:.4f}, "
        f"mean {b['cosine_mean']:.4f} -> {a['cosine_mean']:.4f}"
    )


def _verdict(b: dict[str, Any], a: dict[str, Any], tensors: int) -> str:
    better, text = change(b, a)
    return f"hybrid ({tensors} float16 tensors) {'improves' if better else 'does not improve'} on plain INT8: {text}"


def run(
    ctx: StepContext, layers: list[str] | None = None, proposal: bool | None = None, force: bool = False, verbose: bool = False
) -> tuple[BackendResult, dict[str, Any]]:
    """Hybrid INT8/FP16 model, simulated and compared with the plain INT8 build (before) -> results/rknn-int8-hybrid.json."""
    rc = ctx.config.rknn
    proposal = rc.hybrid_proposal if proposal is None else proposal
    wanted = list(dict.fromkeys(layers if layers is not None else rc.hybrid_float16_layers))
    try:
        before_eval = build.run(ctx, "int8", verbose=verbose).eval_outputs  # the "before", and every preflight check
    except AccuracyGateError:  # plain INT8 below the floors is what hybrid is for: "before" is its below-floor build
        before_eval = below_floor_name(ctx.store.path(convert.eval_outputs_path("int8")))
    onnx_path = ctx.store.path(convert.ONNX)
    rel, evals = convert.MODELS["hybrid"], convert.eval_outputs_path("hybrid")
    n_prop = min(rc.hybrid_proposal_images, len(ctx.calibration))
    opts = {
        **convert.options(ctx, "int8"),
        "proposal": proposal,
        "proposal_images": n_prop if proposal else 0,
        "float16_layers": wanted,
    }
    before = convert.agreement_of(ctx, convert.load_outputs(before_eval)) if before_eval.is_file() else None

    @contextlib.contextmanager
    def session(job: Job, log: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
        how = f"toolkit proposal from {n_prop} calibration images" if proposal else "no proposal"
        step(f"rknn hybrid: step1 ({how}) + {len(wanted)} configured float16 layer(s) -> {rel}")
        work = job.workdir
        t0 = time.monotonic()
        cfg_in = step1(ctx, onnx_path, work, log, verbose, proposal, n_prop)
        step1_s = time.monotonic() - t0
        text = cfg_in.read_text()
        proposed, _ = cfg_layers(text)
        check_float16(wanted, text, "[rknn] hybrid_float16_layers", ctx.config.source or cfg_in.name, proposed=proposed)
        check_float16(proposed, text, "the toolkit's float16 proposal", onnx_path, ModelportError, proposed=proposed)
        chosen = list(dict.fromkeys(proposed + wanted))
        patched = patch_cfg(text, chosen)
        job.tmp(CFG).write_text(patched)
        (work / "hybrid.quantization.cfg").write_text(patched)
        with toolkit.session(log, work, verbose) as rk:
            step2(rk, onnx_path.stem, log, cfg_in)
            yield (
                rk,
                {
                    "before": _brief(before),
                    "proposed_layers": proposed,
                    "float16_layers": chosen,
                    "step1_seconds": round(step1_s, 1),
                    "build_seconds": round(step1_s, 1),
                },
            )

    convert.RknnConverter(verbose).simulated(
        ctx,
        force or ctx.force,
        {"model": rel, "eval": evals, "cfg": CFG},
        session,
        kind="hybrid",
        inputs=convert.inputs(ctx, onnx_path, "int8"),
        options=opts,
        log=convert.log_path(ctx, "hybrid"),
        tool="rknn-toolkit2 hybrid_quantization",
        from_agreement=lambda after: {"after": _brief(after)},
    )
    extra = (ctx.store.read_manifest(rel) or {}).get("extra", {})
    b, a = extra.get("before"), extra.get("after")
    notes, settings = [], {}
    if b and a:
        notes.append(_verdict(b, a, len(extra.get("float16_layers", []))))
        settings = {"float16_layers": len(extra.get("float16_layers", [])), "step1_seconds": extra.get("step1_seconds")}
    result = simulate.simulator_result(ctx, "hybrid", ctx.store.path(rel), ctx.store.path(evals), notes, settings)
    for note in notes:
        console.print(f"   {note}", markup=False)
    return result, extra
