"""`convert openvino-fp32` / `openvino-int8`: the pipeline's ONNX model as OpenVINO IR.

FP32: ``ov.convert_model`` of onnx/model.onnx, saved with ``compress_to_fp16=False`` (fp32 weights).
INT8: NNCF post-training quantization of that model over the common calibration set, through
the recovery search (recover.py) when it misses the [accuracy] floors.
Each is verified against the reference through the runtime that benches it.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from modelport.common.agreement import Kind
from modelport.common.artifacts import Job, file_inputs
from modelport.common.calibration import CalibrationSet
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import activity, captured, step
from modelport.common.onnx_safety import check_onnx
from modelport.convert.base import Converter
from modelport.runtime.base import ONNX_MODEL, Runtime

from .runtime import OpenvinoFp32Runtime, OpenvinoInt8Runtime

SOURCE = ONNX_MODEL


def read_onnx(path: Path) -> Any:
    import openvino as ov

    return ov.convert_model(str(path))


def save(model: Any, job: Job, xml: str, bin_: str) -> None:
    """Save the IR in the job's workdir, then move both files onto the job's temp outputs."""
    import openvino as ov

    out = job.workdir / "model.xml"
    ov.save_model(model, str(out), compress_to_fp16=False)
    shutil.move(out, job.tmp(xml))
    shutil.move(out.with_suffix(".bin"), job.tmp(bin_))


PRESETS = ("performance", "mixed")  # NNCF's: symmetric activations, or asymmetric (ReLU6 outputs are one-sided)
# What NNCF offers on top of a preset, each keeping every layer INT8 (a method is PRESET[+OPTION...]):
OPTIONS = {
    "fbc": "full bias correction (fast_bias_correction=False): corrects each layer on the quantized model's own inputs",
    "ca": "channel alignment (disable_channel_alignment=False): equalizes conv pairs' ranges before quantizing",
    "minmax": "activation ranges from the min/max of all images (NNCF's default: the mean of per-image min/max)",
    "quantile": "activation ranges from the mean of per-image quantiles (clips rare outliers)",
    "nobc": "no bias correction at all (disable_bias_correction=True)",
}
# SmoothQuant is not offered: NNCF runs it only with model_type=TRANSFORMER, whose patterns are for transformers.
# The search's order, best first as measured on MobileNetV2 over the 12 shipped + 23 harder photos (top-1 /
# cosine min / mean): performance 91% / 0.558 / 0.958, mixed 89% / 0.669 / 0.961, mixed+fbc 86% / 0.870 /
# 0.978, mixed+minmax 89% / 0.681 / 0.962. +quantile is known but not searched: 51% / 0.111 / 0.684.
METHODS = (
    "performance",
    "mixed+fbc",
    "mixed",
    "performance+fbc",
    "mixed+minmax+fbc",
    "mixed+minmax",
    "performance+minmax",
)
# +ca is known but not searched: NNCF 3.4.0's ChannelAlignment fails on MobileNetV2 (KeyError in its astype).


def parse_method(method: str) -> tuple[str, list[str]]:
    """``mixed+fbc`` -> ("mixed", ["fbc"]); a preset or option NNCF does not have is refused in one line."""
    preset, *opts = method.split("+")
    problems = [f"preset {preset!r} is not one of NNCF's ({', '.join(PRESETS)})"] if preset not in PRESETS else []
    unknown = [o for o in opts if o not in OPTIONS]
    if unknown:
        problems.append(f"unknown option {', '.join('+' + o for o in unknown)} (known: {', '.join('+' + o for o in OPTIONS)})")
    if "minmax" in opts and "quantile" in opts:
        problems.append("+minmax and +quantile are two range estimators: pick one")
    if "nobc" in opts and "fbc" in opts:
        problems.append("+nobc and +fbc contradict each other")
    if problems:
        raise InputError(f"OpenVINO INT8 method {method!r}: {'; '.join(problems)}")
    return preset, opts


def ov_ops(model: Any, source: Path, layers: list[str]) -> list[str]:
    """ONNX layer names (analysis/*.json) -> the friendly names of the OpenVINO ops ``convert_model`` made
    of their nodes (a Conv node becomes ``<name>/WithoutBiases`` + ``<name>``); other names pass as they are."""
    if not layers:
        return []
    from modelport.common import onnx_layers

    graph = onnx_layers.load(source)
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    out = []
    for layer in layers:
        la = graph.by_node(layer)
        nodes = la.nodes if la is not None else [layer]
        out += [n for n in names if any(n == node or n.startswith(node + "/") for node in nodes)] or [layer]
    return list(dict.fromkeys(out))


QUANTIZERS = ("FakeQuantize", "FakeConvert")
# Ops the CPU plugin moves a quantizer across unchanged: NNCF may put a FakeQuantize before a Reshape it added.
SHAPE_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Transpose")


def quantized_layers(xml: Path, source: Path) -> set[str]:
    """The ONNX layers (of ``source``) that INT8 IR ``xml`` quantizes: an op ``convert_model`` made of one of
    the layer's nodes (named as ``ov_ops`` finds them) reads an input through a FakeQuantize/FakeConvert."""
    import openvino as ov
    from modelport.common import onnx_layers

    def quantized_input(op: Any) -> bool:
        for port in op.inputs():
            src = port.get_source_output().get_node()
            while src.get_type_name() in SHAPE_OPS:
                src = src.input(0).get_source_output().get_node()
            if src.get_type_name() in QUANTIZERS:
                return True
        return False

    model = ov.Core().read_model(str(xml))
    ops = [
        op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() not in QUANTIZERS and quantized_input(op)
    ]
    graph = onnx_layers.load(source)
    return {la.node for la in graph.layers if any(n == node or n.startswith(node + "/") for n in ops for node in la.nodes)}


def nncf_quantize(model: Any, calibration: CalibrationSet, method: str = "performance", ignored: Sequence[str] = ()) -> Any:
    """NNCF post-training INT8 over the calibration tensors (NCHW float32, batch 1) with ``method`` (a preset and
    its options, ``parse_method``); ``ignored``: op names kept in float."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    preset, opts = parse_method(method)
    tensors = list(calibration.tensors("NCHW", "float32"))
    scope = nncf.IgnoredScope(names=list(ignored), validate=False) if ignored else None
    advanced = AdvancedQuantizationParameters(
        disable_channel_alignment="ca" not in opts,
        disable_bias_correction="nobc" in opts,
        **(
            {"activations_range_estimator_params": RangeEstimatorParametersSet.MINMAX}
            if "minmax" in opts
            else {"activations_range_estimator_params": RangeEstimatorParametersSet.MEAN_QUANTILE}
            if "quantile" in opts
            else {}
        ),
    )
    return nncf.quantize(
        model,
        nncf.Dataset(tensors),
        preset=nncf.QuantizationPreset(preset),
        subset_size=len(tensors),
        fast_bias_correction="fbc" not in opts,
        advanced_parameters=advanced,
        **({"ignored_scope": scope} if scope else {}),
    )


class Target(Converter):
    """One OpenVINO IR precision as a conversion target."""

    def __init__(self, runtime: type[Runtime], kind: Kind):
        self.runtime, self.kind = runtime, kind
        self.xml, self.bin = runtime.artifacts["model"], runtime.artifacts["weights"]

    def unavailable_reason(self) -> str | None:
        missing = [m for m in ("openvino",) + (("nncf",) if self.kind == "int8" else ()) if importlib.util.find_spec(m) is None]
        return f"python module {', '.join(missing)} not installed in this env" if missing else None

    def tool_version(self) -> str:
        return f"openvino {version('openvino')}" + (f", nncf {version('nncf')}" if self.kind == "int8" else "")

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        return self.build(ctx, force)  # INT8: the configured model; `convert` runs the search over it (recover.py)

    def build(
        self,
        ctx: StepContext,
        force: bool,
        files: dict[str, str] | None = None,
        preset: str | None = None,
        float_layers: list[str] | None = None,
        gate: bool = True,
    ) -> list[Path]:
        """One IR at ``files`` (role -> path; default this target's): FP32, or NNCF INT8 with ``preset`` and
        ``float_layers`` (ONNX layer names) kept in float; verified (with ``gate``, held to the floors)."""
        cfg, store = ctx.config, ctx.store
        files = files or dict(self.runtime.artifacts)
        xml, bin_ = files["model"], files["weights"]
        source = store.path(SOURCE)
        check_onnx(source)
        inputs = {"onnx": source}
        options = {"compress_to_fp16": False, "device": "CPU", "inference_precision": cfg.openvino.inference_precision}
        calib = None
        if self.kind == "int8":
            preset = preset or cfg.openvino.preset
            parse_method(preset)  # a method NNCF lacks: one line, before anything is written
            calib = ctx.calibration
            calib.validate()  # every calibration image decodes before anything is written
            inputs |= file_inputs("calibration", calib.paths)
            options |= {
                "preset": preset,
                "subset_size": len(calib),
                "calibration_images": len(calib),
                "float_layers": list(float_layers or []),
            }

        def make(job: Job) -> dict[str, object]:
            model = read_onnx(source)
            if calib is not None and preset is not None:
                ignored = ov_ops(model, source, list(float_layers or []))
                step(
                    f"nncf.quantize {SOURCE} -> {xml}: INT8, {preset} (preset[+options]), {len(calib)} calibration images"
                    + (f", {len(float_layers)} layers ({len(ignored)} ops) in float" if float_layers else "")
                )
                # NNCF's progress bars and INFO lines: the step's log, not the terminal
                log = store.path(f"openvino/logs/{Path(xml).stem}.log")
                log.unlink(missing_ok=True)
                with activity(f"NNCF calibration + quantization on {len(calib)} images"), captured(log):
                    try:
                        model = nncf_quantize(model, calib, preset, ignored)
                    except (InputError, KeyboardInterrupt):
                        raise
                    except Exception as e:  # NNCF's own failure on this model: one variant fails, not the search
                        raise ModelportError(f"nncf.quantize with {preset} failed: {type(e).__name__}: {e}", log) from e
            else:
                step(f"ov.convert_model {SOURCE} -> {xml} (fp32 weights)")
            save(model, job, xml, bin_)
            return {"calibration": calib.signature()} if calib is not None else {}

        return self.produce(
            ctx,
            force,
            files,
            make,
            inputs=inputs,
            options=options,
            runtime=self.runtime,
            kind=self.kind,
            gate=gate,
            tool="nncf" if calib else "openvino",
        )


FP32 = Target(OpenvinoFp32Runtime, "float")
INT8 = Target(OpenvinoInt8Runtime, "int8")
