"""`convert ncnn`: ONNX -> ncnn FP32 (ncnn/model.param + .bin) with pnnx, verified in ncnn.

pnnx comes from PyPI with --no-deps: its wheel ships a self-contained ``pnnx`` binary
beside the package's ``__init__.py``; only the console script and ``import pnnx``
need torch (5.7 GB with CUDA), and the binary's output is identical without it. pnnx
already fuses Conv+BatchNorm+activation, so no ncnnoptimize pass is needed here.

pnnx names a model's outputs ``out0``, ``out1``, ... and the runtime returns blob ``out<k>`` as the
source's k-th output. A detector has several, of which two may share a size (RFB-320's scores and boxes
do not, but a model's could): so each blob is matched to the source output it reproduces on the eval
photos (the reference, made by the source's own runtime), renamed when pnnx's order differs, and the
per-output difference recorded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from modelport.common.artifacts import Job
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import activity, step
from modelport.common.onnx_safety import check_onnx
from modelport.common.preprocess import to_tensor
from modelport.common.reference import load_detect_reference
from modelport.convert.base import Converter
from modelport.runtime.base import ONNX_MODEL, source_output_names
from modelport.runtime.run import prepared_images

from .focus import rewrite_focus
from .format import Model, read_param, write_param
from .runtime import NcnnRuntime

SOURCE = ONNX_MODEL
PARAM, BIN = NcnnRuntime.artifacts["param"], NcnnRuntime.artifacts["bin"]


def pnnx_binary() -> Path | None:
    """The binary inside the pnnx wheel (found without importing pnnx, which imports torch)."""
    spec = importlib.util.find_spec("pnnx")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        exe = Path(folder) / "pnnx"
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    return None


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def pnnx_ready(onnx_path: Path, workdir: Path, input_shape: tuple[int, ...]) -> tuple[Path, int]:
    """The model pnnx should read: ``onnx_path`` itself, or its rewrite in ``workdir`` if it has Focus blocks."""
    import onnx

    model = onnx.load(str(onnx_path))
    count = rewrite_focus(model, input_shape)
    if not count:
        return onnx_path, 0
    out = workdir / "focus-rewritten.onnx"
    onnx.save(model, str(out))
    return out, count


def run_pnnx(onnx: Path, workdir: Path, input_shape: tuple[int, ...], fp16: bool) -> tuple[Path, Path]:
    """Run pnnx in ``workdir`` (it writes seven files next to its input); returns the ncnn pair."""
    src = workdir / "model.onnx"
    src.symlink_to(onnx.resolve())
    shape = "[" + ",".join(map(str, input_shape)) + "]"
    cmd = [str(pnnx_binary()), src.name, f"inputshape={shape}", f"fp16={int(fp16)}", "optlevel=2"]
    with activity("pnnx conversion"):
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    param, binfile = workdir / "model.ncnn.param", workdir / "model.ncnn.bin"
    if proc.returncode != 0 or not param.is_file() or not binfile.is_file():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ModelportError(f"pnnx failed (exit {proc.returncode}): {tail}", onnx)
    return param, binfile


def match_outputs(ctx: StepContext, model: Model, param: Path, binfile: Path) -> dict[str, object]:
    """The model pnnx made (``param``, ``binfile``) run on the eval photos and its outputs named after the
    reference's (assign_outputs)."""
    cfg = ctx.config
    names = source_output_names(cfg)  # the caller counted them: several
    reference = load_detect_reference(ctx.store, ctx.eval_images, cfg.preprocessing)
    missing = [n for n in names if f"output/{n}" not in reference]
    if missing:
        raise InputError(f"the reference has no output {missing}: rerun `modelport convert reference`", ctx.store.path(PARAM))
    with NcnnRuntime(cfg, {"param": param, "bin": binfile}) as rt:
        got = [rt.outputs(to_tensor(arr, cfg.input, "NHWC", "uint8")) for arr in prepared_images(ctx)]
    return assign_outputs(model, param, got, {n: reference[f"output/{n}"] for n in names}, cfg.source)


