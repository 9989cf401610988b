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

import numpy as np

from modelport.common.agreement import compare
from modelport.common.artifacts import Job
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import console, step
from modelport.common.reference import load_reference
from modelport.common.results import write_result
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


def agreement_of(ctx: StepContext, outputs: np.ndarray) -> Agreement | None:
    try:
        ref = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    except InputError:
        return None
    return compare(outputs, ref, [p.name for p in ctx.eval_images])


def _brief(a: Agreement | None) -> dict[str, Any] | None:
    return None if a is None else {"top1": a.top1, "cosine_min": a.cosine_min, "cosine_mean": a.cosine_mean, "mse": a.mse}


def run(
    ctx: StepContext, layers: list[str] | None = None, proposal: bool | None = None, force: bool = False, verbose: bool = False
) -> tuple[BackendResult, dict[str, Any]]:
    """Hybrid INT8/FP16 model, simulated and compared with the plain INT8 build (before) -> results/rknn-int8-hybrid.json."""
    rc = ctx.config.rknn
    proposal = rc.hybrid_proposal if proposal is None else proposal
    wanted = list(dict.fromkeys(layers if layers is not None else rc.hybrid_float16_layers))
    before_built = build.run(ctx, "int8", verbose=verbose)  # the "before", and every preflight check
    onnx_path = ctx.store.path(convert.ONNX)
    rel, evals = convert.MODELS["hybrid"], convert.eval_outputs_path("hybrid")
    n_prop = min(rc.hybrid_proposal_images, len(ctx.calibration))
    opts = {
        **convert.options(ctx, "int8"),
        "proposal": proposal,
        "proposal_images": n_prop if proposal else 0,
        "float16_layers": wanted,
    }
    before = agreement_of(ctx, np.load(before_built.eval_outputs))

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
    result = simulate.simulator_result(ctx, "hybrid", ctx.store.path(rel), ctx.store.path(evals))
    b, a = extra.get("before"), extra.get("after")
    if b and a:
        verdict = "improves" if (a["cosine_min"], a["cosine_mean"]) > (b["cosine_min"], b["cosine_mean"]) else "does not improve"
        note = (
            f"hybrid ({len(extra.get('float16_layers', []))} float16 tensors) {verdict} on plain INT8: "
            f"top-1 {b['top1']:.0%} -> {a['top1']:.0%}, cosine min {b['cosine_min']:.4f} -> {a['cosine_min']:.4f}, "
            f"mean {b['cosine_mean']:.4f} -> {a['cosine_mean']:.4f}"
        )
        result.notes.append(note)
        result.settings |= {"float16_layers": len(extra.get("float16_layers", [])), "step1_seconds": extra.get("step1_seconds")}
        write_result(ctx.store, result, np.load(ctx.store.path(evals)))
        console.print(f"   {note}", markup=False)
    return result, extra
