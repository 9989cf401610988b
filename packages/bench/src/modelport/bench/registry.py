"""Every runtime modelport knows, by key (from the backend descriptors), imported only when used."""

from __future__ import annotations

from modelport.common.backends import backends
from modelport.common.doctor import Check
from modelport.common.registry import load

RUNTIMES: dict[str, str] = {k: b.runtime for k, b in backends().items() if b.runtime}
DEPTH_KEYS: list[str] = [k for k, b in backends().items() if b.depth]
BATCH_TWINS: dict[str, str] = {k: b.batch_twin for k, b in backends().items() if b.batch_twin}

SOURCE = "source"  # `bench source`: whichever of the two runs this source model
SOURCE_KEYS = tuple(k for k, b in backends().items() if b.source)  # the source model's own row: every other row's reference


def source_key(contract) -> str:
    """The runtime key of the source model itself (the reference row)."""
    return "onnx-source" if contract is not None and contract.kind == "onnx" else "tflite"


def runtime_class(key: str):
    return load(RUNTIMES, key, "backend")


def batch_class(key: str):
    """The runtime that takes a batch dim for ``key`` (its dynamic-batch twin), else the key's own."""
    return load(BATCH_TWINS, key, "batch twin") if key in BATCH_TWINS else runtime_class(key)


def doctor_rows() -> list[Check]:
    rows = []
    for key in RUNTIMES:
        cls = runtime_class(key)
        reason = cls.unavailable_reason()
        rows.append(Check("runtime", key, reason is None, reason or f"{cls.backend} {cls.version()}"))
    return rows
