"""`convert ncnn`: ONNX -> ncnn FP32 (ncnn/model.param + .bin) with pnnx, verified in ncnn.

pnnx comes from PyPI with --no-deps: its wheel ships a self-contained ``pnnx`` binary
beside the package's ``__init__.py``; only the console script and ``import pnnx``
need torch (5.7 GB with CUDA), and the binary's output is identical without it. pnnx
already fuses Conv+BatchNorm+activation, so no ncnnoptimize pass is needed here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from modelport.common.artifacts import Job
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import activity, step
from modelport.common.onnx_safety import check_onnx
from modelport.convert.base import Converter
from modelport.runtime.base import ONNX_MODEL

from .focus import rewrite_focus
from .format import read_param
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
            if len(model.inputs) != 1 or len(model.outputs) != 1:
                raise InputError(
                    f"pnnx made a model with inputs {model.inputs} and outputs {model.outputs}; expected one each", source
                )
            shutil.move(param, job.tmp(PARAM))
            shutil.move(binfile, job.tmp(BIN))
            return {
                "input_blob": model.inputs[0],
                "output_blob": model.outputs[0],
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
