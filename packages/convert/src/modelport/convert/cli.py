"""`modelport convert`: run conversion targets in order; each skips itself when up to date."""

from __future__ import annotations

import click

from modelport.common.context import StepContext
from modelport.common.errors import HardwareMissing, ModelportError
from modelport.common.log import failed as log_failed
from modelport.common.log import skip, step
from modelport.common.registry import chosen, failures, legacy_flags, may_fail_option

from .registry import TARGETS, target_module


@click.command()
@click.argument("targets", nargs=-1, type=click.Choice(list(TARGETS)), metavar="TARGET...")
@legacy_flags(TARGETS)
@may_fail_option(TARGETS)
@click.option("--force", is_flag=True, help="Redo even when the manifest says the output is up to date.")
@click.option(
    "--ncnn-tools",
    type=click.Choice(["auto", "official", "builtin"]),
    help="ncnn INT8 tools: official = ncnnoptimize/ncnn2table/ncnn2int8 from PATH, builtin = modelport's "
    "own, auto = official when on PATH (overrides [ncnn] tools).",
)
@click.pass_obj
def convert(
    ctx: StepContext,
    /,
    targets: tuple[str, ...],
    force: bool,
    ncnn_tools: str | None,
    may_fail: tuple[str, ...],
    **flags: bool,
) -> None:
    """Convert to TARGET... (any of: {targets}), in the order given.

    Every output is verified by running it on the eval images against the reference
    outputs (source/reference.npy: the source model in its own runtime) before it is
    committed; one below its [accuracy] floors is kept only as <name>.below-floor.<ext>. A target whose
    hardware is missing here (TensorRT without a CUDA GPU) is skipped with the reason.
    A target that fails is reported and the rest still run; the command then exits
    non-zero (unless each failed one is given with --may-fail), and `bench` records the failure as that
    backend's row.
    """
    if ncnn_tools:
        ctx.overrides.append(("ncnn.tools", ncnn_tools))  # before the config is first read
    picked = chosen(TARGETS, targets, flags)
    if not picked:
        raise click.UsageError(f"name at least one target: {', '.join(TARGETS)}")
    failed = []
    with ctx.store.lock():
        for name in picked:
            mod = target_module(name)
            step(f"convert {name}")
            try:
                mod.run(ctx, force or ctx.force)
            except HardwareMissing as e:
                skip(f"{name}: {e}")
            except ModelportError as e:
                record_failure(ctx, name, e)
                if len(picked) == 1 and name not in may_fail:
                    raise
                log_failed(f"{name}: {e}")
                failed.append(name)
    failed = failures(failed, may_fail)
    if failed:
        raise ModelportError(f"convert failed: {', '.join(failed)} (the other targets ran)")


def record_failure(ctx: StepContext, name: str, exc: ModelportError) -> None:
    """Mark the files a failed target makes for its backend (also when it failed before its artifact job
    started, e.g. on a calibration image), so `bench` writes the failure as that row instead of
    measuring an older model."""
    from modelport.runtime.registry import RUNTIMES, runtime_class

    agreement = getattr(exc, "agreement", None)  # below the floors: the row shows what was measured
    extra = {"agreement": agreement.model_dump()} if agreement is not None else {}
    if name in RUNTIMES:
        for rel in runtime_class(name).artifacts.values():
            ctx.store.record_failure(rel, str(exc), target=name, **extra)


convert.help = (convert.help or "").replace("{targets}", ", ".join(TARGETS))