def assign_outputs(
    model: Model, param: Path, got: list[dict[str, np.ndarray]], want: dict[str, np.ndarray], source: Path | None
) -> dict[str, object]:
    """Name each output blob ``out<k>`` after the k-th of ``want`` (source output -> its values stacked over the
    photos) that it reproduces in ``got`` (per photo, blob -> values), rewriting ``param`` when pnnx's order
    differs; returns the blob of each source output and their largest absolute difference."""
    names, blobs = list(want), list(got[0])
    diff = {(b, n): _max_diff([g[b] for g in got], want[n]) for b in blobs for n in names}
    chosen = {n: min((diff[b, n], b) for b in blobs)[1] for n in names}
    if len(set(chosen.values())) != len(names) or any(not np.isfinite(diff[b, n]) for n, b in chosen.items()):
        found = ", ".join(f"{b} {list(got[0][b].shape)}" for b in blobs)
        raise ModelportError(f"pnnx's outputs ({found}) do not each reproduce one of the source's {names}", source)
    rename = {b: f"out{k}" for k, b in enumerate(chosen[n] for n in names)}
    if any(old != new for old, new in rename.items()):
        for la in model.layers:
            la.tops = [rename.get(t, t) for t in la.tops]
        write_param(model, param)
    return {
        "output_blobs": {n: rename[chosen[n]] for n in names},
        "outputs_max_abs_diff": {n: float(f"{diff[chosen[n], n]:.3g}") for n in names},
    }


def _max_diff(got: list[np.ndarray], want: np.ndarray) -> float:
    """Largest |got - want| over the photos, or inf when the sizes differ (not this output)."""
    if len(got) != len(want) or any(g.size != w.size for g, w in zip(got, want, strict=True)):
        return float("inf")
    return max(float(np.abs(g.reshape(-1) - w.reshape(-1)).max(initial=0.0)) for g, w in zip(got, want, strict=True))


class Pnnx(Converter):
    tool = "pnnx"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("ncnn") is None:
            return "python module ncnn not installed (envs/ncnn)"
        if pnnx_binary() is None:
            return "pnnx binary not found (pip install --no-deps -r envs/ncnn/requirements-nodeps.txt)"
        return None

    def tool_version(self) -> str:
        return f"pnnx {_version('pnnx')}, ncnn {_version('ncnn')}"

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        cfg, store = ctx.config, ctx.store
        if cfg.input.layout != "NCHW":
            raise InputError('ncnn needs an NCHW ONNX model ([input] layout = "NCHW")', cfg.source)
        source = store.path(SOURCE)
        check_onnx(source)  # pnnx would follow external-data paths anywhere: only the model's own folder
        shape = cfg.input.shape("NCHW")

        def make(job: Job) -> dict[str, object]:
            step(f"pnnx {SOURCE} -> {PARAM} ({'fp16' if cfg.ncnn.fp16_weights else 'fp32'} weights)")
            ready, focus = pnnx_ready(source, job.workdir, shape)
            param, binfile = run_pnnx(ready, job.workdir, shape, cfg.ncnn.fp16_weights)
            model = read_param(param)
            expected = max(len(cfg.contract.outputs), 1) if cfg.contract is not None else 1
            if len(model.inputs) != 1 or len(model.outputs) != expected:
                raise InputError(
                    f"pnnx made a model with inputs {model.inputs} and outputs {model.outputs}; "
                    f"expected one input and {expected} output{'s' if expected > 1 else ''}",
                    source,
                )
            shutil.move(param, job.tmp(PARAM))
            shutil.move(binfile, job.tmp(BIN))
            record: dict[str, object] = {"input_blob": model.inputs[0], "output_blob": model.outputs[0]}
            if expected > 1:
                record = {"input_blob": model.inputs[0]} | match_outputs(ctx, model, job.tmp(PARAM), job.tmp(BIN))
            return record | {
                "focus_rewrites": focus,
                "layers": {t: sum(la.type == t for la in model.layers) for t in sorted({la.type for la in model.layers})},
            }

        return self.produce(
            ctx,
            force,
            {"param": PARAM, "bin": BIN},
            make,
            inputs={"onnx": source},
            options={"inputshape": list(shape), "fp16_weights": cfg.ncnn.fp16_weights, "optlevel": 2},
            runtime=NcnnRuntime,
        )


TARGET = Pnnx()
