"""Per-layer error of each INT8 model against its FP32 twin -> ``analysis/<backend>.json`` (see common/layer_analysis.py).

One ``Target`` per INT8 backend, in its backend package and named by its descriptor's ``analysis``
(``modelport.ort.analyze:TARGET`` ...); ``rknn-int8`` is analysed by the rknn package (its env has
rknn-toolkit2), under the same command name.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

from modelport.common import layer_analysis
from modelport.common.artifacts import ArtifactStore, file_inputs
from modelport.common.backends import backends
from modelport.common.below_floor import below_floor_name
from modelport.common.context import StepContext
from modelport.common.errors import ToolchainMissing
from modelport.common.log import step, warn
from modelport.common.registry import installed, load


@dataclass(frozen=True)
class Target:
    key: str
    module: str  # toolchain import name
    files: dict[str, str]  # role -> artifact of the INT8 model
    twin: dict[str, str]  # role -> artifact of the FP32 twin
    analyze: Callable[..., dict[str, Any]]  # (ctx, *files, workdir) -> document

    def unavailable_reason(self) -> str | None:
        return None if importlib.util.find_spec(self.module) else f"python module {self.module} not installed in this env"

    def tool_version(self) -> str:
        try:
            return f"{self.module} {version(self.module)}"
        except PackageNotFoundError:  # tensorrt installs as tensorrt-cu12 and friends
            return f"{self.module} {getattr(importlib.import_module(self.module), '__version__', '?')}"


@cache
def targets() -> dict[str, Target]:
    """The analyses this env can start: every descriptor's ``analysis`` whose package is installed here."""
    named = {k: b.analysis for k, b in backends().items() if b.analysis}
    loaded = {k: load(named, k, "analysis") for k, where in named.items() if installed(where)}
    return {k: t for k, t in loaded.items() if isinstance(t, Target)}  # rknn-int8's runs through the rknn package's own command


def int8_files(store: ArtifactStore, target: Target) -> dict[str, Path]:
    """The backend's INT8 model; when the step kept it only under its below-floor name (it missed the
    floors), that one: why an INT8 model missed its floors is what the analysis is for."""
    files = {role: store.path(rel) for role, rel in target.files.items()}
    if all(p.is_file() for p in files.values()):
        return files
    below = {role: below_floor_name(p) for role, p in files.items()}
    if all(p.is_file() for p in below.values()):
        warn(
            f"{target.key}: no INT8 model met the floors; analysing the one kept below them ({', '.join(store.rel(p) for p in below.values())})"
        )
        return below
    return files


def run(
    ctx: StepContext, key: str, files: dict[str, Path] | None = None, out: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Analyse ``files`` (default: the backend's INT8 model) into ``out`` (default ``analysis/<key>.json``), cached
    by manifest on both models, the eval images and the preprocessing."""
    target = targets()[key]
    reason = target.unavailable_reason()
    if reason:
        raise ToolchainMissing(f"{key}: {reason}")
    store = ctx.store
    files = files or int8_files(store, target)
    out = out or layer_analysis.analysis_path(key)
    inputs = {
        **files,
        **{f"twin:{r}": store.path(rel) for r, rel in target.twin.items()},
        **file_inputs("image", ctx.eval_images),
    }
    with store.produce(
        out,
        inputs=inputs,
        tool=f"modelport analyze {key}",
        tool_version=target.tool_version(),
        options={"input": ctx.config.input.signature},
        force=force or ctx.force,
    ) as job:
        if not job.cached:
            step(
                f"analyze {key}: {', '.join(store.rel(p) for p in files.values())} vs its FP32 twin, "
                f"{len(ctx.eval_images)} eval images -> {out}"
            )
            data = target.analyze(ctx, *files.values(), job.workdir)
            job.tmp().write_text(json.dumps(data, indent=1) + "\n")
            job.record(layers=len(data["layers"]), mapping={k: v for k, v in data["mapping"].items() if not isinstance(v, list)})
    data = json.loads(store.path(out).read_text())
    layer_analysis.print_summary(data)
    return cast(dict[str, Any], data)
