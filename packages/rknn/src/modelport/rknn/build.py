"""A model of the rknn package's pipeline by kind: INT8 through the recovery search (recover.py), which keeps
the configured build when it meets the floors; FP16 the configured build (convert.py)."""

from __future__ import annotations

from modelport.common.context import StepContext

from .convert import BuildKind, Built, build_model
from .recover import run as recover


def run(ctx: StepContext, kind: BuildKind = "int8", force: bool = False, verbose: bool = False) -> Built:
    """Produce ``MODELS[kind]`` + its simulator outputs (cached by manifest); INT8 through the recovery
    search (recover.py), which keeps the configured build when it meets the floors."""
    if kind == "int8":
        return recover(ctx, force=force, verbose=verbose)
    return build_model(ctx, kind, force, verbose)
