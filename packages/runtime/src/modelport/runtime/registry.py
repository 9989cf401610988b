"""Every runtime modelport knows, by key (from the backend descriptors), imported only when used."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from modelport.common.artifacts import ArtifactStore
from modelport.common.backends import backends
from modelport.common.config import Config
from modelport.common.contract import CONTRACT, Contract, read_contract
from modelport.common.doctor import Check
from modelport.common.registry import load

from .base import Runtime

RUNTIMES: dict[str, str] = {k: b.runtime for k, b in backends().items() if b.runtime}
SOURCE_KEYS = tuple(k for k, b in backends().items() if b.source)  # the source model's own row: every other row's reference


def source_key(contract: Contract | None) -> str:
    """The runtime key of the source model itself (the reference row)."""
    return {"onnx": "onnx-source", "caffe": "caffe"}.get(contract.kind, "tflite") if contract is not None else "tflite"


def reference_key(store: ArtifactStore) -> str:
    """The row of the source model itself: every agreement is measured against it."""
    return source_key(read_contract(store.path(CONTRACT)))


def runtime_class(key: str) -> type[Runtime]:
    return cast(type[Runtime], load(RUNTIMES, key, "backend"))


def source_runtime(config: Config, model: Path) -> Runtime:
    """The source model file in its own runtime (the reference): TFLite interpreter or onnxruntime."""
    cls = runtime_class(source_key(config.contract))
    if len(cls.artifacts) == 1:
        return cls(config, {"model": model})
    # a source of several files (Caffe: .prototxt + .caffemodel) keeps them side by side, as the store does
    return cls(config, {role: model.with_suffix(Path(rel).suffix) for role, rel in cls.artifacts.items()})


def doctor_rows() -> list[Check]:
    """`modelport doctor`'s runtime rows, in every env that has runtimes (bench or not: rknn's too)."""
    rows = []
    for key in RUNTIMES:
        cls = runtime_class(key)
        reason = cls.unavailable_reason()
        rows.append(Check("runtime", key, reason is None, reason or f"{cls.backend} {cls.version()}"))
    return rows
