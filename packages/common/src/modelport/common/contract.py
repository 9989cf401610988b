"""The source model's contract: what its one input and its outputs are, and its task.

Read from the model by `fetch` (tf-onnx env, modelport.convert.inspect) and kept as
``source/contract.json``, so every env (ncnn, rknn) preprocesses for the same model
without being able to open it. ``resolve_input`` is the one place the contract meets
``[input]``: the model says size, layout, dtype and input quantization; the config says
only what a model cannot (mean/std of a float input, colour order, resize, crop). A
config value that contradicts the model is refused, naming both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError, InputError
from .preprocess import INTEGER_OFFSET, DType, InputSpec, Layout
from .strict_json import json_text

CONTRACT = "source/contract.json"
# A Caffe source is its .prototxt here and the .caffemodel beside it (modelport.caffe).
SOURCES = {"tflite": "source/model.tflite", "onnx": "source/model.onnx", "caffe": "source/model.prototxt"}
SourceKind = Literal["tflite", "onnx", "caffe"]
_KIND_NAMES = {"tflite": "TFLite", "onnx": "ONNX", "caffe": "Caffe"}
_RUNTIMES = {"tflite": "the TFLite interpreter", "onnx": "onnxruntime", "caffe": "OpenCV dnn"}
# classify: one [batch, N] output. detect: outputs a named decoder in [detect] turns into boxes.
Task = Literal["classify", "detect"]


class TensorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    shape: list[int | str]  # as the model declares it; a str (or -1) is a dynamic dim


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SourceKind
    input_name: str
    input_shape: list[int | str]  # as the model declares it; a str (or -1) is a dynamic dim
    layout: Layout  # the source's own input layout
    size: tuple[int, int] | None  # height, width; None when the model leaves them dynamic
    channels: Literal[1, 3]
    dtype: DType
    scale: float | None = None  # input quantization: real = (q - zero_point) * scale
    zero_point: int | None = None
    dynamic_batch: bool = False
    output_name: str  # detect: the first output
    classes: int  # detect: the number of score columns per box
    task: Task = "classify"
    outputs: tuple[TensorInfo, ...] = ()  # detect: every output, in the model's order
    output_dtype: DType = "float32"
    output_scale: float | None = None
    output_zero_point: int | None = None
    # Normalisation a TFLite model's metadata declares for a float input (mean/std per channel), if any.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def file(self) -> str:
        """The source model in the artifact store."""
        return SOURCES[self.kind]

    @property
    def quantized(self) -> bool:
        return self.dtype != "float32"

    @property
    def name(self) -> str:
        """The source as a row name: "TFLite INT8", "ONNX FP32"."""
        return f"{_KIND_NAMES[self.kind]} {'INT8' if self.quantized else 'FP32'}"

    @property
    def runtime(self) -> str:
        return _RUNTIMES[self.kind]

    def dump(self) -> str:
        return json_text(self.model_dump(mode="json"))


def read_contract(path: Path) -> Contract | None:
    try:
        return Contract.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, ValidationError) as e:
        raise InputError(f"unreadable model contract ({type(e).__name__}): rerun `modelport fetch`", path) from None


def float_twin(dtype: DType, scale: float, zero_point: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """mean/std that give a float model what a quantized model sees: pixel p enters it as
    q = p + offset and means real = (q - zero_point) * scale = (p - mean) / std."""
    mean = float(zero_point - INTEGER_OFFSET[dtype])
    return (mean,) * 3, (1.0 / scale,) * 3


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-6)
    return cast(bool, a == b)


def _show(v: object) -> str:
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def resolve_input(spec: InputSpec, contract: Contract, config: Path | str | None, model: Path | str) -> InputSpec:
    """``[input]`` completed with what the model says; raises ConfigError naming the config and the model
    when a value set in the config contradicts the model."""
    if contract.channels != 3:
        raise InputError(
            "a 1-channel (grayscale) input: the one preprocessing makes 3-channel RGB/BGR only, "
            "grayscale sources are not supported yet",
            model,
        )
    given = spec.model_fields_set
    update: dict[str, Any] = {}
    errors: list[str] = []

    def take(field: str, value: Any, what: str) -> None:
        if field in given and not _same(getattr(spec, field), value):
            errors.append(f"[input] {field} = {_show(getattr(spec, field))} but the model's {what} is {_show(value)}")
        update[field] = value

    if contract.size is None:
        if "size" not in given:
            raise ConfigError(
                f"the model's input height/width are dynamic ({contract.input_shape}): "
                f"set [input] size = [height, width] in the config ({config or 'none'})",
                model,
            )
    else:
        take("size", tuple(contract.size), "input height, width")
    take("dtype", contract.dtype, "input dtype")
    if contract.quantized:
        if contract.scale is None or contract.zero_point is None:
            raise InputError(
                f"{contract.dtype} input without its quantization scale/zero point: rerun `modelport fetch`", CONTRACT
            )
        take("scale", contract.scale, "input scale")
        take("zero_point", contract.zero_point, "input zero point")
        mean, std = float_twin(contract.dtype, contract.scale, contract.zero_point)
        quant = f"{contract.dtype} input (scale {contract.scale:g}, zero point {contract.zero_point}) normalisation, "
        take("mean", mean, quant + "mean")
        take("std", std, quant + "std")
    else:
        for field in ("scale", "zero_point"):
            if field in given and getattr(spec, field) is not None:
                errors.append(f"[input] {field} is set but the model's input is float32 (not quantized)")
        if contract.mean is not None and contract.std is not None:
            take("mean", tuple(contract.mean), "metadata mean")
            take("std", tuple(contract.std), "metadata std")
    if errors:
        raise ConfigError(f"{'; '.join(errors)} (model {model})", config or "config")
    return spec.model_copy(update=update)
