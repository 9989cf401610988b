"""`modelport analyze TARGET...` in the tf-onnx / ncnn / tensorrt envs (the rknn env registers its own)."""

from __future__ import annotations

import click

from modelport.common.backends import backends
from modelport.common.context import StepContext
from modelport.common.errors import HardwareMissing, ModelportError, ToolchainMissing
from modelport.common.layer_analysis import TARGETS
from modelport.common.log import failed, skip, step


@click.command()
@click.argument("targets", nargs=-1, required=True, type=click.Choice(TARGETS), metavar="TARGET...")
@click.option("--force", is_flag=True, help="Redo even when the manifest says the analysis is up to date.")
@click.pass_obj
def analyze(ctx: StepContext, targets: tuple[str, ...], force: bool) -> None:
    """Per-layer cosine and SQNR of each INT8 model against its FP32 twin -> analysis/<target>.json.

    TARGET: every INT8 backend whose descriptor names an analysis (onnx-int8, ncnn-int8,
    tensorrt-int8, openvino-int8), each in its own env; rknn-int8 in the rknn env. Layers are named
    by onnx/model.onnx, so one layer lines up across backends; `modelport report` charts them.
    A target this env cannot run is skipped with the reason.
    """
    from . import run
    from . import targets as registered

    here = registered()

    errors = []
    with ctx.store.lock():
        for key in dict.fromkeys(targets):
            step(f"analyze {key}")
            if key not in here:
                skip(f"{key}: analysed in the {backends()[key].env} env (`nox -s analyze` runs every env's part)")
                continue
            try:
                run(ctx, key, force=force)
            except (HardwareMissing, ToolchainMissing) as e:
                skip(str(e))
            except ModelportError as e:
                failed(f"{key}: {e}")
                errors.append(key)
    if errors:
        raise ModelportError(f"analyze failed: {', '.join(errors)}")
