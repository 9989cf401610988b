"""The one calibration stream. ORT, TensorRT, ncnn and RKNN adapt it; none loads images itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .images import load_image, resolve_images
from .letterbox import prepare_photo
from .log import progress
from .preprocess import DType, InputSpec, Layout, to_tensor

if TYPE_CHECKING:
    from .config import Config, DetectConfig


def spread(paths: list[Path], n: int) -> list[Path]:
    """``n`` of ``paths``, evenly spaced, in order: a capped set still sees every part of a sorted folder
    (the shipped set is named by source, so its first ``n`` would all be one source's photos)."""
    if n >= len(paths):
        return list(paths)
    return [paths[i * len(paths) // n] for i in range(n)]


def size_warning(count: int, minimum: int) -> str | None:
    """The one warning about a calibration set too small to trust (init, every INT8 step, the report)."""
    if count >= minimum:
        return None
    return (
        f"{count} calibration image{'s' if count != 1 else ''}, below the minimum of {minimum} "
        "([images] calibration_min): INT8 ranges from so few photos fit those photos, not yours"
    )


def calibration_record(count: int, minimum: int) -> dict[str, Any]:
    """What a record (recover/<backend>.json) says about the calibration set, warning included."""
    return {"images": count, "minimum": minimum, "warning": size_warning(count, minimum)}


def calibration_text(record: dict[str, Any] | None) -> str:
    """That record as the report's sentence (records written before it say nothing)."""
    if not record:
        return ""
    text = f"Calibration set: {record['images']} images."
    return text + (f" **Warning: {record['warning']}.**" if record.get("warning") else "")


class CalibrationSet:
    def __init__(self, paths: list[Path], spec: InputSpec, source: Path | None = None, detect: DetectConfig | None = None):
        # detect: a detector's calibration photos are letterboxed as its eval photos are
        self.paths, self.spec, self.source, self.detect = list(paths), spec, source, detect

    @classmethod
    def from_config(cls, config: Config, path: str | Path | None = None, limit: int | None = None) -> CalibrationSet:
        src = Path(path or config.images.calibration)
        return cls(spread(resolve_images(src), limit or config.images.calibration_limit), config.input, src, config.detector)

    def __len__(self) -> int:
        return len(self.paths)

    def limited(self, n: int) -> CalibrationSet:
        """``n`` images spread over the set (the set is sorted, so the same ones every run)."""
        return CalibrationSet(spread(self.paths, n), self.spec, self.source, self.detect)

    def part(self, start: int, end: int) -> CalibrationSet:
        """Images ``start`` to ``end`` (a toolchain that calibrates a slice at a time)."""
        return CalibrationSet(self.paths[start:end], self.spec, self.source, self.detect)

    def prepared(self) -> Iterator[np.ndarray]:
        """uint8 HWC arrays, in ``paths`` order, decoded one at a time: memory stays at one image
        whatever the set's size (a list of 500 decoded photos is what a toolchain does not need)."""
        for p in self.paths:
            yield prepare_photo(load_image(p), self.spec, self.detect)[0]

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
