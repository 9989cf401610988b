"""`modelport convert`: run conversion targets in order; each skips itself when up to date."""

from __future__ import annotations

import click

from modelport.common.context import StepContext
from modelport.common.errors import HardwareMissing
from modelport.common.log import skip, step
from modelport.common.registry import chosen, legacy_flags

from .registry import TARGETS, target_module


@click.command()
@click.argument("targets", nargs=-1, type=click.Choice(list(TARGETS)), metavar="TARGET...")
@legacy_flags(TARGETS)
@click.option("--force", is_flag=True, help="Redo even when the manifest says the output is up to date.")
@click.option("--ncnn-tools", type=click.Choice(["auto", "official", "builtin"]),
              help="ncnn INT8 tools: official = ncnnoptimize/ncnn2table/ncnn2int8 from PATH, builtin = modelport's "
                   "own, auto = official when on PATH (overrides [ncnn] tools).")
@click.pass_obj
def convert(ctx: StepContext, targets, force, ncnn_tools, **flags):
    """Convert to TARGET... (any of: {targets}), in the order given.

    Every output is verified by running it on the eval images against the TFLite
    reference outputs (source/reference.npy) before it is committed. A target whose
    hardware is missing here (TensorRT without a CUDA GPU) is skipped with the reason.
    """
    if ncnn_tools:
        ctx.overrides.append(("ncnn.tools", ncnn_tools))  # before the config is first read
    picked = chosen(TARGETS, targets, flags)
    if not picked:
        raise click.UsageError(f"name at least one target: {', '.join(TARGETS)}")
    with ctx.store.lock():
        for name in picked:
            mod = target_module(name)
            step(f"convert {name}")
            try:
                mod.run(ctx, force or ctx.force)
            except HardwareMissing as e:
                skip(f"{name}: {e}")


convert.help = convert.help.replace("{targets}", ", ".join(TARGETS))
