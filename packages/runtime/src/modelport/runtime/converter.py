"""What every conversion target does around its toolchain call, in one place.

A target says which toolchain it needs (``unavailable_reason``, ``tool_version``) and how
it makes its files (the ``make`` it hands to ``produce``). ``Converter`` owns the rest,
always in this order: the toolchain check (ToolchainMissing: the CLI records a failed
row with the reason), the artifact store's cache (nothing runs when the manifest matches
the inputs, tool and options), the files written under temporary names, verification
through the runtime that benches them against the reference, or (a simulator, which is no
Runtime) of the outputs ``make`` returns (below the floors nothing is committed, the model is
kept under its below-floor name), and the manifest record with the agreement.
Like Polygraphy's loaders, the toolchain call is the only part a backend writes.
It lives in modelport.runtime (modelport.convert.base re-exports it) so that a backend whose
environment has no convert package (rknn) builds through the same base.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from modelport.common.agreement import Kind, gate_options
from modelport.common.artifacts import Job
from modelport.common.below_floor import keep_below_floor
from modelport.common.config import Config
from modelport.common.context import StepContext
from modelport.common.errors import AccuracyGateError, ToolchainMissing
from modelport.common.reference import reference_file
from modelport.common.schema import Agreement

from .base import Runtime
from .run import prepared_images, run_all_outputs, run_outputs
from .verify import check_detections, check_outputs, verification_off


@dataclass(frozen=True)
class Made:
    """What a ``make`` that ran its model itself (a simulator: no Runtime opens its files) returns:
    the outputs on the eval images, verified like a runtime's (``runtime=MADE`` in ``produce``)."""

    outputs: np.ndarray | Sequence[Mapping[str, np.ndarray]]  # a classifier's [N, C], or a detector's outputs per image
    label: str  # how the console line names them, e.g. "simulated"
    record: Mapping[str, Any] = field(default_factory=dict)  # the manifest's fields beside the agreement
    # Fields the manifest derives from the agreement (None when verification is off).
    from_agreement: Callable[[Agreement | None], Mapping[str, Any]] | None = None


# Writes the job's temporary outputs; returns the fields the manifest records beside the agreement,
# or (with ``runtime=MADE``) the outputs to verify.
Make = Callable[[Job], Mapping[str, Any] | Made | None]
MADE: Literal["made"] = "made"  # ``produce``'s runtime when ``make`` returns the outputs to verify (Made)
# A runtime over the made files: a Runtime class, or a function that also sets what the files cannot say.
RuntimeFactory = Callable[[Config, dict[str, Path]], Runtime]


class Converter:
    """One conversion target: ``run(ctx, force) -> list[Path]`` for `modelport convert`."""

    tool: ClassVar[str] = ""  # the manifest's tool name, unless ``produce`` is given another

    def unavailable_reason(self) -> str | None:
        """None when the toolchain is here, else why not (cheap: no toolchain import)."""
        return None

    def tool_version(self) -> str:
        raise NotImplementedError

    def require(self, ctx: StepContext) -> None:
        """Raise when this target cannot run here (a missing GPU is HardwareMissing: a skip, not a failure)."""
        reason = self.unavailable_reason()
        if reason:
            raise ToolchainMissing(reason)

    def run(self, ctx: StepContext, force: bool) -> list[Path]:
        self.require(ctx)  # before any search or calibration starts
        return self.convert(ctx, force)

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        raise NotImplementedError

    def produce(
        self,
        ctx: StepContext,
        force: bool,
        outputs: Mapping[str, str],
        make: Make,
        *,
        inputs: Mapping[str, Path],
        options: Mapping[str, Any],
        runtime: RuntimeFactory | Literal["made"] | None,
        kind: Kind = "float",
        gate: bool = True,
        tool: str | None = None,
        tool_version: str | None = None,
    ) -> list[Path]:
        """``outputs`` (role -> store path; the first is the model) made by ``make``, verified through
        ``runtime`` (None: nothing to verify, or the target verified its candidates itself), recorded.
        ``gate=False`` (a recovery variant) measures without holding the result to the floors.
        Returns the committed paths, in the order of ``outputs``."""
        self.require(ctx)
        store = ctx.store
        rels = dict(outputs)
        paths = [store.path(rel) for rel in rels.values()]
        if runtime is not None:
            inputs = {**inputs, "reference": store.path(reference_file(ctx.config))}
            if gate:
                options = {**options, **gate_options(ctx.config, kind)}
        with store.produce(
            list(rels.values()),
            inputs=inputs,
            tool=tool or self.tool,
            tool_version=tool_version or self.tool_version(),
            options=options,
            force=force,
        ) as job:
            if job.cached:
                return paths
            result = make(job)
            if runtime == MADE:
                if not isinstance(result, Made):
                    raise TypeError(f"{type(self).__name__}: with runtime=MADE, make returns Made")
                model = next(iter(rels.values()))  # below the floors the model is kept, not what it was judged by
                agreement = verify_made(ctx, result, kind, paths[0], {job.tmp(model): paths[0]}, gate)
                record = dict(result.record) | dict(result.from_agreement(agreement) if result.from_agreement else {})
            else:
                assert not isinstance(result, Made)  # only a MADE target's make returns outputs
                record = dict(result or {})
                agreement = None
                if runtime is not None:
                    opened = runtime(ctx.config, {role: job.tmp(rel) for role, rel in rels.items()})
                    agreement = verify(ctx, opened, kind, paths[0], gate=gate)
            if runtime is not None:
                record = {"agreement": agreement.model_dump(exclude={"per_image"}) if agreement else None} | record
            job.record(**record)
        return paths


def verify(ctx: StepContext, runtime: Runtime, kind: Kind, what: Path, gate: bool = True) -> Agreement | None:
    """Run ``runtime`` (pointing at the not-yet-committed files) and apply the accuracy floor.

    Raises AccuracyGateError below the floor, so the caller's artifact job commits nothing; the
    model is kept under its below-floor name (modelport.common.below_floor) for inspection.
    ``gate=False`` (a recovery variant, judged by the search) only measures.
    """
    if verification_off(ctx):
        return None
    with runtime:
        if ctx.config.detector is not None:
            outputs: np.ndarray | list[dict[str, np.ndarray]] = run_all_outputs(runtime, prepared_images(ctx), ctx.config.input)
        else:
            outputs = run_outputs(runtime, prepared_images(ctx), ctx.config.input)
    finals = {role: ctx.store.path(rel) for role, rel in type(runtime).artifacts.items()}
    kept = {made: finals[role] for role, made in runtime.files.items() if role in finals}
    return verify_made(ctx, Made(outputs, f"verified {runtime.display}"), kind, what, kept, gate)


def verify_made(
    ctx: StepContext, made: Made, kind: Kind, what: Path, kept: Mapping[Path, Path], gate: bool = True
) -> Agreement | None:
    """``made``'s outputs against the reference, held to the floors with ``gate``; below them the
    ``kept`` files ({made: final}) are kept under their below-floor names and AccuracyGateError raised."""
    if verification_off(ctx):
        return None
    try:
        if isinstance(made.outputs, np.ndarray):
            return check_outputs(ctx, made.outputs, kind, what, made.label, gate)
        return check_detections(ctx, made.outputs, kind, what, made.label, gate)
    except AccuracyGateError as e:
        keep_below_floor(ctx.store, dict(kept), e)
        raise
