"""The one calibration stream. ORT, TensorRT, ncnn and RKNN adapt it; none loads images itself."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
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

    @cached_property
    def _prepared(self) -> list[np.ndarray]:
        # Decoded once and up front: a bad image fails before any toolchain starts writing.
        return [prepare(load_image(p), self.spec) for p in progress(self.paths, "calibration images")]

    def prepared(self) -> Iterator[np.ndarray]:
        """uint8 HWC arrays, in ``paths`` order."""
        yield from self._prepared

    def validate(self) -> None:
        self._prepared  # noqa: B018 - decode everything now

    def tensors(self, layout: Layout = "NCHW", dtype: DType = "float32") -> Iterator[np.ndarray]:
        for arr in self._prepared:
            yield to_tensor(arr, self.spec, layout, dtype)

    def signature(self) -> list[str]:
        """What the calibration saw, for manifests: file names in order."""
        return [p.name for p in self.paths]
