"""A detector's input geometry: letterbox (keep the aspect ratio, pad) or stretch, and the way back.

Colour order and normalisation (raw 0-255 is mean 0, std 1) are [input]'s, applied by
modelport.common.preprocess.to_tensor like every other model's; only the geometry is a detector's,
because its boxes must be mapped back to the photo they were found in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
from PIL import Image

from .config import DetectConfig
from .errors import ConfigError
from .preprocess import FILTERS, InputSpec, Layout, to_tensor
from .preprocess import prepare as plain_prepare


@dataclass(frozen=True)
class Placement:
    """Where the photo sits in the model's input: input = photo * scale + pad, per axis."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int  # of the original photo
    height: int

    def to_original(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """Corner boxes in input pixels -> in the photo's pixels (clipped to the photo)."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = (b - [self.pad_x, self.pad_y, self.pad_x, self.pad_y]) / [
            self.scale_x,
            self.scale_y,
            self.scale_x,
            self.scale_y,
        ]
        return self.clip(out) if clip else out.astype(np.float32)

    def clip(self, boxes: np.ndarray) -> np.ndarray:
        """Corner boxes in the photo's pixels, clipped to the photo."""
        return cast(np.ndarray, np.clip(boxes, 0, [self.width, self.height, self.width, self.height]).astype(np.float32))

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Corner boxes in the photo's pixels -> in input pixels."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        scale = [self.scale_x, self.scale_y, self.scale_x, self.scale_y]
        return (b * scale + [self.pad_x, self.pad_y, self.pad_x, self.pad_y]).astype(np.float32)


def prepare(image: np.ndarray, spec: InputSpec, det: DetectConfig) -> tuple[np.ndarray, Placement]:
    """RGB uint8 HWC photo -> uint8 HWC at ``spec.size`` in ``spec.color`` order, and its placement."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3 RGB, got {image.dtype} {image.shape}")
    if spec.crop is not None:
        raise ConfigError("[input] crop is set for a detector: its boxes must cover the whole photo (remove crop)")
    h, w = image.shape[:2]
    th, tw = spec.size
    pil = Image.fromarray(image)
    if det.fit == "stretch":
        out = np.asarray(pil.resize((tw, th), FILTERS[spec.resize]) if (w, h) != (tw, th) else pil, np.uint8)
        placement = Placement(tw / w, th / h, 0.0, 0.0, w, h)
    else:
        r = min(th / h, tw / w)
        nw, nh = max(1, min(tw, round(w * r))), max(1, min(th, round(h * r)))
        px, py = ((tw - nw) // 2, (th - nh) // 2) if det.align == "center" else (0, 0)
        out = np.full((th, tw, 3), det.pad_value, np.uint8)
        resized = pil.resize((nw, nh), FILTERS[spec.resize]) if (nw, nh) != (w, h) else pil
        out[py : py + nh, px : px + nw] = np.asarray(resized, np.uint8)
        # The scale actually applied per axis (rounding makes it differ from r by < 1 pixel).
        placement = Placement(nw / w, nh / h, float(px), float(py), w, h)
    if spec.color == "BGR":
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out), placement


def prepare_photo(image: np.ndarray, spec: InputSpec, det: DetectConfig | None) -> tuple[np.ndarray, Placement | None]:
    """A photo as every model of a config is fed it: a detector's letterboxed (with its placement), else [input]'s."""
    if det is None:
        return plain_prepare(image, spec), None
    return prepare(image, spec, det)


def preprocess(image: np.ndarray, spec: InputSpec, det: DetectConfig, layout: Layout = "NCHW") -> tuple[np.ndarray, Placement]:
    """The float32 batch-1 tensor a detector is fed, and where the photo sits in it."""
    prepared, placement = prepare(image, spec, det)
    return to_tensor(prepared, spec, layout), placement
