"""What every conversion target does around its toolchain call, in one place.

A target says which toolchain it needs (``unavailable_reason``, ``tool_version``) and how
it makes its files (the ``make`` it hands to ``produce``). ``Converter`` owns the rest,
always in this order: the toolchain check (ToolchainMissing: the CLI records a failed
row with the reason), the artifact store's cache (nothing runs when the manifest matches
the inputs, tool and options), the files written under temporary names, verification
through the runtime that benches them against the reference (below the floors nothing
is committed, see verify.py), and the manifest record with the agreement.
Like Polygraphy's loaders, the toolchain call is the only part a backend writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from modelport.common.agreement import Kind, gate_options
from modelport.common.artifacts import Job
from modelport.common.config import Config
from modelport.common.context import StepContext
from modelport.common.errors import ToolchainMissing
from modelport.common.reference import reference_file
from modelport.runtime.base import Runtime

from .verify import verify

# Writes the job's temporary outputs; returns the fields the manifest records beside the agreement.
Make = Callable[[Job], Mapping[str, Any] | None]
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
        runtime: RuntimeFactory | None,
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
            record = dict(make(job) or {})
            if runtime is not None:
                made = runtime(ctx.config, {role: job.tmp(rel) for role, rel in rels.items()})
                agreement = verify(ctx, made, kind, paths[0], gate=gate)
                record = {"agreement": agreement.model_dump(exclude={"per_image"}) if agreement else None} | record
            job.record(**record)
        return paths
