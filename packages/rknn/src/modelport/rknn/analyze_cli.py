"""`modelport analyze` in the rknn env: rknn-int8 here; the other targets run in their own envs."""

from __future__ import annotations

import click

from modelport.common.context import StepContext
from modelport.common.layer_analysis import TARGETS, print_summary
from modelport.common.log import skip, step


@click.command()
@click.argument("targets", nargs=-1, required=True, type=click.Choice(TARGETS), metavar="TARGET...")
@click.option("--force", is_flag=True, help="Redo even when the manifest says the analysis is up to date.")
@click.pass_obj
def analyze(ctx: StepContext, targets: tuple[str, ...], force: bool) -> None:
    """Per-layer error of the INT8 model against float -> analysis/<target>.json (rknn-int8 in this env:
    rknn-toolkit2's accuracy_analysis, named by onnx/model.onnx)."""
    from . import layers

    with ctx.store.lock():
        for key in dict.fromkeys(targets):
            step(f"analyze {key}")
            if key != layers.KEY:
                skip(f"{key}: analysed in its own env (`nox -s analyze` runs every env's part)")
                continue
            print_summary(layers.run(ctx, force=force))
