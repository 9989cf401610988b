"""The one calibration stream. ORT, TensorRT, ncnn and RKNN adapt it; none loads images itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .images import load_image, resolve_images
from .log import progress
from .preprocess import DType, InputSpec, Layout, prepare, to_tensor


class CalibrationSet:
    def __init__(self, paths: list[Path], spec: InputSpec, source: Path | None = None):
        self.paths, self.spec, self.source = list(paths), spec, source

    @classmethod
    def from_config(cls, config, path: str | Path | None = None, limit: int | None = None) -> CalibrationSet:
        src = Path(path or config.images.calibration)
        return cls(resolve_images(src, limit or config.images.calibration_limit), config.input, src)

    def __len__(self) -> int:
        return len(self.paths)

    def limited(self, n: int) -> CalibrationSet:
        """The first ``n`` images (the set is sorted, so the same ones every run)."""
        return CalibrationSet(self.paths[:n], self.spec, self.source)

    def prepared(self) -> Iterator[np.ndarray]:
        """uint8 HWC arrays, in ``paths`` order, decoded one at a time: memory stays at one image
        whatever the set's size (a list of 500 decoded photos is what a toolchain does not need)."""
        for p in self.paths:
            yield prepare(load_image(p), self.spec)

    def validate(self) -> None:
        """Decode every image now (and keep none), so a bad one fails before any toolchain starts writing."""
        for _ in progress(self.prepared(), "checking calibration images", total=len(self.paths)):
            pass

    def tensors(self, layout: Layout = "NCHW", dtype: DType = "float32") -> Iterator[np.ndarray]:
        for arr in self.prepared():
            yield to_tensor(arr, self.spec, layout, dtype)

    def signature(self) -> list[str]:
        """What the calibration saw, for manifests: file names in order."""
        return [p.name for p in self.paths]
