"""`convert ncnn-int8`: ncnn FP32 -> native ncnn INT8 model + calibration table.

Outputs ncnn/model-int8.param, ncnn/model-int8.bin and ncnn/model.table in the
formats ncnn2int8 / ncnn2table use, so the ncnn runtime loads the model like any
int8 model. Two implementations ([ncnn] tools / --ncnn-tools):

- builtin: activation statistics from the calibration images run through the ncnn
  runtime (FP32 model, each quantized layer's input blob extracted), thresholds by
  min-max, KL or ACIQ, per-output-channel weight scales, int8 weights + bias
  correction, requantize fusion. Needs nothing beyond the ncnn wheel.
- official: ncnnoptimize, ncnn2table, ncnn2int8 from PATH (the ncnn Docker image).

Everything is validated first (every calibration image decoded) and written through
the artifact store, so a bad image or a failed gate leaves no model behind.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from rich.markup import escape

from modelport.common import __version__
from modelport.common.artifacts import Job, file_inputs, sha256_file
from modelport.common.context import StepContext
from modelport.common.errors import ToolchainMissing
from modelport.common.log import console, step
from modelport.convert.base import Converter

from . import official as ncnn_official
from .bias import CORRECTIONS, FULL_IMAGES, correct_files, split_method
from .convert import BIN, PARAM
from .convert import TARGET as PNNX
from .eq import EQ, EQ_IMAGES, eq_scales
from .format import Model, load, read_param, write_bin, write_param
from .quantize import quantize_model
from .runtime import NcnnInt8Runtime, NcnnRuntime
from .table import METHODS, BlobStats, Table, calibrate

INT8_PARAM, INT8_BIN = NcnnInt8Runtime.artifacts["param"], NcnnInt8Runtime.artifacts["bin"]
TABLE = "ncnn/model.table"


def choose_tools(setting: str, method: str) -> tuple[str, str]:
    """(builtin|official, why) for [ncnn] tools = auto|official|builtin."""
    if setting != "auto":
        return setting, f"[ncnn] tools = {setting}"
    missing = ncnn_official.missing_tools()
    if missing:
        return "builtin", f"official tools not on PATH ({', '.join(missing)})"
    if method not in ncnn_official.METHODS:
        return "builtin", f"ncnn2table has no {method} method"
    return "official", "official tools on PATH"


CALIBRATIONS = (*METHODS, EQ)  # table.py's thresholds, and eq.py's search
OUTPUTS = {"param": INT8_PARAM, "bin": INT8_BIN, "table": TABLE}


class NcnnInt8(Converter):
    """Makes one INT8 model (``quantize``); `convert ncnn-int8` is the INT8 search over it (recover.py)."""

    def unavailable_reason(self) -> str | None:
        return None if importlib.util.find_spec("ncnn") else "python module ncnn not installed (envs/ncnn)"

    def tool_version(self) -> str:
        missing = ncnn_official.missing_tools()
        official = f"official tools {ncnn_official.tools_version()}" if not missing else "official tools not on PATH"
        return f"builtin int8 (modelport {__version__}, {PNNX.tool_version()}); {official}"

    def quantize(
        self, ctx: StepContext, force: bool, outputs: dict[str, str], method: str, float_layers: list[str], gate: bool = True
    ) -> list[Path]:
        """INT8 model ``outputs`` (param, bin, table) calibrated with ``method`` (``kl``, or with a bias correction
        ``kl+bc``: bias.py), ``float_layers`` (ncnn layer names) kept in float; verified, and with ``gate`` held
        to the floors."""
        cfg, store = ctx.config, ctx.store
        c = cfg.ncnn
        method, correction = split_method(method, CALIBRATIONS)
        calibration = ctx.calibration  # a missing list entry or an empty folder fails here ...
        calibration.validate()  # ... and an unreadable image here: before anything is written
        tools, why = choose_tools(c.tools, method)
        if tools == "official" and ncnn_official.missing_tools():
            raise ToolchainMissing(f"[ncnn] tools = official, but not on PATH: {', '.join(ncnn_official.missing_tools())}")
        if tools == "official" and method not in ncnn_official.METHODS:
            raise ToolchainMissing(
                f"ncnn2table has no {method} method ({', '.join(ncnn_official.METHODS)} only): "
                "set [ncnn] calibration_method, or tools = builtin"
            )
        inputs = {"param": store.path(PARAM), "bin": store.path(BIN)} | file_inputs("calibration", calibration.paths)
        options = {"tools": tools, "method": method, "calibration_images": len(calibration), "input": cfg.input.signature}
        options["int8_depthwise"] = c.int8_depthwise
        if float_layers:
            options["float_layers"] = sorted(float_layers)
        if tools == "builtin":
            options |= {"bias_correction": c.bias_correction, "requantize": c.requantize}
        if correction:
            options["measured_bias_correction"] = correction
            if correction == "fbc":
                options["bias_correction_images"] = min(len(calibration), FULL_IMAGES)
        rel_param, rel_bin, rel_table = outputs["param"], outputs["bin"], outputs["table"]

        def make(job: Job) -> dict[str, object]:
            step(
                escape(
                    f"ncnn int8 ({tools}: {why}), {method} on {len(calibration)} calibration images"
                    + (f", {len(float_layers)} layers in float" if float_layers else "")
                    + (f", {CORRECTIONS[correction]}" if correction else "")
                    + f" -> {rel_param}"
                )
            )
            keep_float = set(float_layers) | (set() if c.int8_depthwise else depthwise_layers(read_param(store.path(PARAM))))
            if tools == "official":
                ncnn_official.make_int8(
                    store.path(PARAM),
                    store.path(BIN),
                    calibration,
                    method,
                    c.threads,
                    job.workdir,
                    job.tmp(rel_param),
                    job.tmp(rel_bin),
                    job.tmp(rel_table),
                    keep_float=keep_float or None,
                )
                layers = {}
            else:
                layers = builtin_int8(ctx, method, keep_float, job.tmp(rel_param), job.tmp(rel_bin), job.tmp(rel_table))
            corrected = {}
            if correction:
                images = calibration.limited(FULL_IMAGES) if correction == "fbc" else calibration
                corrected = correct_files(
                    cfg,
                    (store.path(PARAM), store.path(BIN)),
                    (job.tmp(rel_param), job.tmp(rel_bin)),
                    images.prepared,
                    full=correction == "fbc",
                )
                console.print(
                    f"   {corrected['mode']} bias correction: {corrected['layers']} int8 layers on {corrected['images']} "
                    f"images, largest shift {corrected['max_shift']:.3g}"
                )
            ratio = job.tmp(rel_bin).stat().st_size / store.path(BIN).stat().st_size
            console.print(
                f"   {rel_bin}: {ratio:.1%} of the FP32 .bin"
                + (f"; {len(layers['quantized'])} int8 layers, {len(layers['requantized'])} requantize to int8" if layers else "")
            )
            return {
                "tools_reason": why,
                "size_ratio": round(ratio, 4),
                "calibration": calibration.signature(),
                "int8_layers": len(layers.get("quantized", [])),
                "requantized_layers": len(layers.get("requantized", [])),
                **({"measured_bias_correction": corrected} if corrected else {}),
            }

        return self.produce(
            ctx,
            force,
            {"param": rel_param, "bin": rel_bin, "table": rel_table},
            make,
            inputs=inputs,
            options=options,
            runtime=NcnnInt8Runtime,
            kind="int8",
            gate=gate,
            tool=f"ncnn-int8-{tools}",
            tool_version=self.tool_version() if tools == "builtin" else f"ncnn tools {ncnn_official.tools_version()}",
        )


TARGET = NcnnInt8()


def depthwise_layers(model: Model) -> set[str]:
    return {la.name for la in model.layers if la.type == "ConvolutionDepthWise"}


# Calibration statistics by (FP32 model, calibration images, preprocessing, method): the search's variants of
# one method differ only in the table entries kept in float, and calibrating a detector the size of YOLOX-nano
# (every quantized layer's input blob, on every calibration image, twice for KL) is minutes of the budget.
_CALIBRATED: dict[tuple[str, ...], tuple[dict[str, float], dict[str, BlobStats]]] = {}


def calibrated(ctx: StepContext, model: Model, method: str) -> tuple[dict[str, float], dict[str, BlobStats]]:
    """``calibrate``'s scales and statistics for the FP32 model in the store, computed once per process."""
    cfg, store = ctx.config, ctx.store
    calibration = ctx.calibration
    files = [store.path(PARAM), store.path(BIN), *calibration.paths]  # by content: a file rewritten in place is new
    key = (cfg.preprocessing, method, *(f"{f}:{sha256_file(f)}" for f in files))
    if key not in _CALIBRATED:
        # Statistics come from ncnn itself running the FP32 model on the uint8 images it will see.
        with NcnnRuntime(cfg, {"param": store.path(PARAM), "bin": store.path(BIN)}) as fp32:

            def run_blobs(image: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
                return fp32.blobs(image[None], names)

            scales, stats = calibrate(model, run_blobs, calibration.prepared, "minmax" if method == EQ else method)
        if method == EQ:  # searched from min-max's ranges
            absmax = {n: st.absmax for n, st in stats.items()}
            skip = () if cfg.ncnn.int8_depthwise else ("ConvolutionDepthWise",)
            scales |= eq_scales(cfg, model, absmax, calibration.limited(EQ_IMAGES).prepared, skip)
        _CALIBRATED[key] = scales, stats
    return _CALIBRATED[key]


def builtin_int8(
    ctx: StepContext, method: str, keep_float: set[str], out_param: Path, out_bin: Path, out_table: Path
) -> dict[str, list[str]]:
    cfg, store = ctx.config, ctx.store
    c = cfg.ncnn
    model = load(store.path(PARAM), store.path(BIN))
    scales, stats = calibrated(ctx, model, method)
    table = Table.build(model, scales)
    table.disabled |= keep_float & set(table.weights)
    table.write(out_table)
    means = {name: st.channel_mean for name, st in stats.items()} if c.bias_correction else None
    layers = quantize_model(model, table, requantize=c.requantize, input_means=means)
    write_param(model, out_param)
    write_bin(model, out_bin)
    return layers
