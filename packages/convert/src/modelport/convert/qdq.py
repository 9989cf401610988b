"""Static post-training QDQ quantization with onnxruntime.quantization, for whichever backend runs the QDQ model.

QDQ, per-channel weights, activations calibrated on the common calibration set. ONNX is the
interchange every toolchain converts from, and its QDQ form is the INT8 one: onnxruntime runs
the model [quantization] configures (modelport.ort), TensorRT's explicit quantization builds its
engine from a symmetric one (modelport.tensorrt). The quantizer, its calibration methods and
layer exclusions live here so neither backend package imports the other. The QDQ model is
verified through the runtime the backend descriptors register as ``onnx-int8`` (onnxruntime).
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common.artifacts import Job, file_inputs
from modelport.common.calibration import CalibrationSet
from modelport.common.config import QuantizationConfig
from modelport.common.context import StepContext
from modelport.common.log import activity, captured, step, warn
from modelport.common.onnx_safety import check_onnx
from modelport.runtime.base import ONNX_MODEL
from modelport.runtime.registry import runtime_class

from .base import Converter

SOURCE = ONNX_MODEL
VERIFIED_BY = "onnx-int8"  # the runtime key a QDQ model is verified through (onnxruntime CPU)
# onnxruntime's calibration methods, plus percentile at a wider clip than its 99.999 default:
# on MobileNetV2 / the shipped photos cosine min 0.968 (99.999) -> 0.977 (99.9999); 99.99 loses (0.948).
METHODS = ("minmax", "percentile", "entropy", "percentile@99.9999")


class CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over the common calibration set, with the ``__len__`` and
    ``set_range`` its CalibStridedMinMax calls to calibrate one slice at a time."""

    def __init__(self, calibration: CalibrationSet, input_name: str):
        self.calibration, self.input_name = calibration, input_name
        self.set_range(0, len(calibration))

    def __len__(self) -> int:
        return len(self.calibration)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._tensors = self.calibration.part(start_index, end_index).tensors("NCHW", "float32")

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self._tensors, None)
        return None if tensor is None else {self.input_name: tensor}


MINMAX_CHUNK = 16  # images whose activations onnxruntime holds at once (~45 MB each for MobileNetV2)


def _chunked(method: str, images: int) -> dict[str, int]:
    """minmax: onnxruntime folds the ranges of one slice of at most MINMAX_CHUNK images at a time (min of mins,
    max of maxes: the ranges of the whole set) instead of holding every image's activations. Not its
    CalibMaxIntermediateOutputs: that drops each full chunk unmeasured (onnxruntime 1.31), so 37 images
    calibrated on their last 5. The stride must divide the set's size. Histogram methods cannot fold: capped."""
    if method != "minmax":
        return {}
    return {"CalibStridedMinMax": max(d for d in range(1, MINMAX_CHUNK + 1) if images % d == 0)}


def excluded_nodes(source: Path, layers: list[str]) -> list[str]:
    """ONNX layer names (analysis/*.json) -> the nodes onnxruntime keeps in float.

    A layer's conv and its fused activation, and the consumers of its output: the QDQ quantizer
    quantizes a tensor when any node touching it is quantized, so only then does the layer's
    output (where the error was measured) stay float. Excluding the conv alone only un-quantizes
    its weights (>= 39 dB already on MobileNetV2) and measured no better.
    """
    if not layers:
        return []
    from modelport.common import onnx_layers

    graph = onnx_layers.load(source)
    out = []
    for name in layers:
        layer = graph.by_node(name)
        if layer is None:
            out.append(name)  # a plain node name from the config
            continue
        out += layer.nodes + [n.name or n.output[0] for n in graph.consumers.get(layer.output, [])]
    return list(dict.fromkeys(out))


def calibration_for(ctx: StepContext, method: str, say: bool = False) -> CalibrationSet:
    """The calibration set a method gets: percentile/entropy capped at histogram_calibration_limit."""
    calib, cap = ctx.calibration, ctx.config.quantization.histogram_calibration_limit
    if method in ("percentile", "entropy") and len(calib) > cap:
        if say:
            warn(
                f"{method} calibration keeps every activation in memory (~45 MB per image): using "
                f"{cap} of {len(calib)} calibration images, spread over the set ([quantization] histogram_calibration_limit)"
            )
        return calib.limited(cap)
    return calib


