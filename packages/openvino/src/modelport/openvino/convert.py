"""`convert openvino-fp32` / `openvino-int8`: the pipeline's ONNX model as OpenVINO IR.

FP32: ``ov.convert_model`` of onnx/model.onnx, saved with ``compress_to_fp16=False`` (fp32 weights).
INT8: NNCF post-training quantization of that model over the common calibration set, through
the recovery search (recover.py) when it misses the [accuracy] floors. A ``+qac`` method is NNCF's
accuracy control driven by our own agreement with the reference on the eval images (``Control``).
Each is verified against the reference through the runtime that benches it.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common.agreement import Kind, compare
from modelport.common.artifacts import Job, file_inputs
from modelport.common.calibration import CalibrationSet
from modelport.common.config import AccuracyConfig
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import activity, captured, step, warn
from modelport.common.onnx_safety import check_onnx
from modelport.common.preprocess import to_tensor
from modelport.common.recovery import brief, shortfall
from modelport.common.reference import load_reference
from modelport.convert.base import Converter
from modelport.runtime.base import ONNX_MODEL, Runtime
from modelport.runtime.run import prepared_images

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
    "qac": "NNCF's accuracy control (quantize_with_accuracy_control): then reverts to float the quantizer groups that "
    "cost most of our agreement with the reference, until the [accuracy] floors hold (the layers it reverts are the "
    "variant's float layers)",
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
    # Last: it keeps layers in float. On those photos it reverts 4 layers (4 regions, 5.3% of the MACs) of the
    # closest all-INT8 method to the floors in 113 validations (~140-160 s on 2 loaded cores): 91% / 0.952 /
    # 0.9875, 1.9-2.2x FP32, where the worst-layer stage had needed 19 (15 regions, 40.8%) for 1.63x.
    "mixed+minmax+fbc+qac",
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

    return quantized_in(ov.Core().read_model(str(xml)), source)


def quantized_in(model: Any, source: Path) -> set[str]:
    """``quantized_layers`` of an OpenVINO model in memory."""
    from modelport.common import onnx_layers

    def quantized_input(op: Any) -> bool:
        for port in op.inputs():
            src = port.get_source_output().get_node()
            while src.get_type_name() in SHAPE_OPS:
                src = src.input(0).get_source_output().get_node()
            # A quantizer on a Constant is a weight's, which a saved model carries compressed (no FakeQuantize
            # left) and NNCF's intermediate model (``Control``) does not: only activations count, in both alike.
            if src.get_type_name() in QUANTIZERS and src.input(0).get_source_output().get_node().get_type_name() != "Constant":
                return True
        return False

    ops = [
        op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() not in QUANTIZERS and quantized_input(op)
    ]
    graph = onnx_layers.load(source)
    return {la.node for la in graph.layers if any(n == node or n.startswith(node + "/") for n in ops for node in la.nodes)}


@dataclass
class Control:
    """What ``+qac`` (NNCF's accuracy control) is judged by and bounded by.

    The metric NNCF keeps within ``max_drop`` is ours: 1 minus the shortfall below the [accuracy] INT8 floors of
    the model's agreement with the reference on the eval images (``recovery.shortfall``: top-1, cosine min and
    cosine mean, each floor's deficit summed; the 1 because NNCF divides by the FP32 model's metric). It is 1
    exactly when every floor holds, and the FP32 model NNCF starts from meets stricter floors (it is verified at
    them), so its metric is 1 too: ``max_drop = 0`` then stops NNCF at the first scope that meets the floors,
    and its ranking of quantizer groups is by how much of the shortfall each one's revert removes. Time is bounded twice: at most ``max_iterations`` reverted groups
    (NNCF's max_num_iterations), and past ``deadline`` (``time.monotonic()``, the search's budget) every
    validation reports the FP32 model's metric, which NNCF reads as "done": it returns its current model,
    which the search then verifies like any other (``stopped`` records why).
    """

    images: list[np.ndarray]  # eval tensors, batch 1, as the runtime feeds them
    reference: np.ndarray  # [N, C], the reference outputs of those images
    accuracy: AccuracyConfig
    max_iterations: int
    deadline: float
    workdir: Path  # NNCF writes its fully quantized intermediate model here: what the revert is read against
    tick: Callable[[str], None] = lambda status: None
    validations: int = 0
    stopped: str | None = None

    def metric(self, compiled: Any, items: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, list[float]]:
        """NNCF's validation_fn over (tensor, reference row) items: (metric, each image's cosine)."""
        pairs = list(items)
        self.validations += 1
        if time.monotonic() > self.deadline:  # what NNCF reads as "done", without running the model
            self.stopped = self.stopped or f"the search's budget ran out after {self.validations} validations"
            return 1.0, [1.0] * len(pairs)
        outs = np.stack([np.asarray(compiled(x)[0], dtype=np.float32).reshape(-1) for x, _ in pairs])
        agreement = compare(outs, np.stack([r for _, r in pairs]), [str(i) for i in range(len(pairs))])
        short = shortfall(brief(agreement) or {}, self.accuracy)
        self.tick(f"{self.validations} validations, the last {short:.4f} below the floors")
        return 1.0 - short, [p.cosine for p in agreement.per_image]


def nncf_quantize(
    model: Any,
    calibration: CalibrationSet,
    method: str = "performance",
    ignored: Sequence[str] = (),
    control: Control | None = None,
) -> Any:
    """NNCF post-training INT8 over the calibration tensors (NCHW float32, batch 1) with ``method`` (a preset and
    its options, ``parse_method``); ``ignored``: op names kept in float. A ``+qac`` method needs ``control``."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters, AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    preset, opts = parse_method(method)
    if ("qac" in opts) != (control is not None):
        raise ValueError(f"method {method!r}: NNCF's accuracy control (+qac) runs with a Control, and only +qac does")
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
    common: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(preset),
        "subset_size": len(tensors),
        "fast_bias_correction": "fbc" not in opts,
        **({"ignored_scope": scope} if scope else {}),
    }
    if control is None:
        return nncf.quantize(model, nncf.Dataset(tensors), advanced_parameters=advanced, **common)
    items = list(zip(control.images, control.reference, strict=True))
    return nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(tensors),
        nncf.Dataset(items, lambda item: item[0]),
        control.metric,
        max_drop=0.0,
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_quantization_parameters=advanced,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=control.max_iterations,
            ranking_subset_size=len(items),  # every eval image: the floors look at the worst one
            intermediate_model_dir=str(control.workdir),
        ),
        **common,
    )


