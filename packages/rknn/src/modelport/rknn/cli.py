"""`modelport rknn ...`: registered through the ``modelport.commands`` entry point of modelport-rknn."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from modelport.common.context import StepContext
from modelport.common.errors import HardwareMissing, ModelportError
from modelport.common.log import console, step
from modelport.common.log import failed as log_failed

if TYPE_CHECKING:
    from modelport.common.doctor import Check


def _overrides(ctx: StepContext, **values: object) -> None:
    # Through the config, so a bad value fails its validation (with the valid names) before the toolkit starts.
    for key, value in values.items():
        if value is not None:
            ctx.overrides.append((f"rknn.{key}", value))


force_option = click.option("--force", is_flag=True, help="Redo even when the manifest says the output is up to date.")


@click.group()
@click.option("--target-platform", help="Rockchip chip: rk3588 (default), rk3576, rk3568, rk3566, rk3562, rv1106, ...")
@click.option("--quantized-algorithm", type=click.Choice(["normal", "mmse", "kl_divergence"]), help="Default: [rknn] (normal).")
@click.option("--quantized-method", type=click.Choice(["channel", "layer"]), help="Default: [rknn] (channel).")
@click.option("--quantized-dtype", help="w8a8 (default), w8a16, w16a16i_dfp, w4a16 (which a chip supports: Rockchip's docs).")
@click.option("-v", "--verbose", is_flag=True, help="Show rknn-toolkit2's own output (otherwise kept in artifacts/rknn/logs/).")
@click.pass_obj
def rknn(
    ctx: StepContext,
    target_platform: str | None,
    quantized_algorithm: str | None,
    quantized_method: str | None,
    quantized_dtype: str | None,
    verbose: bool,
) -> None:
    """Rockchip NPUs: ONNX -> RKNN, simulator inference, per-layer accuracy analysis, hybrid quantization, board.

    \b
      modelport rknn all                      convert + simulate + analyze + hybrid (+ board if --target-device)
      modelport rknn convert                  onnx/model.onnx -> rknn/model.rknn (INT8) + rknn/model-fp16.rknn
      modelport rknn simulate                 results/rknn-int8.json (+ rknn-fp16) for the report
      modelport rknn analyze --image face.jpg rknn/accuracy/analysis.json (worst layers)
      modelport rknn hybrid                   rknn/model-hybrid.rknn, accuracy before/after
      modelport rknn board --target-device X  eval on a board over adb (--lite: on the board itself)

    mean_values/std_values come from [input]; everything else from [rknn] in modelport.toml.
    """
    _overrides(
        ctx,
        target_platform=target_platform,
        quantized_algorithm=quantized_algorithm,
        quantized_method=quantized_method,
        quantized_dtype=quantized_dtype,
    )
    ctx.__dict__["rknn_verbose"] = verbose


def _verbose(ctx: StepContext) -> bool:
    return bool(ctx.__dict__.get("rknn_verbose"))


@rknn.command()
@click.option("--fp16/--no-fp16", default=None, help="Also build the FP16 model (default: [rknn] fp16).")
@force_option
@click.pass_obj
def convert(ctx: StepContext, fp16: bool | None, force: bool) -> None:
    """ONNX -> rknn/model.rknn (INT8, + FP16), each verified in the simulator against the reference (the source model)."""
    from . import build
    from . import convert as conv

    _overrides(ctx, fp16=fp16)
    with ctx.store.lock():
        kinds: list[conv.BuildKind] = ["int8", "fp16"] if ctx.config.rknn.fp16 else ["int8"]
        for kind in kinds:
            build.run(ctx, kind, force=force, verbose=_verbose(ctx))


@rknn.command()
@force_option
@click.pass_obj
def simulate(ctx: StepContext, force: bool) -> None:
    """Simulator outputs on the eval images -> results/rknn-int8.json + .npy (+ rknn-fp16). No latency: a simulator."""
    from . import section
    from . import simulate as sim

    with ctx.store.lock():
        sim.run(ctx, force=force, verbose=_verbose(ctx))
        section.write(ctx)


@rknn.command()
@click.option(
    "--image",
    "images",
    multiple=True,
    help="Eval image name to analyze (repeatable; default: [rknn] analysis_images, else the worst INT8 image).",
)
@force_option
@click.pass_obj
def analyze(ctx: StepContext, images: tuple[str, ...], force: bool) -> None:
    """accuracy_analysis per layer -> rknn/accuracy/analysis.json (+ error_analysis-<image>.txt)."""
    from . import analysis, section

    with ctx.store.lock():
        analysis.run(ctx, list(images) or None, force=force, verbose=_verbose(ctx))
        section.write(ctx)


@rknn.command()
@click.option(
    "--layer", "layers", multiple=True, help="Tensor to keep in float16 (repeatable; default: [rknn] hybrid_float16_layers)."
)
@click.option("--proposal/--no-proposal", default=None, help="Add the toolkit's own proposal (default: [rknn] hybrid_proposal).")
@click.option(
    "--proposal-images", type=int, help="Calibration images the proposal uses (default: [rknn] hybrid_proposal_images)."
)
@force_option
@click.pass_obj
def hybrid(ctx: StepContext, layers: tuple[str, ...], proposal: bool | None, proposal_images: int | None, force: bool) -> None:
    """Hybrid quantization step1 + step2 -> rknn/model-hybrid.rknn, results/rknn-int8-hybrid.json (before/after)."""
    from . import hybrid as hyb
    from . import section

    _overrides(ctx, hybrid_proposal_images=proposal_images)
    with ctx.store.lock():
        hyb.run(ctx, list(layers) or None, proposal, force=force, verbose=_verbose(ctx))
        section.write(ctx)


@rknn.command()
@click.option("--target-device", help="adb serial of the board ('auto': the only one connected). Without it: skipped.")
@click.option("--lite", is_flag=True, help="Run on the board itself with rknn-toolkit-lite2 (results/rknn-int8-lite.json).")
@click.pass_obj
def board(ctx: StepContext, target_device: str | None, lite: bool) -> None:
    """The INT8 model on a real NPU: outputs, latency, eval_perf, eval_memory. Skipped, with the reason, without one."""
    from . import board as brd

    with ctx.store.lock():
        if lite:
            brd.run_lite(ctx)
        else:
            brd.run_adb(ctx, target_device or ctx.config.rknn.device_id, verbose=_verbose(ctx))


@rknn.command(name="all")
@click.option("--target-device", help="Also run on this board over adb (default: [rknn] device_id; none: skipped).")
@click.option(
    "--hybrid/--no-hybrid",
    "with_hybrid",
    default=True,
    help="Include hybrid quantization (35-55 s on 2 cores with the proposal).",
)
@force_option
@click.pass_obj
def all_(ctx: StepContext, target_device: str | None, with_hybrid: bool, force: bool) -> None:
    """convert + simulate + analyze + hybrid + board (skipped without --target-device), then the report section."""
    from . import analysis, section
    from . import board as brd
    from . import hybrid as hyb
    from . import simulate as sim

    verbose = _verbose(ctx)
    times: dict[str, float] = {}
    failures: list[str] = []
    with ctx.store.lock():
        for name, fn in (
            ("convert+simulate", lambda: sim.run(ctx, force=force, verbose=verbose)),
            ("analyze", lambda: analysis.run(ctx, force=force, verbose=verbose)),
            *((("hybrid", lambda: hyb.run(ctx, force=force, verbose=verbose)),) if with_hybrid else ()),
            ("board", lambda: brd.run_adb(ctx, target_device or ctx.config.rknn.device_id, verbose=verbose)),
        ):
            t0 = time.monotonic()
            try:
                fn()
            except HardwareMissing:
                raise
            except ModelportError as e:  # one sub-step failing does not stop the others
                failures.append(name)
                if name == "hybrid":
                    sim.record_failure(ctx, "hybrid", e)
                elif name != "convert+simulate":  # that one printed and recorded its own rows
                    log_failed(f"rknn {name}: {e}")
            times[name] = time.monotonic() - t0
        path = section.write(ctx)
    step("rknn all: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    console.print(f"   report section: {path} (`modelport report` includes it)")
    if failures:
        raise ModelportError(f"rknn all: {', '.join(failures)} failed (the other sub-steps ran)")


def doctor_rows() -> list[Check]:
    """`modelport doctor` rows (entry point ``modelport.doctor``): nothing heavy is imported."""
    from modelport.common.doctor import Check

    from . import toolkit
    from .board import lite_unavailable_reason

    reason = toolkit.unavailable_reason()
    lite = lite_unavailable_reason()
    return [
        Check(
            "rknn", "convert / simulate / analyze / hybrid", reason is None, reason or f"{toolkit.tool_version()} (x86 simulator)"
        ),
        Check(
            "rknn",
            "board over adb",
            False,
            reason
            or "needs a board: `modelport rknn board --target-device SERIAL` (not probed here: probing starts an adb server)",
        ),
        Check("rknn", "board, RKNNLite", lite is None, lite or "rknn-toolkit-lite2 (on the board)"),
    ]
