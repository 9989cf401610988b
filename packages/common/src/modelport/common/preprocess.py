"""The one place an image becomes a tensor.

``prepare`` does all geometry and colour order and yields uint8 HWC; ``to_tensor``
turns that array into what a runtime feeds: float32 normalised (NCHW or NHWC), uint8
NHWC for toolchains that normalise inside the model with ``mean_values`` /
``norm_values`` derived from the same spec, or a quantized model's own integer input
(uint8 pixels, or int8 = pixel - 128). No other module normalises pixels.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

Layout = Literal["NCHW", "NHWC"]
DType = Literal["float32", "uint8", "int8"]
# Pixel p enters an integer model as q = p + offset (int8 shifts the 0..255 range to -128..127).
INTEGER_OFFSET = {"uint8": 0, "int8": -128}

# [input] resize -> the PIL filter (detectors letterbox with the same one).
FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


_Std = Annotated[float, Field(gt=0)]


class InputSpec(BaseModel):
    """``[input]`` of modelport.toml. Defaults: MobileNetV2, RGB, 224x224, [-1, 1]."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # as config.Section

    size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (224, 224)  # height, width
    resize: Literal["nearest", "bilinear", "bicubic", "lanczos", "area"] = "bilinear"
    # Central square of side crop*min(h, w) before resizing (0.875 = resize-256/crop-224); None = whole image.
    crop: float | None = Field(None, gt=0, le=1)
    color: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[_Std, _Std, _Std] = (127.5, 127.5, 127.5)
    layout: Layout = "NCHW"  # of the exported ONNX model (TFLite's own input is NHWC)
    # The source model's input tensor type and quantization (real = (q - zero_point) * scale): read from
    # the model (modelport.common.contract), never guessed; a config value must agree with the model.
    dtype: DType = "float32"
    scale: float | None = Field(None, gt=0)
    zero_point: int | None = Field(None, ge=-128, le=255)  # int8 or uint8

    @property
    def mean_values(self) -> list[float]:
        return [float(v) for v in self.mean]

    @property
    def std_values(self) -> list[float]:
        return [float(v) for v in self.std]

    @property
    def norm_values(self) -> list[float]:
        """1/std, the multiplier ncnn's substract_mean_normalize takes."""
        return [1.0 / float(v) for v in self.std]

    @property
    def signature(self) -> str:
        """Stable id of everything that changes the tensor; results must share it to be compared."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return "pp1-" + hashlib.sha256(blob).hexdigest()[:16]

    def shape(self, layout: Layout) -> tuple[int, int, int, int]:
        h, w = self.size
        return (1, 3, h, w) if layout == "NCHW" else (1, h, w, 3)


def prepare(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB uint8 HWC image of any size -> uint8 HWC at ``spec.size`` in ``spec.color`` order."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3 RGB, got {image.dtype} {image.shape}")
    pil = Image.fromarray(image)
    if spec.crop is not None:
        w, h = pil.size
        side = spec.crop * min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        pil = pil.crop((round(left), round(top), round(left + side), round(top + side)))
    th, tw = spec.size
    if pil.size != (tw, th):
        pil = pil.resize((tw, th), FILTERS[spec.resize])
    out = np.asarray(pil, dtype=np.uint8)
    if spec.color == "BGR":
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def to_tensor(prepared: np.ndarray, spec: InputSpec, layout: Layout = "NCHW", dtype: DType = "float32") -> np.ndarray:
    """Prepared uint8 HWC -> batch-1 tensor. uint8/int8 are always NHWC and un-normalised."""
    if prepared.shape != (*spec.size, 3) or prepared.dtype != np.uint8:
        raise ValueError(f"expected prepared uint8 {(*spec.size, 3)}, got {prepared.dtype} {prepared.shape}")
    if dtype == "uint8":
        if layout != "NHWC":
            raise ValueError("uint8 tensors are NHWC (the toolchain normalises inside the model)")
        return prepared[np.newaxis].copy()
    if dtype == "int8":
        if layout != "NHWC":
            raise ValueError("int8 tensors are NHWC (a quantized TFLite model's own input)")
        return (prepared[np.newaxis].astype(np.int16) + INTEGER_OFFSET["int8"]).astype(np.int8)
    x = (prepared.astype(np.float32) - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[np.newaxis], dtype=np.float32)
