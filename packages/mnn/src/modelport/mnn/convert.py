"""`convert mnn-fp32` / `mnn-w8` / `mnn-int8`: the pipeline's ONNX model as MNN models.

FP32: MNN's converter (MNNConvert) on onnx/model.onnx. W8: the same conversion with
``--weightQuantBits=8`` (HQQ, worker.py says why): weights stored as INT8 and expanded to float when the model
loads, so a quarter of the file with float compute and float speed, not an INT8 engine; its rounded weights
are held to the INT8 floors. INT8: that float model quantized by MNN's own
calibration (``nn.compress.train_quant``: weights and activations in INT8) over the common calibration
set (the convolution on the input kept float by default), through the recovery search (recover.py) when it misses the [accuracy] floors. Both run in a child
process (worker.py), so an abort inside MNN is this step's error line, not the end of the CLI.
Each is verified against the reference through the runtime that benches it.

The wheel's offline quantizer (``mnnquant``) is not used: it aborts with ``std::length_error`` on
MobileNetV2 for every feature method (KL, ADMM, EMA).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common.agreement import Kind
from modelport.common.artifacts import Job, file_inputs
from modelport.common.config import MnnConfig
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import run_logged, step
from modelport.common.onnx_safety import check_onnx
from modelport.convert.base import Converter
from modelport.runtime.base import ONNX_MODEL, Runtime

from .runtime import MnnFp32Runtime, MnnInt8Runtime, MnnW8Runtime
from .worker import SCALE_UPDATE

SOURCE = ONNX_MODEL
WORKER = "modelport.mnn.worker"


def run_worker(args: list[str], log: Path, description: str, model: Path) -> None:
    """``python -m modelport.mnn.worker ARGS`` with its output in ``log``; a failure (an abort too) as one error
    line naming ``model``."""
    proc = run_logged([sys.executable, "-m", WORKER, *args], log, description)
    if proc.returncode != 0:
        how = f"exit {proc.returncode}" if proc.returncode > 0 else f"killed by signal {-proc.returncode}"
        raise ModelportError(f"{description} failed ({how}): {proc.last_error} (log: {log})", model)


def convert_onnx(onnx: Path, out: Path, log: Path, weight_bits: int = 0, weight_quant: str = "hqq") -> None:
    """MNNConvert ``onnx`` to ``out``; with ``weight_bits`` (8) the weights are stored quantized by
    ``weight_quant`` (worker.WEIGHT_QUANT), the compute stays float."""
    args, what = ["convert", str(onnx), str(out)], "MNNConvert ONNX -> MNN"
    if weight_bits:
        args += ["--weight-bits", str(weight_bits), "--weight-quant", weight_quant]
        what += f" ({weight_bits}-bit weights, {weight_quant})"
    run_worker(args, log, what, onnx)


def quantize(
    float_model: Path,
    out: Path,
    tensors: np.ndarray,
    workdir: Path,
    log: Path,
    scale_update: str,
    feature_scale: str,
    float_input: bool = False,
) -> None:
    """Full INT8 of ``float_model`` calibrated on ``tensors`` ([n, 1, C, H, W] float32, the model's layout);
    ``float_input``: all but the convolution on the input."""
    calib = workdir / "calibration.npy"
    np.save(calib, tensors)
    args = ["quantize", str(float_model), str(out), str(calib), "--scale-update", scale_update, "--feature-scale", feature_scale]
    args += ["--float-input"] if float_input else []
    what = f"{scale_update}{FLOAT_INPUT if float_input else ''}, {feature_scale}"
    run_worker(args, log, f"MNN INT8 calibration ({what}) on {len(tensors)} images", float_model)


# A method is SCALE_UPDATE[+float_input]: +float_input keeps the convolution on the raw input float (the rest INT8).
# MobileNetV2, the 50 shipped calibration crops (top-1 / cosine min / mean vs the source): maximum+float_input
# 100% / 0.958 / 0.991 (meets the INT8 floors), maximum 100% / 0.794 / 0.976, moving_average 67% / 0.43 / 0.81
# (with +float_input 0.42); per_channel activation scales change nothing; a float tail from the last block 0.811.
FLOAT_INPUT = "+float_input"
METHODS = ("maximum+float_input", "maximum", "moving_average+float_input", "moving_average")


def parse_method(method: str) -> tuple[str, bool]:
    """``maximum+float_input`` -> ("maximum", True); anything not in METHODS is refused in one line."""
    if method not in METHODS:
        raise InputError(f"MNN INT8 method {method!r} is not one of {', '.join(METHODS)}")
    scale_update, plus, _ = method.partition("+")
    assert scale_update in SCALE_UPDATE
    return scale_update, bool(plus)


def configured_method(c: MnnConfig) -> str:
    """The [mnn] config's INT8 method: scale_update, with float_input."""
    return c.scale_update + (FLOAT_INPUT if c.float_input else "")


class Target(Converter):
    """One MNN precision as a conversion target."""

    def __init__(self, runtime: type[Runtime], kind: Kind, weight_bits: int = 0, weight_quant: str = "hqq"):
        self.runtime, self.kind = runtime, kind
        self.weight_bits, self.weight_quant = weight_bits, weight_quant

    def unavailable_reason(self) -> str | None:
        return None if importlib.util.find_spec("MNN") else "python module MNN not installed in this env"

    def tool_version(self) -> str:
        return f"MNN {version('MNN')}"

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        return self.build(ctx, force)  # INT8: the configured model; `convert` runs the search over it (recover.py)

    def build(
        self,
        ctx: StepContext,
        force: bool,
        files: Mapping[str, str] | None = None,
        method: str | None = None,
        gate: bool = True,
    ) -> list[Path]:
        """One model at ``files`` (role -> path; default this target's): FP32, or INT8 by ``method`` (METHODS;
        default the config's); verified (with ``gate``, held to the floors)."""
        cfg, store = ctx.config, ctx.store
        files = dict(files or self.runtime.artifacts)
        rel = files["model"]
        source = store.path(SOURCE)
        check_onnx(source)
        inputs = {"onnx": source}
        options: dict[str, Any] = {"format": "ONNX", "threads": cfg.mnn.threads, "precision": cfg.mnn.precision}
        if self.weight_bits:
            options |= {"weight_bits": self.weight_bits, "weight_quant": self.weight_quant}
        log = store.path(f"mnn/logs/{Path(rel).stem}.log")
        calib = None
        if self.kind == "int8" and not self.weight_bits:  # INT8 activations too: calibrated
            method = method or configured_method(cfg.mnn)
            scale_update, float_input = parse_method(method)
            calib = ctx.calibration
            calib.validate()  # every calibration image decodes before anything is written
            inputs |= file_inputs("calibration", calib.paths)
            options |= {"method": method, "feature_scale": cfg.mnn.feature_scale, "calibration_images": len(calib)}

        def make(job: Job) -> dict[str, object]:
            out = job.tmp(rel)
            if calib is None:
                how = f"{self.weight_bits}-bit {self.weight_quant} weights, fp32 compute" if self.weight_bits else "fp32"
                step(f"MNNConvert {SOURCE} -> {rel} ({how})")
                convert_onnx(source, out, log, self.weight_bits, self.weight_quant)
                return {}
            step(f"MNNConvert + nn.compress.train_quant {SOURCE} -> {rel}: INT8, {method}, {len(calib)} calibration images")
            float_model = job.workdir / "float.mnn"
            convert_onnx(source, float_model, log.with_suffix(".convert.log"))
            tensors = np.stack(list(calib.tensors(self.runtime.input_layout, self.runtime.input_dtype)))
            quantize(float_model, out, tensors, job.workdir, log, scale_update, cfg.mnn.feature_scale, float_input)
            return {"calibration": calib.signature()}

        return self.produce(
            ctx, force, files, make, inputs=inputs, options=options, runtime=self.runtime, kind=self.kind, gate=gate, tool="mnn"
        )


FP32 = Target(MnnFp32Runtime, "float")
W8 = Target(MnnW8Runtime, "int8", weight_bits=8)  # rounded weights: INT8 floors (float ones: every weight kept)
INT8 = Target(MnnInt8Runtime, "int8")
