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
    return "onnx-source" if contract is not None and contract.kind == "onnx" else "tflite"


def reference_key(store: ArtifactStore) -> str:
    """The row of the source model itself: every agreement is measured against it."""
    return source_key(read_contract(store.path(CONTRACT)))


def runtime_class(key: str) -> type[Runtime]:
    return cast(type[Runtime], load(RUNTIMES, key, "backend"))


def source_runtime(config: Config, model: Path) -> Runtime:
    """The source model file in its own runtime (the reference): TFLite interpreter or onnxruntime."""
    return runtime_class(source_key(config.contract))(config, {"model": model})


def doctor_rows() -> list[Check]:
    """`modelport doctor`'s runtime rows, in every env that has runtimes (bench or not: rknn's too)."""
    rows = []
    for key in RUNTIMES:
        cls = runtime_class(key)
        reason = cls.unavailable_reason()
        rows.append(Check("runtime", key, reason is None, reason or f"{cls.backend} {cls.version()}"))
    return rows