def reverted(control: Control, model: Any, source: Path) -> dict[str, object]:
    """What NNCF's accuracy control did: the ONNX layers its fully quantized intermediate model quantizes and
    ``model`` (its result) does not, how many validations it ran, and why it stopped early, if it did."""
    intermediate = control.workdir / "intermediate_model.xml"
    layers = sorted(quantized_layers(intermediate, source) - quantized_in(model, source)) if intermediate.exists() else []
    if control.stopped:
        warn(f"NNCF accuracy control stopped: {control.stopped}; its model is verified as it is")
    step(f"NNCF accuracy control: {len(layers)} layers reverted to float in {control.validations} validations")
    return {"reverted_layers": layers, "validations": control.validations, "stopped": control.stopped}


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
        deadline: float | None = None,
    ) -> list[Path]:
        """One IR at ``files`` (role -> path; default this target's): FP32, or NNCF INT8 with ``preset`` and
        ``float_layers`` (ONNX layer names) kept in float; verified (with ``gate``, held to the floors).
        A ``+qac`` preset stops NNCF's accuracy control at ``deadline`` (``time.monotonic()``; default
        [quantization] recover_minutes from now) and records the layers it reverted (``reverted_layers``)."""
        cfg, store = ctx.config, ctx.store
        files = files or dict(self.runtime.artifacts)
        xml, bin_ = files["model"], files["weights"]
        source = store.path(SOURCE)
        check_onnx(source)
        inputs = {"onnx": source}
        options = {"compress_to_fp16": False, "device": "CPU", "inference_precision": cfg.openvino.inference_precision}
        calib, qac, stop = None, False, 0.0
        if self.kind == "int8":
            preset = preset or cfg.openvino.preset
            qac = "qac" in parse_method(preset)[1]  # a method NNCF lacks: one line, before anything is written
            calib = ctx.calibration
            calib.validate()  # every calibration image decodes before anything is written
            inputs |= file_inputs("calibration", calib.paths)
            options |= {
                "preset": preset,
                "subset_size": len(calib),
                "calibration_images": len(calib),
                "float_layers": list(float_layers or []),
            }
        if qac:
            if cfg.detector is not None:  # our metric is a classifier's agreement; a detector's boxes are not in it
                raise ModelportError(f"{preset}: NNCF's accuracy control is judged by a classifier's agreement, not boxes")
            q = cfg.quantization
            inputs |= file_inputs("image", ctx.eval_images)  # what the layers it reverts are chosen by
            options |= {
                "qac": {
                    "floors": cfg.accuracy.model_dump(),
                    "max_iterations": q.recover_max_float_layers,
                    "budget_minutes": q.recover_minutes,
                }
            }
            stop = deadline if deadline is not None else time.monotonic() + q.recover_minutes * 60

        def make(job: Job) -> dict[str, object]:
            model = read_onnx(source)
            control: Control | None = None
            if calib is not None and preset is not None:
                ignored = ov_ops(model, source, list(float_layers or []))
                step(
                    f"nncf.quantize {SOURCE} -> {xml}: INT8, {preset} (preset[+options]), {len(calib)} calibration images"
                    + (f", {len(float_layers)} layers ({len(ignored)} ops) in float" if float_layers else "")
                )
                # NNCF's progress bars and INFO lines: the step's log, not the terminal
                log = store.path(f"openvino/logs/{Path(xml).stem}.log")
                log.unlink(missing_ok=True)
                what = "NNCF accuracy control" if qac else "NNCF calibration + quantization"
                with activity(f"{what} on {len(calib)} images") as tick, captured(log):
                    control = (
                        Control(
                            [to_tensor(a, cfg.input, "NCHW", "float32") for a in prepared_images(ctx)],
                            load_reference(store, ctx.eval_images, cfg.input.signature),
                            cfg.accuracy,
                            cfg.quantization.recover_max_float_layers,
                            stop,
                            job.workdir,
                            tick,
                        )
                        if qac
                        else None
                    )
                    try:
                        model = nncf_quantize(model, calib, preset, ignored, control)
                    except (InputError, KeyboardInterrupt):
                        raise
                    except Exception as e:  # NNCF's own failure on this model: one variant fails, not the search
                        raise ModelportError(f"nncf.quantize with {preset} failed: {type(e).__name__}: {e}", log) from e
            else:
                step(f"ov.convert_model {SOURCE} -> {xml} (fp32 weights)")
            save(model, job, xml, bin_)
            if control is None:
                return {"calibration": calib.signature()} if calib is not None else {}
            undone = reverted(control, model, source)
            # the search counts the layers NNCF reverted as this variant's float layers (Knobs.build)
            return {
                "calibration": calib.signature() if calib else None,
                "qac": undone,
                "toolchain_float_layers": undone["reverted_layers"],
            }

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
