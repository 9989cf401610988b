"""The bench side of the backend descriptors: depth keys and batch twins."""

from __future__ import annotations

from typing import cast

from modelport.common.backends import backends
from modelport.common.registry import load
from modelport.runtime.base import Runtime
from modelport.runtime.registry import runtime_class

DEPTH_KEYS: list[str] = [k for k, b in backends().items() if b.depth]
BATCH_TWINS: dict[str, str] = {k: b.batch_twin for k, b in backends().items() if b.batch_twin}

SOURCE = "source"  # `bench source`: whichever of the two runs this source model


def batch_class(key: str) -> type[Runtime]:
    """The runtime that takes a batch dim for ``key`` (its dynamic-batch twin), else the key's own."""
    return cast(type[Runtime], load(BATCH_TWINS, key, "batch twin")) if key in BATCH_TWINS else runtime_class(key)