class Quantizer(Converter):
    """One QDQ variant as a conversion target (see the module docstring)."""

    tool = "onnxruntime.quantization"

    def __init__(self, output: str):
        self.output = output

    def unavailable_reason(self) -> str | None:
        return (
            None if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx") else "onnxruntime not installed"
        )

    def tool_version(self) -> str:
        return f"onnxruntime {version('onnxruntime')}"

    def settings(self, q: QuantizationConfig) -> dict[str, Any]:
        """The quantizer's settings from [quantization]; a backend with stricter needs overrides them."""
        return q.quantizer_settings()

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        return self.quantize(ctx, force, self.output, self.settings(ctx.config.quantization))

    def quantize(self, ctx: StepContext, force: bool, output: str, q: dict[str, Any], gate: bool = True) -> list[Path]:
        """QDQ model ``output`` with settings ``q``, verified (and, with ``gate``, held to the floors)."""
        store = ctx.store
        calib = calibration_for(ctx, q["calibrate_method"], say=True)
        calib.validate()  # every calibration image decodes before anything is written
        source = store.path(SOURCE)
        check_onnx(source)
        excluded = excluded_nodes(source, q.get("nodes_to_exclude", []))

        def make(job: Job) -> dict[str, object]:
            from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
            from onnxruntime.quantization.shape_inference import quant_pre_process

            step(
                f"quantize {SOURCE} -> {output}: QDQ, {'per-channel' if q['per_channel'] else 'per-tensor'}, "
                f"{q['activation_type']}/{q['weight_type']}, {q['calibrate_method']} on {len(calib)} calibration images"
                + (f", {len(q['nodes_to_exclude'])} layers in float" if q.get("nodes_to_exclude") else "")
            )
            prepped = job.workdir / "prepped.onnx"
            # onnxruntime prints its calibration histograms' sizes and thresholds: the step's log, not the terminal
            log = store.path(f"onnx/logs/{Path(output).stem}.log")
            log.unlink(missing_ok=True)
            with captured(log):
                quant_pre_process(str(source), str(prepped))
            import onnx

            input_name = onnx.load(str(prepped), load_external_data=False).graph.input[0].name
            qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
            with activity(f"{q['calibrate_method']} calibration + quantization on {len(calib)} images"), captured(log):
                quantize_static(
                    str(prepped),
                    str(job.tmp()),
                    CalibrationReader(calib, input_name),
                    quant_format=QuantFormat.QDQ,
                    per_channel=q["per_channel"],
                    activation_type=qtype[q["activation_type"]],
                    weight_type=qtype[q["weight_type"]],
                    calibrate_method={
                        "minmax": CalibrationMethod.MinMax,
                        "entropy": CalibrationMethod.Entropy,
                        "percentile": CalibrationMethod.Percentile,
                    }[q["calibrate_method"]],
                    extra_options=q.get("extra_options", {}) | _chunked(q["calibrate_method"], len(calib)),
                    nodes_to_exclude=excluded,
                )
            return {"calibration": calib.signature()}

        return self.produce(
            ctx,
            force,
            {"model": output},
            make,
            inputs={"onnx": source} | file_inputs("calibration", calib.paths),
            options=q | {"calibration_images": len(calib)} | ({"excluded_nodes": excluded} if excluded else {}),
            runtime=runtime_class(VERIFIED_BY),
            kind="int8",
            gate=gate,
        )


def method_settings(method: str) -> dict[str, Any]:
    """``percentile@P`` -> percentile with CalibPercentile P; the others as onnxruntime names them."""
    name, _, pct = method.partition("@")
    return {"calibrate_method": name, **({"extra_options": {"CalibPercentile": float(pct)}} if pct else {})}


def qdq_knobs(q: QuantizationConfig) -> tuple[list[str], list[str]]:
    """A QDQ model's search knobs from [quantization]: calibration methods (the configured one first), float layers."""
    return [q.calibrate_method, *(m for m in METHODS if m != q.calibrate_method)], list(q.nodes_to_exclude)
